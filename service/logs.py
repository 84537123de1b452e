"""The log: one format for our loggers and uvicorn's, written from a background thread, every record one line.

Imports only the standard library: uvicorn pickles the logging config to each worker process, and a worker
must be able to read it (and so import this module) within the supervisor's first health ping.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
from logging.handlers import QueueHandler, QueueListener
from typing import Any


class BackgroundStreamHandler(QueueHandler):
    """Writes to stderr from a background thread: formatting and writing the per-request lines (to a slow
    terminal or a full pipe) never stall the event loop. Closing it (logging does at exit) flushes the queue."""

    def __init__(self) -> None:
        super().__init__(queue.SimpleQueue())
        self.target = logging.StreamHandler(sys.stderr)
        self.listener = QueueListener(self.queue, self.target)
        self.listener.start()
        self.listening = True

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.target.setFormatter(fmt)  # the background thread formats; this thread only queues

    def close(self) -> None:
        if self.listener._thread is not None:
            self.listener.stop()
        self.target.close()
        super().close()


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_control(text: str) -> str:
    """Control characters (line breaks, terminal escapes, bidi overrides) as visible escapes: whatever a client
    sends can neither forge a log line nor drive the terminal that shows it."""
    return _UNPRINTABLE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


class EscapingFormatter(logging.Formatter):
    """The log format with control characters escaped: every record is one line, whatever it holds (a
    traceback too: its line breaks are written as \\x0a, so no part of it can pass for a record of its own)."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_control(super().format(record))


def logging_config(level: str) -> dict[str, Any]:
    """One format for our loggers and uvicorn's, for `logging.config.dictConfig` and uvicorn's `log_config`
    (uvicorn applies it in every worker process). The access line is ours; uvicorn's is turned off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"()": EscapingFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"()": BackgroundStreamHandler, "formatter": "plain"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
