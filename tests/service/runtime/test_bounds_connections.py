"""Attacks through connections and the request log, against a real `python -m service` on 127.0.0.1, with small
limits so each takes a second or two: each reproduces a finding of the "bounded by construction" issue and
asserts the bound that now holds (status, connections closed and when, open descriptors, the log).

Findings covered: 4 (slow and idle connections never closed), 5 (header size unbounded), 7 (a client that
disconnects mid-body counted as a 500 with a traceback), 8 (log forging), 11 (API keys outside ASCII); round 2:
2 (a client that does not read its answer), 3 (one client taking every connection; probes on a full server).
"""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from service.runtime.server import PROBE_HEADROOM
from tests.support import ServerProcess, StartServer
from tests.support.attacks import HealthProbe, npy_request, raw, read_until_closed, status_of

IDLE_S, HEADER_S, BODY_S = 1.0, 1.0, 1.5
MAX_HEADER_BYTES = 8192
MAX_CONNECTIONS = 24
WRITE_S = 1.0
PER_CLIENT = 10
API_KEY = "schlüssel-ключ-🔑-1"  # outside ASCII, as a person may well choose


pytestmark = pytest.mark.server_settings(
    idle_timeout_s=IDLE_S,
    header_timeout_s=HEADER_S,
    body_timeout_s=BODY_S,
    max_header_bytes=MAX_HEADER_BYTES,
    max_connections=MAX_CONNECTIONS,
    api_keys=API_KEY,
    env={"PYTHONIOENCODING": "utf-8"},
)


AUTH_LINE = b"authorization: Bearer " + API_KEY.encode("utf-8") + b"\r\n"


def auth(key: str = API_KEY) -> dict[str, bytes]:
    return {"authorization": b"Bearer " + key.encode("utf-8")}  # the UTF-8 bytes, as curl sends them


def wait_for_log(server: ServerProcess, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log:\n{server.log()[-3000:]}")


# -- finding 4: slow and idle connections --------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(server: ServerProcess) -> None:
    """Was: open until the client left (the keep-alive timer started only after a first response)."""
    with raw(server.port) as sock:
        start = time.monotonic()
        assert read_until_closed(sock, timeout=IDLE_S + 5) == b""
        assert IDLE_S - 0.2 <= time.monotonic() - start < IDLE_S + 2


def test_headers_sent_a_byte_at_a_time_get_408_after_the_header_timeout(server: ServerProcess) -> None:
    """Slowloris: a byte of header every 0.2 s would keep the connection forever; the headers get HEADER_S."""
    with raw(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        try:
            for byte in b"x-slow: " + b"a" * 100:
                sock.sendall(bytes([byte]))
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = read_until_closed(sock)
        assert status_of(response) == 408, response
        assert HEADER_S - 0.2 <= time.monotonic() - start < HEADER_S + 2
        assert b"DIGITAE" not in response and b"not complete within 1 s" in response


def test_half_a_body_gets_408_after_the_body_timeout_and_is_logged_so(server: ServerProcess) -> None:
    with raw(server.port) as sock:
        sock.sendall(
            b"POST /v1/models/ae-6/decode HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\nx-request-id: half-a-body\r\n" + AUTH_LINE + b'\r\n{"latent": ['
        )
        start = time.monotonic()
        response = read_until_closed(sock, timeout=BODY_S + 5)
        assert status_of(response) == 408, response
        assert BODY_S - 0.2 <= time.monotonic() - start < BODY_S + 2
    log = wait_for_log(server, "request_id=half-a-body")
    line = next(line for line in log.splitlines() if "request_id=half-a-body" in line)
    assert " 408 " in line


def test_connections_past_the_cap_are_refused_and_descriptors_stay_bounded(server: ServerProcess) -> None:
    """Was: every idle connection held a descriptor until the process ran out and every client failed.
    Now at most MAX_CONNECTIONS are open (and PROBE_HEADROOM more, for health probes only); past that a connection
    gets 503 within a second; the idle ones are closed after IDLE_S and the service answers again."""
    assert server.process is not None
    process = psutil.Process(server.process.pid)
    baseline = process.num_fds()
    held = [raw(server.port) for _ in range(MAX_CONNECTIONS + 40)]
    try:
        time.sleep(0.3)
        assert process.num_fds() <= baseline + MAX_CONNECTIONS + PROBE_HEADROOM + 2
        refused = [read_until_closed(sock, timeout=2) for sock in held[-20:]]
        assert all(status_of(answer) == 503 for answer in refused), refused[:2]
        assert b"too_many_connections" in refused[0]
        time.sleep(IDLE_S + 1)  # the held ones are idle: closed by the server
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        assert all(read_until_closed(sock, timeout=2) == b"" for sock in held[: MAX_CONNECTIONS - 2])
    finally:
        for sock in held:
            sock.close()


# -- finding 5: header size -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("complete", [True, False], ids=["complete headers", "headers still coming"])
def test_headers_over_the_cap_get_431(server: ServerProcess, complete: bool) -> None:
    with raw(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nx-big: " + b"a" * 2 * MAX_HEADER_BYTES + (b"\r\n\r\n" * complete))
        response = read_until_closed(sock)
    assert status_of(response) == 431, response
    assert b"DIGITAE_MAX_HEADER_BYTES" in response


def test_a_huge_header_is_cut_off_early_and_others_are_unaffected(server: ServerProcess) -> None:
    """Was: a 300 MB header read whole, with quadratic buffering (100 MB: 7.5 s of CPU, /healthz 1.5 s)."""
    sent = 0
    chunk = b"a" * 65536
    with HealthProbe(server.url) as probe, raw(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nx-huge: ")
        start = time.monotonic()
        try:
            while sent < 100 * 2**20:
                sock.sendall(chunk)
                sent += len(chunk)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        elapsed = time.monotonic() - start
    assert sent < 20 * 2**20, f"the server took {sent:,} bytes of header"
    assert elapsed < 5
    assert probe.worst < 1.5, probe.latencies


# -- finding 7: a client that disconnects mid-body ---------------------------------------------------------------------


def test_a_client_gone_mid_body_is_a_499_not_a_500(server: ServerProcess) -> None:
    """Was: an 'unhandled error' with a 55-line traceback, counted as a 500 (anyone could raise the 5xx rate)."""
    with raw(server.port) as sock:
        sock.sendall(
            b"POST /v1/models/ae-6/encode HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100000\r\nx-request-id: gone-mid-body\r\n" + AUTH_LINE + b'\r\n{"image": "' + b"A" * 1000
        )
        time.sleep(0.2)
    log = wait_for_log(server, "request_id=gone-mid-body")
    line = next(line for line in log.splitlines() if "request_id=gone-mid-body" in line)
    assert " 499 " in line and line.split(" ")[2] == "INFO"
    assert "Traceback" not in log and "unhandled" not in log
    metrics = httpx.get(f"{server.url}/metrics").text
    encode = [line for line in metrics.splitlines() if "digitae_http_requests_total" in line and "/encode" in line]
    assert any('status="499"' in line for line in encode), encode
    assert not any('status="500"' in line for line in encode), encode


# -- finding 8: log forging -------------------------------------------------------------------------------------------


def test_control_characters_in_a_path_cannot_forge_log_lines(server: ServerProcess) -> None:
    """Was: `%0A` in the path wrote a second, real-looking log line; terminal escapes landed raw."""
    forged = "INFO digitae.access: GET /admin 200 0.1ms request_id=forged"
    path = "/nowhere%0A" + forged.replace(" ", "%20") + "%1B[31m%E2%80%AE"
    with raw(server.port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-request-id: forging\r\n\r\n".encode())
        assert status_of(read_until_closed(sock)) == 404
    log = wait_for_log(server, "request_id=forging")
    assert "\x1b" not in log and "\u202e" not in log
    line = next(line for line in log.splitlines() if "request_id=forging" in line)
    assert "/nowhere\\x0aINFO digitae.access: GET /admin" in line and "\\x1b[31m\\u202e" in line
    assert not any(line.startswith("INFO digitae.access") for line in log.splitlines())


# -- finding 11: API keys outside ASCII -------------------------------------------------------------------------------


def test_an_api_key_outside_ascii_matches_when_sent_as_utf8(server: ServerProcess) -> None:
    """Was: 401, the key compared against the header decoded as Latin-1."""
    assert httpx.get(f"{server.url}/v1/models", headers=auth()).status_code == 200
    assert httpx.get(f"{server.url}/v1/models", headers=auth(API_KEY[:-1] + "2")).status_code == 401
    assert httpx.get(f"{server.url}/v1/models").status_code == 401


# -- round 2, finding 2: a client that does not read its answer ------------------------------------------------------


def test_a_client_that_reads_nothing_is_cut_off_and_frees_its_bulk_slot(
    start_server: StartServer, served_models: Path
) -> None:
    """Round 2, finding 2. Was: two clients that never read a bulk answer held both bulk slots until they closed,
    and every other bulk request got 503 `not_ready`. Now the answer's writer waits WRITE_S for the client to
    read, then drops the connection and its slot; meanwhile a bulk request gets 503 `busy` with Retry-After."""
    server = start_server(served_models, write_timeout_s=WRITE_S, max_concurrent_bulk=1)
    reconstruct = "/v1/models/ae-6/reconstruct/batch"
    one_row = {"content-type": "application/x-npy", "accept": "application/x-npy"}
    body = io.BytesIO()
    np.save(body, np.zeros((1, 28, 28), np.uint8))
    with raw(server.port, receive_buffer=4096) as stalled:
        stalled.sendall(npy_request(reconstruct, 4000))  # a 12.5 MB answer, far over the socket buffers
        time.sleep(0.5)
        busy = httpx.post(f"{server.url}{reconstruct}", content=body.getvalue(), headers=one_row, timeout=10)
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "busy"
        assert busy.headers["retry-after"] == "1"
        start = time.monotonic()
        while True:  # retried as Retry-After says, until the stalled client's slot is freed
            answer = httpx.post(f"{server.url}{reconstruct}", content=body.getvalue(), headers=one_row, timeout=10)
            if answer.status_code != 503 or time.monotonic() - start > WRITE_S + 10:
                break
            time.sleep(0.2)
        waited = time.monotonic() - start
        assert answer.status_code == 200, f"still {answer.status_code} after {waited:.1f} s: {answer.text}"
        print(f"bulk slot freed {waited:.1f} s after the stalled client stopped reading (write timeout {WRITE_S} s)")
        assert np.load(io.BytesIO(answer.content)).shape == (1, 28, 28)
    assert "write timeout" in wait_for_log(server, "write timeout")


# -- round 2, finding 3: one client cannot take every connection; probes are answered past the cap ------------------


def test_one_client_cannot_take_every_connection_and_probes_pass_a_full_server(
    start_server: StartServer, served_models: Path
) -> None:
    """Round 2, finding 3. Was: 1,000 idle connections from one client filled the server, and /healthz answered 503
    (a liveness probe would restart a healthy pod). Now one address holds at most PER_CLIENT connections, and past
    the cap /healthz and /readyz are still answered while any other request gets 503."""
    server = start_server(served_models, max_connections=4 * PER_CLIENT, max_connections_per_client=PER_CLIENT)
    held: list[socket.socket] = []
    try:
        flood = [raw(server.port, source="127.0.0.2") for _ in range(3 * PER_CLIENT)]
        held += flood
        refused = [read_until_closed(sock, timeout=3) for sock in flood[PER_CLIENT:]]
        assert all(status_of(answer) == 503 for answer in refused), refused[:2]
        assert b"DIGITAE_MAX_CONNECTIONS_PER_CLIENT" in refused[0]
        other = httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=5)
        with other:
            assert other.get("/v1/models").status_code == 200  # another client is served
        for source in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):  # three more clients fill the server
            held += [raw(server.port, source=source) for _ in range(PER_CLIENT)]
        time.sleep(0.2)
        probe = httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=5)
        with probe:
            for path in ("/healthz", "/readyz"):
                answer = probe.get(path)
                assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text}"
            refused_request = probe.get("/v1/models")
        assert refused_request.status_code == 503
        assert refused_request.json()["error"]["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
