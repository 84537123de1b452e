"""The log: one format for our loggers and uvicorn's, written from a background thread, every record one line.

Imports only the standard library: uvicorn pickles the logging config to each worker process, and a worker
must be able to read it (and so import this module) within the supervisor's first health ping.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import time
from logging.handlers import QueueHandler, QueueListener
from typing import Any, NamedTuple, TextIO

ACCESS_LINE = "%s %s %d %.1fms request_id=%s"
TRACED_ACCESS_LINE = ACCESS_LINE + " trace_id=%s"  # while tracing is on


class AccessLine(NamedTuple):
    """An access line as the request leaves it: a tuple, made into a log record in the writer's thread.
    The text line shows the first fields; the JSON line (DIGITAE_LOG_FORMAT=json) all of them."""

    created: float
    method: str
    path: str
    status: int
    duration_ms: float
    request_id: str
    trace_id: str  # "" while tracing is off
    route: str  # the route template (bounded), the path being in the message
    model: str | None
    model_version: str | None
    client: str | None  # the client's address (the forwarded one behind a trusted proxy)

    def record(self) -> logging.LogRecord:
        access_log = logging.getLogger("digitae.access")
        args: tuple[Any, ...] = (self.method, self.path, self.status, self.duration_ms, self.request_id)
        if self.trace_id:
            text, args = TRACED_ACCESS_LINE, (*args, self.trace_id)
        else:
            text = ACCESS_LINE
        fields = self._asdict()
        del fields["created"]
        record = access_log.makeRecord(access_log.name, logging.INFO, "", 0, text, args, None, extra=fields)
        record.created, record.msecs = self.created, (self.created % 1) * 1000
        return record


WRITE_EVERY_S = 0.05
BATCH_LINES = 4096  # the most lines one write carries
STOP_WAIT_S = 5.0  # at exit, the longest wait for the queue to be written (a stalled stream must not hold it)


class BatchWriter(QueueListener):
    """The standard library's queue listener (its thread, sentinel and stop), writing in batches: it wakes at most
    every WRITE_EVERY_S and writes whatever has queued up (records, and access lines as `AccessLine` tuples, made
    into records here) in one write and one flush."""

    def __init__(self, pending: queue.SimpleQueue[Any], target: logging.StreamHandler[TextIO]) -> None:
        super().__init__(pending, target)
        self.pending, self.target = pending, target

    def dequeue(self, block: bool) -> Any:
        """The next batch (a list), or the sentinel (QueueListener's: None) when nothing is left before it."""
        first = self.pending.get(block)
        if first is None:
            return first
        time.sleep(WRITE_EVERY_S)  # let lines gather: one wake-up per batch, not one per request
        batch = [first]
        while len(batch) < BATCH_LINES:
            try:
                item = self.pending.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.enqueue_sentinel()  # stop after this batch is written
                break
            batch.append(item)
        return batch

    def handle(self, batch: list[Any]) -> None:  # type: ignore[override]
        target = self.target
        formatter = target.formatter
        access_text = formatter.access_text if isinstance(formatter, EscapingFormatter) else None
        lines = []
        for item in batch:
            if access_text is not None and isinstance(item, AccessLine):
                text = access_text(item)  # the same line, without a LogRecord (a third of the cost)
                if text is not None:
                    lines.append(text + target.terminator)
                    continue
            record = item.record() if isinstance(item, AccessLine) else item
            try:
                lines.append(target.format(record) + target.terminator)
            except Exception:
                target.handleError(record)
        if lines:
            try:
                with target.lock:  # type: ignore[union-attr]
                    target.stream.write("".join(lines))
                    target.flush()
            except Exception:
                last = batch[-1]
                target.handleError(last.record() if isinstance(last, AccessLine) else last)

    def stop(self) -> None:
        """QueueListener's stop, bounded by STOP_WAIT_S."""
        if self._thread is not None:
            self.enqueue_sentinel()
            self._thread.join(timeout=STOP_WAIT_S)
            self._thread = None


class BackgroundStreamHandler(QueueHandler):
    """Writes to stderr from a background thread (a `BatchWriter`): formatting and writing the per-request lines
    (to a slow terminal or a full pipe) never stall the event loop. Closing it (logging does at exit) writes what
    is queued."""

    def __init__(self) -> None:
        self._pending: queue.SimpleQueue[Any] = queue.SimpleQueue()  # log_access queues its tuples here directly
        super().__init__(self._pending)
        self.target = logging.StreamHandler(sys.stderr)
        self.accepting = True
        self._writer = BatchWriter(self._pending, self.target)
        self._writer.start()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)  # the background thread formats; this thread only queues

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Queue the record as it is: QueueHandler's default formats and copies it here, in the caller's thread
        (for pickling to another process, which a thread does not need): that was most of a request's logging cost."""
        return record

    def close(self) -> None:
        self.accepting = False
        self._writer.stop()
        self.target.close()
        super().close()


class PlainFormatter(logging.Formatter):
    """The log line format, with the timestamp's text made once per second rather than once per line."""

    _second = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second or datefmt is not None:
            self._second = second
            self._text = time.strftime(datefmt or self.default_time_format, self.converter(second))
        return f"{self._text},{int(record.msecs):03d}"


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_control(text: str) -> str:
    """Control characters (line breaks, terminal escapes, bidi overrides) as visible escapes: whatever a client
    sends can neither forge a log line nor drive the terminal that shows it."""
    return _UNPRINTABLE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


class EscapingFormatter(PlainFormatter):
    """The log format with control characters escaped: every record is one line, whatever it holds (a
    traceback too: its line breaks are written as \\x0a, so no part of it can pass for a record of its own)."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_control(super().format(record))

    def access_text(self, line: AccessLine) -> str | None:
        """An access line as `format` writes it with the service's format (TEXT_FORMAT), made straight from the
        tuple: building a LogRecord and formatting it cost about 10 us a line in the writer thread, which holds the
        interpreter lock the event loop needs. None for another format: the writer then makes a record."""
        if self._fmt != TEXT_FORMAT or self.datefmt is not None:
            return None
        message = ACCESS_LINE % (line.method, line.path, line.status, line.duration_ms, line.request_id)
        if line.trace_id:
            message += f" trace_id={line.trace_id}"
        msecs = int((line.created % 1) * 1000)
        second = int(line.created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self.default_time_format, self.converter(second))
        return escape_control(f"{self._text},{msecs:03d} INFO digitae.access: {message}")


def json_formatter() -> logging.Formatter:
    """DIGITAE_LOG_FORMAT=json: one JSON object per line (python-json-logger), with `timestamp`, `level`,
    `logger`, `message` and the fields a record carries (an access line's request_id, trace_id, method, route,
    status, duration_ms, model, model_version, client). JSON's escaping (ASCII only: every control character,
    line break and non-ASCII character as a \\u escape) keeps each record one line that no client text can forge."""
    from pythonjsonlogger.json import JsonFormatter  # imported only when chosen

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        json_ensure_ascii=True,
    )


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = {
    "text": {"()": EscapingFormatter, "fmt": TEXT_FORMAT},
    "json": {"()": json_formatter},
}


def logging_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """One format for our loggers and uvicorn's, for `logging.config.dictConfig` and uvicorn's `log_config`
    (uvicorn applies it in every worker process). The access line is ours; uvicorn's is turned off.
    `log_format`: "text" (one escaped line per record) or "json" (one JSON object per line)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": LOG_FORMATS[log_format]},
        "handlers": {"stderr": {"()": BackgroundStreamHandler, "formatter": "plain"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
