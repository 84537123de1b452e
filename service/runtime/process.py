"""Running the bounded server (runtime/server.py): `serve` with one worker or a supervisor of several, the open-file
limit it needs, and SIGHUP while serving (`handle_sighup`: the app's lifespan gives it a meaning).

Like server.py, this imports nothing heavy: `python -m service` reaches it before the app is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from service.runtime.server import BoundedConfig, BoundedHttpToolsProtocol, ConnectionLimits, on_sighup

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("digitae")

FD_HEADROOM = 128  # descriptors kept free beyond max_connections: models, logs, the decode threads' files


@contextlib.contextmanager
def handle_sighup(on_hup: Callable[[], None] = on_sighup) -> Iterator[None]:
    """While serving, SIGHUP calls `on_hup` (the app's lifespan gives its own: reload the models) on the event loop
    instead of ending the process (its default)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread (an in-process test client)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP is passed on to the workers instead of restarting them."""

    def handle_hup(self) -> None:
        log.info("SIGHUP received: passing it on to the workers")
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)

    def keep_subprocess_alive(self) -> None:
        """uvicorn's restart of a dead worker, and (multiprocess metrics) its per-process series dropped: the
        per-worker series stay bounded by the worker count however often workers are replaced."""
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        gone = before - {process.pid for process in self.processes}
        if gone and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess  # only here: this module stays light to import

            for pid in gone:
                if pid is not None:
                    multiprocess.mark_process_dead(pid)


def ensure_descriptors(max_connections: int) -> None:
    """Raise the soft limit on open files to what max_connections needs (up to the hard limit); warn if short."""
    needed = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
        if soft < needed:
            log.warning(
                "open-file limit %d is under DIGITAE_MAX_CONNECTIONS + %d = %d: raise it (ulimit -n) or lower it",
                soft, FD_HEADROOM, needed,
            )  # fmt: skip


def serve(settings: Settings, app: Any, log_config: dict[str, Any] | None, *, factory: bool = False) -> None:
    """Serve `app` with the bounds: an ASGI app, or (needed for several workers) its import string, which with
    `factory` names a function that builds it."""
    ensure_descriptors(settings.max_connections)
    config = BoundedConfig(
        app,
        host=settings.host,
        port=settings.port,
        http=BoundedHttpToolsProtocol,
        factory=factory,
        workers=settings.worker_count,
        log_level=settings.log_level,
        log_config=log_config,  # applied again in each worker process
        access_log=False,  # the request middleware logs each request, with its id
        server_header=False,
        # Behind a trusted proxy (DIGITAE_FORWARDED_ALLOW_IPS) the scope's client is the one it forwards for.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        timeout_keep_alive=settings.idle_timeout_s,  # type: ignore[arg-type]  # a float works
        timeout_graceful_shutdown=settings.shutdown_timeout_s,  # type: ignore[arg-type]
    )
    config.limits = ConnectionLimits.of(settings)
    if settings.worker_count == 1:
        config.load_app()
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            raise SystemExit(STARTUP_FAILURE)
        return
    sock: socket.socket = config.bind_socket()
    Supervisor(config, sockets=[sock]).run()
