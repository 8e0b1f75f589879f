"""Hostile clients against a real server on loopback (issue 16, items 2, 3 and 4): a request
answered before its body was read closes its connection, a body must arrive within a
deadline, request headers are limited in total size, and a bad batch costs no more than a
good one — neither in reply size nor in time during which other clients wait."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from gravix.ingest.body import BODY_TIMEOUT_SECONDS
from gravix.ingest.process import MAX_HEADER_BYTES
from gravix.schema.contract import MAX_BATCH_ERRORS
from serverutil import RunningServer, fact, ndjson, running_server

KEY = "test-key"
MB = 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("hostile") / "data"
    with running_server(root, "--max-single-bytes", "4096", api_key=KEY) as srv:
        yield srv


def _connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def _head(path: str, *lines: str, method: str = "POST") -> bytes:
    text = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{x}\r\n" for x in lines)
    return (text + "\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the response body"
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True once the server has closed the connection (EOF or reset) within ``within`` s."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


AUTH, JSON, LONG = f"X-API-Key: {KEY}", "Content-Type: application/json", "Content-Length: 500"
EARLY = [
    (401, _head("/api/v1/facts", JSON, LONG)),
    (401, _head("/api/v1/facts", "X-API-Key: wrong", JSON, LONG)),
    (411, _head("/api/v1/facts", AUTH, JSON, "Transfer-Encoding: chunked")),
    (413, _head("/api/v1/facts", AUTH, JSON, "Content-Length: 9999")),
    (415, _head("/api/v1/facts", AUTH, "Content-Type: text/plain", LONG)),
    (404, _head("/nowhere", LONG)),
    (405, _head("/live", LONG)),
    (200, _head("/live", LONG, method="GET")),
]


@pytest.mark.parametrize(("status", "request_head"), EARLY, ids=[str(s) for s, _ in EARLY])
def test_an_answer_sent_before_the_body_was_read_closes_the_connection(
    server: RunningServer, status: int, request_head: bytes
) -> None:
    with _connect(server) as sock:
        begun = b"5\r\n{" if b"chunked" in request_head else b"{"
        sock.sendall(request_head + begun)  # a body that has only begun, as a slow client's
        got, headers, _ = _read_response(sock)
        assert got == status
        assert headers.get("connection") == "close"
        assert _closed_by_server(sock, within=5.0), "the server kept the connection open"


def test_a_rate_limited_request_closes_the_connection(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--rate-limit", "0.01", api_key=KEY) as srv:
        head = _head(
            "/api/v1/facts", f"X-API-Key: {KEY}", "Content-Type: application/json",
            "Content-Length: 500",
        )  # fmt: skip
        statuses = []
        for _ in range(2):
            with _connect(srv) as sock:
                sock.sendall(head)
                got, headers, _ = _read_response(sock)
                statuses.append(got)
                if got == 429:
                    assert headers.get("connection") == "close"
                    assert _closed_by_server(sock, within=5.0)
        assert 429 in statuses


def test_a_request_answered_after_its_whole_body_keeps_the_connection(
    server: RunningServer,
) -> None:
    with server.client() as client:
        for _ in range(3):
            response = client.post("/api/v1/facts", json=fact(status_code=1))
            assert response.status_code == 400
            assert response.headers.get("connection") != "close"
        assert client.post("/api/v1/facts", json=fact()).status_code == 201


def test_a_body_that_does_not_arrive_within_the_deadline_gets_408_and_is_closed(
    server: RunningServer,
) -> None:
    body = ndjson([fact()])
    head = _head(
        "/api/v1/facts", f"X-API-Key: {KEY}", "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    )  # fmt: skip
    with _connect(server) as sock:
        sock.sendall(head + body[:5])
        started = time.monotonic()
        stop = threading.Event()

        def trickle() -> None:  # one byte a second: never idle, never done in time
            for byte in body[5:-1]:
                if stop.wait(1.0):
                    return
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    return

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            sock.settimeout(BODY_TIMEOUT_SECONDS + 20)
            status, headers, _ = _read_response(sock)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            thread.join()
        assert status == 408 and headers.get("connection") == "close"
        assert BODY_TIMEOUT_SECONDS - 1 <= elapsed <= BODY_TIMEOUT_SECONDS + 10, elapsed
        assert _closed_by_server(sock, within=5.0)


def test_request_headers_over_the_limit_get_431_and_the_connection_closed(
    server: RunningServer,
) -> None:
    for size in (MAX_HEADER_BYTES + 1024, 2 * MB):
        with _connect(server) as sock:
            request = _head("/live", f"X-Padding: {'a' * size}", method="GET")
            sender = threading.Thread(target=_send_ignoring_reset, args=(sock, request))
            sender.start()
            status, headers, _ = _read_response(sock)
            sender.join()
            assert (status, headers.get("connection")) == (431, "close"), size
    many = [f"X-H{i}: {'b' * 100}" for i in range(MAX_HEADER_BYTES // 100)]
    with _connect(server) as sock:
        sock.sendall(_head("/live", *many, method="GET"))
        assert _read_response(sock)[0] == 431
    url = "/live?" + "q" * (MAX_HEADER_BYTES + 10)
    with _connect(server) as sock:
        sock.sendall(_head(url, method="GET"))
        assert _read_response(sock)[0] == 431
    with server.client() as client:  # headers under the limit are still served
        assert client.get("/live", headers={"X-Padding": "a" * 32_000}).status_code == 200


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> int:
    """Send ``data`` until done or the server closes; returns the bytes sent."""
    sent = 0
    view = memoryview(data)
    try:
        while sent < len(data):
            sent += sock.send(view[sent : sent + 65536])
    except OSError:
        pass
    return sent


def test_a_huge_header_does_not_grow_server_memory(server: RunningServer) -> None:
    proc = psutil.Process(server.proc.pid)
    before = proc.memory_info().rss
    with _connect(server) as sock:
        sock.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        chunk = b"h" * MB
        sent = sum(_send_ignoring_reset(sock, chunk) for _ in range(58))
    growth = (proc.memory_info().rss - before) / MB
    print(f"58 MiB header: server took {sent / MB:.2f} MiB of it; memory +{growth:.1f} MB")
    assert sent < 8 * MB, "the server kept reading a header far past the limit"
    assert growth < 20
    with server.client() as client:
        assert client.get("/live").status_code == 200


def test_a_bad_batch_gets_a_small_answer_with_the_first_errors(server: RunningServer) -> None:
    body = b"1\n" * (MB // 2)  # 1 MiB, 524,288 bad events
    with server.client() as client:
        response = client.post(
            "/api/v1/facts/batch", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
    print(f"1 MiB bad batch: {response.status_code}, reply {len(response.content):,} bytes")
    assert response.status_code == 400
    assert len(response.content) < 20_000
    answer = response.json()
    assert answer["rejected"] == MB // 2 and answer["accepted"] == 0
    assert [e["index"] for e in answer["errors"]] == list(range(MAX_BATCH_ERRORS))
    assert answer["errors_truncated"] == MB // 2 - MAX_BATCH_ERRORS
    assert response.headers.get("connection") != "close"


def test_a_partly_bad_batch_stores_the_good_events_and_caps_the_errors(
    server: RunningServer,
) -> None:
    lines = [fact(status_code=1) for _ in range(150)] + [fact()]
    with server.client() as client:
        response = client.post(
            "/api/v1/facts/batch", content=ndjson(lines),
            headers={"Content-Type": "application/x-ndjson"},
        )  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"], answer["errors_truncated"]) == (1, 150, 50)
    assert len(answer["errors"]) == MAX_BATCH_ERRORS


def test_other_clients_are_answered_while_a_big_bad_batch_is_validated(
    server: RunningServer,
) -> None:
    body = b'{"a":1}\n' * (2 * MB)  # 16 MiB, 2 Mi objects that each take the slow path
    result: dict[str, object] = {}

    def send_batch() -> None:
        started = time.monotonic()
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as client:
            response = client.post(
                "/api/v1/facts/batch", content=body,
                headers={"Content-Type": "application/x-ndjson"},
            )  # fmt: skip
        result["status"] = response.status_code
        result["seconds"] = time.monotonic() - started

    sender = threading.Thread(target=send_batch)
    sender.start()
    worst = 0.0
    probes = 0
    with httpx.Client(base_url=server.url, timeout=60) as client:
        while sender.is_alive():
            started = time.monotonic()
            assert client.get("/live").status_code == 200
            worst = max(worst, time.monotonic() - started)
            probes += 1
            time.sleep(0.02)
    sender.join()
    print(
        f"16 MiB bad batch: answered {result.get('status')} in {result.get('seconds', 0):.1f} s;"
        f" {probes} /live probes meanwhile, slowest {worst * 1000:.0f} ms"
    )
    assert result["status"] == 400
    assert worst < 2.0
