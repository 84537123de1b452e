"""DIGITAE_LOG_FORMAT=json on a real server: every line it writes is one JSON object, an access line carries the
request's fields (request and trace ids, method, route template, status, duration, model and version, client), and
whatever a client puts in a path can neither break a line nor put a control character in the log."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, b64, example_digit, png_bytes

pytestmark = pytest.mark.server_settings(log_format="json")

FORGED_PATH = "/v1/models/%0a%0d%1b%5b31m%7b%22level%22%3a%22ERROR%22%7d%E2%80%A8%C2%85/encode"


def records(server: ServerProcess, until_request_id: str) -> list[dict[str, Any]]:
    """Every line of the server's output as JSON, once the access line of `until_request_id` is written."""
    deadline = time.monotonic() + 5
    while until_request_id not in server.log():
        assert time.monotonic() < deadline, f"no line for {until_request_id}:\n{server.log()}"
        time.sleep(0.1)
    lines = server.log().splitlines()
    for line in lines:
        assert all(" " <= char <= "~" for char in line), f"a control or non-ASCII character in {line!r}"
    return [json.loads(line) for line in lines if line]


def test_every_line_is_a_json_object_and_the_access_line_has_the_requests_fields(
    server: ServerProcess, client: httpx.Client
) -> None:
    answer = client.post(
        "/v1/models/ae-6/encode", json={"image": b64(png_bytes(example_digit()))}, headers={"x-request-id": "json-ok"}
    )
    assert answer.status_code == 200
    logged = records(server, "json-ok")
    assert {"timestamp", "level", "logger", "message"} <= set(logged[0]), logged[0]  # the startup lines too
    (access,) = [r for r in logged if r.get("request_id") == "json-ok"]
    assert access["logger"] == "digitae.access" and access["level"] == "INFO"
    assert access["method"] == "POST" and access["path"] == "/v1/models/ae-6/encode"
    assert access["route"] == "/v1/models/{name}/encode"
    assert access["status"] == 200 and 0 < access["duration_ms"] < 60_000
    assert access["model"] == "ae-6" and access["model_version"] == answer.headers["x-model-version"]
    assert access["client"] == "127.0.0.1"
    assert access["trace_id"] == ""  # tracing is off
    assert access["timestamp"].startswith(time.strftime("%Y-%m-%d", time.gmtime()))
    assert access["message"].startswith("POST /v1/models/ae-6/encode 200 ")


def test_a_hostile_path_stays_inside_its_own_line_as_escaped_text(server: ServerProcess, client: httpx.Client) -> None:
    answer = client.get(FORGED_PATH, headers={"x-request-id": "json-forged"})
    assert answer.status_code in (404, 405)
    logged = records(server, "json-forged")
    assert not [r for r in logged if r.get("level") == "ERROR"]  # nothing was forged
    (access,) = [r for r in logged if r.get("request_id") == "json-forged"]
    # the decoded path, exactly, as a JSON string: its line break, escape and separators are \u escapes
    assert access["path"] == '/v1/models/\n\r\x1b[31m{"level":"ERROR"}\u2028\x85/encode'
    assert access["status"] == answer.status_code
