"""The HTTP server: uvicorn (httptools) with the connection-level bounds it lacks, and the process's signals.

uvicorn bounds neither the size of a request's headers nor the time a client may take to send them or its
body, and it closes idle connections only after a first response. `BoundedHttpToolsProtocol` adds those
bounds to uvicorn's own httptools protocol (its speed is kept: a request that arrives in one read arms no
timer at all):

- a connection that sends nothing is closed after `idle_timeout_s` (uvicorn's keep-alive timer covers the
  time between requests);
- the headers must be complete within `header_timeout_s` of their first byte and `max_header_bytes` long,
  else 408 / 431 and the connection is closed;
- the body must be complete within `body_timeout_s` of the end of the headers, else 408 and close;
- past `max_connections` open connections, a new one may still ask for /healthz or /readyz (PROBE_PATHS: a full
  server still answers its probes); anything else, or nothing within PROBE_WAIT_S, is answered 503 and closed;
  past `max_connections + PROBE_HEADROOM` a new connection is answered 503 and closed at once;
- one client address holds at most `max_connections_per_client` of them (503 at once past it), so a single
  client cannot take every slot;
- an answer the client does not read for `write_timeout_s` (the send buffer stays full) is cut off: the
  connection is aborted and the request's work (a bulk slot) is freed.

This module imports nothing heavy (no torch, no FastAPI): each worker process unpickles its config, and so
imports this module, before it can answer the supervisor's health pings.

Signals: SIGTERM stops accepting, lets requests in flight finish and exits by `shutdown_timeout_s` whatever
the clients do (uvicorn's graceful timeout); SIGHUP never stops a serving process: it calls `on_sighup`.
runtime/process.py runs the server: `serve`, the worker supervisor, the open-file limit, `handle_sighup`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from asyncio import TimerHandle
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.wire import error_body

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("digitae")

# Set in a request's scope state when the server closed the connection before the body was in (408: too slow,
# 503: shutting down): the request log then gives that status, not 499 (the client left).
CLOSED_WITH = "digitae.closed_with"
REFUSAL_LOG_INTERVAL_S = 10.0  # at most one "connection refused" warning per interval per process
# Past max_connections, this many more connections are accepted for health probes only, each for at most
# PROBE_WAIT_S to send its request line: a server full of idle or hostile connections still answers its probes.
PROBE_PATHS = frozenset((b"/healthz", b"/readyz"))
PROBE_HEADROOM = 64
PROBE_WAIT_S = 1.0


def on_sighup() -> None:
    """What SIGHUP does to a serving process: nothing that stops it. The one place to give it a meaning
    (e.g. reloading the models); each worker's lifespan routes SIGHUP here (`handle_sighup`)."""
    log.info("SIGHUP received: nothing to do; the process keeps serving")


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    idle_timeout_s: float
    max_connections: int
    max_connections_per_client: int
    write_timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            max_connections=settings.max_connections,
            max_connections_per_client=settings.max_connections_per_client,
            write_timeout_s=settings.write_timeout_s,
        )


class HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose headers are over the limit."""


class NotAProbe(Exception):
    """Raised from a parser callback to stop parsing a request, past the connection cap, that is not a probe."""


class BoundedConfig(uvicorn.Config):
    """uvicorn's Config carrying our limits to the protocol (pickled to each worker process with it)."""

    limits: ConnectionLimits

    def load(self) -> None:
        """In a worker process this runs first thing, before the application is imported (seconds, with torch):
        from here on SIGHUP cannot end the worker (the lifespan then routes it through the event loop)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, lambda signum, frame: on_sighup())
        super().load()


def error_response(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer in the service's error shape, written straight to the socket."""
    body = error_body(code, message)
    reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}[status]
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return head % (status, reason, len(body)) + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded header size, read timeouts and connection count."""

    _last_refusal_log = 0.0
    open_by_client: ClassVar[Counter[str]] = Counter()  # this process's open connections, by client address

    def __init__(
        self,
        config: BoundedConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config.limits
        self.reading_headers = True  # between requests or inside a request's headers
        self.header_bytes = 0  # bytes received since the current request began, while its headers are incomplete
        self.body_pending = False  # headers complete, body not yet
        self.header_size = 0  # bytes of the current request's line and headers, as parsed
        self.headers_too_large = False
        self.read_timer: TimerHandle | None = None
        self.read_timer_kind = ""
        self.write_timer: TimerHandle | None = None
        self.client_address: str | None = None  # counted in open_by_client while set
        self.probes_only = False  # accepted past max_connections: only a health probe is answered

    # -- connection ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        address = _client_address(transport)
        per_client = self.limits.max_connections_per_client
        open_now = len(self.connections)
        if per_client and address is not None and self.open_by_client[address] >= per_client:
            message = (
                f"this client has {per_client} connections open, the most one address may hold "
                "(DIGITAE_MAX_CONNECTIONS_PER_CLIENT); reuse them or retry shortly"
            )
            self._refuse_connection(transport, message)
            return
        if open_now >= self.limits.max_connections + PROBE_HEADROOM:
            self._refuse_connection(transport, self._full_message())
            return
        super().connection_made(transport)
        if address is not None:
            self.client_address = address
            self.open_by_client[address] += 1
        if open_now >= self.limits.max_connections:
            self.probes_only = True
            self._log_refusal()
            self._arm("idle", min(PROBE_WAIT_S, self.limits.idle_timeout_s), self._probe_wait_over)
        else:
            self._arm("idle", self.limits.idle_timeout_s, self._idle_timed_out)

    def _full_message(self) -> str:
        return f"the server has its maximum of {self.limits.max_connections} connections open; retry shortly"

    def _refuse_connection(self, transport: asyncio.Transport, message: str) -> None:
        self.transport = transport
        self._log_refusal()
        _count_refused_connection()
        transport.write(error_response(503, "too_many_connections", message))
        transport.close()

    def _probe_wait_over(self) -> None:
        self.read_timer, self.read_timer_kind = None, ""
        _count_refused_connection()
        self._answer_and_close(503, "too_many_connections", self._full_message())

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_write()
        if self.client_address is not None:
            self.open_by_client[self.client_address] -= 1
            if self.open_by_client[self.client_address] <= 0:
                del self.open_by_client[self.client_address]
            self.client_address = None
        super().connection_lost(exc)

    # -- writing: a client that does not read its answer ---------------------------------------------

    def pause_writing(self) -> None:
        """The send buffer is full (the client is not reading): it has `write_timeout_s` to read some."""
        super().pause_writing()
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self.limits.write_timeout_s, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_write()

    def _disarm_write(self) -> None:
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _write_timed_out(self) -> None:
        """Nothing read for `write_timeout_s`: drop the connection and what it still had to send; the request
        sees a disconnect (a streamed answer stops and frees its bulk slot)."""
        self.write_timer = None
        log.warning("write timeout: the client read nothing for %g s; connection closed", self.limits.write_timeout_s)
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, plus the header-size and read-time bounds."""
        self._unset_keepalive_if_required()
        if self.reading_headers:
            self.header_bytes += len(data)
        try:
            self.parser.feed_data(data)  # the parser's callbacks below update the state
        except httptools.HttpParserCallbackError:
            if self.headers_too_large:
                self._refuse_headers()
            elif self.probes_only:
                _count_refused_connection()
                message = self._full_message() + " (only /healthz and /readyz are answered past it)"
                self._answer_and_close(503, "too_many_connections", message)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.transport.is_closing():
            return
        if self.reading_headers and self.header_bytes:
            if self.header_bytes > self.limits.max_header_bytes:
                self._refuse_headers()  # still incomplete and already too long: no need to wait for the rest
            elif self.read_timer_kind not in ("header", "shutdown") and not self.probes_only:
                self._arm("header", self.limits.header_timeout_s, self._header_timed_out)
        elif self.body_pending and self.read_timer_kind not in ("body", "shutdown"):
            self._arm("body", self.limits.body_timeout_s, self._body_timed_out)

    def _refuse_headers(self) -> None:
        message = (
            f"the request line and headers are over {self.limits.max_header_bytes:,} bytes, the limit "
            "(DIGITAE_MAX_HEADER_BYTES)"
        )
        self._answer_and_close(431, "headers_too_large", message)

    # -- parser callbacks ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.header_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_header_bytes(self, size: int) -> None:
        """Headers that arrive complete in one read are measured here (the raw count covers incomplete ones)."""
        self.header_size += size
        if self.header_size > self.limits.max_header_bytes:
            self.headers_too_large = True
            raise HeadersTooLarge  # stops the parser; data_received answers 431

    def on_headers_complete(self) -> None:
        if self.probes_only and self.url.split(b"?", 1)[0] not in PROBE_PATHS:
            raise NotAProbe  # stops the parser; data_received answers 503
        self.reading_headers, self.body_pending = False, True
        self._disarm()
        super().on_headers_complete()
        if self.probes_only and self.cycle is not None:
            self.cycle.keep_alive = False  # one probe, then the slot past the cap is free again

    def on_message_complete(self) -> None:
        self.reading_headers, self.body_pending, self.header_bytes = True, False, 0
        self._disarm()
        super().on_message_complete()

    # -- timers ----------------------------------------------------------------------------------------

    def _arm(self, kind: str, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self.read_timer = self.loop.call_later(seconds, callback)
        self.read_timer_kind = kind

    def _disarm(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer, self.read_timer_kind = None, ""

    def _idle_timed_out(self) -> None:
        self.read_timer, self.read_timer_kind = None, ""
        if not self.transport.is_closing():
            self.transport.close()  # nothing was asked: nothing to answer

    def _header_timed_out(self) -> None:
        self.read_timer, self.read_timer_kind = None, ""
        message = f"the request headers were not complete within {self.limits.header_timeout_s:g} s"
        self._answer_and_close(408, "request_timeout", message)

    def _body_timed_out(self) -> None:
        self.read_timer, self.read_timer_kind = None, ""
        message = f"the request body was not complete within {self.limits.body_timeout_s:g} s"
        self._close_mid_request(408, "request_timeout", message)

    def _close_mid_request(self, status: int, code: str, message: str) -> None:
        """Answer a request whose body is not in yet with `status` and close: the application sees the client
        as gone (its read ends, whatever it answers is dropped)."""
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        cycle.scope["state"][CLOSED_WITH] = status
        self._answer_and_close(status, code, message)
        cycle.disconnected = True
        cycle.message_event.set()

    def shutdown(self) -> None:
        """SIGTERM: idle connections close now (uvicorn); one still sending its request gets until just before
        the shutdown deadline, then 503, so it ends as an answered request rather than a cancelled task."""
        super().shutdown()
        deadline = self.config.timeout_graceful_shutdown
        if deadline is not None and not self.transport.is_closing() and (self.body_pending or self.header_bytes):
            self._arm("shutdown", max(deadline - 0.2, 0.0), self._shutdown_deadline)

    def _shutdown_deadline(self) -> None:
        self.read_timer, self.read_timer_kind = None, ""
        message = "the server is shutting down and the request was not complete; retry"
        if self.body_pending:
            self._close_mid_request(503, "shutting_down", message)
        else:
            self._answer_and_close(503, "shutting_down", message)

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        if not self.transport.is_closing():
            self.transport.write(error_response(status, code, message))
            self.transport.close()

    def _log_refusal(self) -> None:
        now = time.monotonic()
        if now - BoundedHttpToolsProtocol._last_refusal_log >= REFUSAL_LOG_INTERVAL_S:
            BoundedHttpToolsProtocol._last_refusal_log = now
            log.warning("connection refused: %d connections open (DIGITAE_MAX_CONNECTIONS)", len(self.connections))


def _client_address(transport: asyncio.Transport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def _count_refused_connection() -> None:
    """digitae_connections_refused_total: a connection answered 503 at a connection cap (the alert rules watch it)."""
    from service.runtime.metrics import CONNECTIONS_REFUSED  # here: workers import this module, light, first

    CONNECTIONS_REFUSED.inc()
