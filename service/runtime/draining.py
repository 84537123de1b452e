"""Stopping without dropping requests: what a worker does between SIGTERM and its exit.

1. At SIGTERM the worker starts draining: /readyz answers 503, so balancers and Kubernetes stop sending it new
   requests; meanwhile it keeps accepting and serving (each response says `Connection: close`, so keep-alive
   clients reconnect, to another replica).
2. After `drain_s` the server's own shutdown runs: it stops accepting and finishes what is in flight.
3. Whatever clients do, the process exits `grace_s` after SIGTERM (drain included).

A balancer must notice the 503 within `drain_s` (HAProxy: `inter` x `fall` below it; Kubernetes: the readiness
probe's `periodSeconds` x `failureThreshold`), and whoever sends SIGTERM must wait at least `grace_s` before
SIGKILL (`terminationGracePeriodSeconds`, compose's `stop_grace_period`).

Only the server-facing step 2 knows the server: `Drain.install` runs inside the served app's lifespan, takes
SIGTERM over from the server's handler and calls that handler when the drain ends. SIGINT (Ctrl-C) still stops
at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("digitae.drain")

GRACE_EXIT_CODE = 1  # exiting at the grace deadline, with requests still open


class Drain:
    """The drain state of one worker process."""

    def __init__(self, drain_s: float, grace_s: float) -> None:
        self.drain_s = drain_s
        self.grace_s = grace_s
        self.started_at: float | None = None  # time.monotonic() at SIGTERM
        self._server_handler: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def install(self) -> None:
        """In the running event loop of the main thread: SIGTERM starts the drain instead of stopping at once."""
        if threading.current_thread() is not threading.main_thread():
            return  # e.g. a test client running the app in a thread: no signals there
        self._loop = asyncio.get_running_loop()
        self._server_handler = signal.getsignal(signal.SIGTERM)
        self._loop.add_signal_handler(signal.SIGTERM, self.begin)

    def uninstall(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGTERM)
            if self._server_handler is not None:
                signal.signal(signal.SIGTERM, self._server_handler)
            self._loop = None

    def begin(self) -> None:
        """Start draining (a second SIGTERM changes nothing: the deadline stands)."""
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        log.info(
            "SIGTERM in pid %d: not ready from now on; serving %.1f s more, exiting within %.1f s",
            os.getpid(),
            self.drain_s,
            self.grace_s,
        )
        deadline = threading.Timer(self.grace_s, _exit_at_deadline, (self.grace_s,))
        deadline.daemon = True
        deadline.start()
        assert self._loop is not None
        self._loop.call_later(self.drain_s, self._stop_server)

    def _stop_server(self) -> None:
        log.info("drain over in pid %d: finishing the requests in flight", os.getpid())
        handler: Callable[[int, Any], Any] | int | None = self._server_handler
        if callable(handler):
            handler(signal.SIGTERM, None)  # the server's own graceful shutdown
        else:  # no server handler: the default action, as if we had never intervened
            self.uninstall()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)


def _exit_at_deadline(grace_s: float) -> None:
    log.warning("grace period of %.1f s over in pid %d: exiting with requests still open", grace_s, os.getpid())
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(GRACE_EXIT_CODE)
