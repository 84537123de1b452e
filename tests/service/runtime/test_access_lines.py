"""Access lines are written from their tuple by the writer thread, exactly as the LogRecord path writes them."""

from __future__ import annotations

import io
import logging
import logging.config

import pytest

from service.runtime.logs import (
    LOG_FORMATS,
    AccessLine,
    BackgroundStreamHandler,
    EscapingFormatter,
    logging_config,
)


def _line(**changes: object) -> AccessLine:
    fields = dict(
        created=1_765_000_000.0421,
        method="POST",
        path="/v1/models/ae-6/reconstruct",
        status=200,
        duration_ms=1.25,
        request_id="3f2a9c0d11e24b7c",
        trace_id="",
        route="/v1/models/{name}/reconstruct",
        model="ae-6",
        model_version="1",
        client="127.0.0.1",
    )
    return AccessLine(**(fields | changes))


LINES = [
    _line(),
    _line(trace_id="0af7651916cd43dd8448eb211c80319c", created=1_765_000_001.999),
    _line(path="/v1/\x1b[31mred\nforged INFO line\u202e", status=404, request_id="id\r\nx", duration_ms=0.04),
]


@pytest.mark.parametrize("line", LINES)
def test_the_direct_text_is_the_formatted_record(line: AccessLine) -> None:
    formatter = EscapingFormatter(LOG_FORMATS["text"]["fmt"])
    direct = formatter.access_text(line)
    assert direct == formatter.format(line.record()), "the same bytes as the LogRecord path"
    assert "\n" not in direct and "\x1b" not in direct, "control characters stay escaped"


def test_another_format_falls_back_to_a_record() -> None:
    assert EscapingFormatter("%(levelname)s %(message)s").access_text(LINES[0]) is None
    assert EscapingFormatter(LOG_FORMATS["text"]["fmt"], datefmt="%H:%M").access_text(LINES[0]) is None


class _KeptOpen(io.StringIO):
    """A stream still readable after the handler closes it."""

    def close(self) -> None:
        return None


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_writer_writes_access_lines_and_records_in_order(log_format: str) -> None:
    config = logging_config("info", log_format)
    handler = BackgroundStreamHandler()
    formatter = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["plain"])
    handler.setFormatter(formatter)
    stream = _KeptOpen()
    handler.target.setStream(stream)
    handler._pending.put_nowait(LINES[0])
    handler.handle(logging.LogRecord("digitae", logging.WARNING, "", 0, "model %s reloaded", ("ae-6",), None))
    handler._pending.put_nowait(LINES[2])
    handler.close()
    written = stream.getvalue().splitlines()
    assert len(written) == 3, written
    assert [formatter.format(LINES[0].record()), formatter.format(LINES[2].record())] == [written[0], written[2]]
    assert "model ae-6 reloaded" in written[1]
