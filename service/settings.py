"""Every setting of the service, in one place: read from `DIGITAE_*` environment variables.

Lists (`DIGITAE_API_KEYS`, `DIGITAE_CORS_ORIGINS`) are written comma-separated (`a,b`) or as JSON (`["a","b"]`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.checkpoint import DEFAULT_CHECKPOINTS_DIR
from models.checkpoint_bounds import DEFAULT_BOUNDS, CheckpointBounds
from models.networks import SIDE

MiB = 1024 * 1024
JSON_OVERHEAD_BYTES = 64 * 1024  # room for the JSON (or multipart) around one image at the upload cap
NPY_HEADER_BYTES = 4096  # room for a .npy header (numpy writes 128 bytes for the arrays the service takes)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIGITAE_", extra="ignore", validate_default=True)

    models_dir: Path = Field(DEFAULT_CHECKPOINTS_DIR, description="folder of checkpoint folders to serve")
    host: str = Field("127.0.0.1", description="address uvicorn binds")
    port: int = Field(8000, ge=0, le=65535, description="port uvicorn binds")
    workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = Field(
        "auto",
        description="uvicorn worker processes, each with its own copy of the models; auto = one per CPU core the "
        "process may use (a container's CPU limit included; one on a one-core machine)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available, else cpu")
    torch_threads: int = Field(
        1, ge=1, le=256, description="torch intra-op threads per worker; 1 leaves a core for the event loop"
    )
    max_upload_bytes: int = Field(5 * MiB, ge=1024, description="largest image file accepted, in bytes")
    max_image_pixels: int = Field(25_000_000, ge=784, description="largest image accepted, in pixels (width x height)")
    max_batch: int = Field(64, ge=1, le=4096, description="most images or latents in one batch request")
    max_samples: int = Field(64, ge=1, le=4096, description="largest n for /sample")
    max_sigma: float = Field(100.0, ge=0, le=1e6, description="largest sigma for /sample")
    max_interpolation_steps: int = Field(64, ge=2, le=4096, description="largest steps for /interpolate")
    max_bulk: int = Field(10_000, ge=1, le=1_000_000, description="most rows in one application/x-npy request")
    max_concurrent_bulk: int = Field(2, ge=1, le=64, description="application/x-npy requests served at once per worker")
    max_upscale: int = Field(16, ge=1, le=64, description="largest upscale factor for returned images")
    max_request_pixels: int = Field(
        50_000_000, ge=784, description="most pixels in all the images of one request together (a batch), decoded"
    )
    decode_concurrency: int = Field(
        default_factory=lambda: usable_cpus(),
        ge=1,
        le=256,
        description="most images decoded at once per worker (each can take ~13 bytes per pixel); default: the CPU "
        "cores the process may use (a container's CPU limit included)",
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="longest request line and headers together, in bytes (431)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="the headers must arrive within this many seconds of their first byte (408)"
    )
    body_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="the body must arrive within this many seconds after the headers (408)"
    )
    idle_timeout_s: float = Field(
        5.0, gt=0, le=3600, description="a connection with no request in progress is closed after this many seconds"
    )
    max_connections: int = Field(
        1000, ge=1, le=1_000_000, description="most open connections per worker; a new one past it gets 503 and closed"
    )
    shutdown_timeout_s: float = Field(
        10.0, ge=0, le=3600, description="after SIGTERM, requests in flight get this long; then the process exits"
    )
    microbatch_enabled: bool = Field(True, description="group concurrent requests into one forward pass")
    microbatch_max_size: int = Field(64, ge=1, le=4096, description="most items in one forward pass")
    microbatch_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="longest wait for a batch to fill, in ms: a batch goes sooner once no other request in this "
        "worker is still on its way to it (at once for a lone request)",
    )
    fast_dispatch: bool = Field(
        True,
        description="answer the routes that need none of FastAPI's per-request machinery (the inference routes) "
        "straight from their handler, past FastAPI's router and dependency solving; false: everything through FastAPI",
    )
    skip_bad_checkpoints: bool = Field(
        False, description="false: a bad checkpoint stops startup; true: it is skipped with a warning"
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="accepted bearer keys for /v1; empty = open"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS; empty = no CORS headers"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="logging level")
    # -- operations: live reload and stopping (service/catalog/reloading.py, service/runtime/draining.py) --
    reload_interval_s: float = Field(
        10.0, ge=0, le=86400, description="how often each worker looks for new, changed or removed checkpoints; 0 = off"
    )
    admin_key: SecretStr | None = Field(
        None, description="bearer key for /admin (POST /admin/reload); unset or empty = the admin routes are off"
    )
    drain_s: float = Field(
        5.0, ge=0, le=3600, description="after SIGTERM: seconds of answering /readyz 503 while still serving"
    )
    grace_s: float = Field(
        25.0, gt=0, le=3600, description="after SIGTERM: the process exits by then, drain included, whatever clients do"
    )
    # -- connection bounds, round 2 (service/runtime/server.py): slow readers, one client's share ----------------
    write_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="an answer the client reads none of for this many seconds is cut off"
    )
    max_connections_per_client: int = Field(
        256,
        ge=0,
        le=1_000_000,
        description="most open connections per worker from one client address (503 past it); 0 = no per-client "
        "cap (behind a balancer every connection has its address)",
    )
    # -- observability: log format (service/runtime/logs.py); traces are configured by the standard OTEL_* variables
    # (service/runtime/tracing.py) --
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one escaped line per record; json: one JSON object per line (for log collectors)"
    )
    # -- deployment: failing closed and running behind a proxy (service/runtime/server.py) --
    require_keys: bool = Field(
        False, description="true: refuse to start without DIGITAE_API_KEYS (a deployment whose key Secret is missing)"
    )
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="proxies (addresses or networks) whose X-Forwarded-For/-Proto give the client's address; "
        "empty = the connection's peer is the client",
    )

    @field_validator("api_keys", "cors_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """Accept `a,b` as well as `["a","b"]` from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_are_usable(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in (k.get_secret_value() for k in keys):
            if len(key) < 8 or any(c.isspace() for c in key):
                raise ValueError("every API key needs at least 8 characters and no spaces")
        return keys

    @field_validator("admin_key")
    @classmethod
    def _admin_key_is_strong(cls, secret: SecretStr | None) -> SecretStr | None:
        key = secret.get_secret_value() if secret is not None else ""
        if key and (len(key) < 16 or any(c.isspace() for c in key)):
            raise ValueError("the admin key needs at least 16 characters and no spaces")
        return secret if key else None

    @model_validator(mode="after")
    def _drain_fits_grace(self) -> Settings:
        if self.drain_s >= self.grace_s:
            raise ValueError(f"drain_s ({self.drain_s}) must be shorter than grace_s ({self.grace_s})")
        return self

    @model_validator(mode="after")
    def _keys_when_required(self) -> Settings:
        if self.require_keys and not self.api_keys:
            raise ValueError(
                "require_keys is set but no API key is: set DIGITAE_API_KEYS (e.g. from the key Secret), "
                "or DIGITAE_REQUIRE_KEYS=false to serve without keys"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def worker_count(self) -> int:
        """`workers` as a number: `auto` is the CPU cores this process may use (see `usable_cpus`)."""
        return usable_cpus() if self.workers == "auto" else self.workers

    @property
    def max_npy_request_bytes(self) -> int:
        """The cap on an application/x-npy body: `max_bulk` float32 images and the header."""
        return self.max_bulk * SIDE * SIDE * 4 + NPY_HEADER_BYTES

    @property
    def max_request_bytes(self) -> int:
        """The cap on any request body: one base64 image at the upload cap plus the JSON around it."""
        return math.ceil(self.max_upload_bytes * 4 / 3) + JSON_OVERHEAD_BYTES

    def public(self) -> dict[str, Any]:
        """The settings as logged at startup: the keys are `SecretStr`, written masked."""
        return self.model_dump(mode="json")

    # -- checkpoint bounds: what loading one checkpoint may cost, checked from its card and its files' sizes before
    # anything is hashed or allocated (models/checkpoint.py CheckpointBounds holds the defaults and why) --
    max_checkpoint_parameters: int = Field(
        DEFAULT_BOUNDS.max_parameters,
        ge=1,
        description="largest network a checkpoint's card may describe, in parameters; a larger one is refused",
    )
    max_checkpoint_file_bytes: int = Field(
        DEFAULT_BOUNDS.max_file_bytes,
        ge=1024,
        description="largest file a checkpoint's card may list, in bytes; a larger one is refused before it is hashed",
    )
    checkpoint_read_timeout_s: float = Field(
        DEFAULT_BOUNDS.read_timeout_s,
        gt=0,
        le=3600,
        description="time to read and hash one checkpoint's files; past it the checkpoint is refused",
    )

    @property
    def checkpoint_bounds(self) -> CheckpointBounds:
        return CheckpointBounds(
            self.max_checkpoint_parameters, self.max_checkpoint_file_bytes, self.checkpoint_read_timeout_s
        )


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The CPU cores this process may use: its affinity, capped by a cgroup CPU limit (a container's
    `--cpus`, Kubernetes' `limits.cpu`), rounded down but at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = _cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    return max(1, cores)


def _cgroup_cpu_limit(root: Path) -> float | None:
    """cgroup v2 `cpu.max` ("quota period", or "max period"), else v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
