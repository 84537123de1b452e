"""`python -m service`: serve the checkpoints with uvicorn and the bounds of service/runtime/server.py, configured by
DIGITAE_* variables (service/settings.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.config
import os
import sys
import tempfile
from collections.abc import Iterator

from pydantic import ValidationError

from service.app import StartupError, build_registry, create_app
from service.catalog.reloading import SUPERVISOR_PID_ENV
from service.runtime.logs import logging_config
from service.runtime.process import serve
from service.settings import Settings

log = logging.getLogger("digitae")


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"digitae: invalid settings (DIGITAE_* environment variables):\n{exc}", file=sys.stderr)
        return 2
    logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
    log.info("settings: %s", json.dumps(settings.public(), sort_keys=True))
    try:
        # Load and verify every checkpoint before binding the port, so a bad one is one clear line and exit 1.
        # With one worker the loaded models are served as they are; workers load their own.
        registry = build_registry(settings)
    except StartupError as exc:
        print(f"digitae: cannot start: {exc}", file=sys.stderr)
        return 1
    if settings.worker_count == 1:
        serve(settings, create_app(settings, registry), logging_config(settings.log_level, settings.log_format))
    else:
        del registry
        os.environ[SUPERVISOR_PID_ENV] = str(os.getpid())  # workers pass SIGHUP (POST /admin/reload) on to here
        with _shared_metrics_dir():
            serve(
                settings,
                "service.app:create_app",
                logging_config(settings.log_level, settings.log_format),
                factory=True,
            )
    return 0


@contextlib.contextmanager
def _shared_metrics_dir() -> Iterator[None]:
    """With several workers /metrics must add up all of them (prometheus_client's multiprocess mode, through files
    in PROMETHEUS_MULTIPROC_DIR): when it is not set (workers=auto is the default), a fresh temporary folder serves,
    removed at exit. The workers, started after this, read it from the environment."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="digitae-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


if __name__ == "__main__":
    sys.exit(main())
