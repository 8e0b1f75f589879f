"""Slow clients: 200 idle or slow connections do not stop legitimate clients, slow headers
are cut off by a timeout, and the server's memory grows by less than 50 MB."""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psutil
from relutil import valid_fact

from serverutil import RunningServer, running_server

SCALE = float(os.environ.get("GRAVIX_RELIABILITY_SCALE", "1"))
KEY = "test-key"
SLOW = 200
MB = 2**20


def _rss(server: RunningServer) -> int:
    proc = psutil.Process(server.proc.pid)
    return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(True))


def _latencies(server: RunningServer, count: int, offset: int) -> list[float]:
    out = []
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=30) as client:
        for n in range(count):
            started = time.perf_counter()
            response = client.post("/api/v1/facts", json=valid_fact(offset + n))
            out.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
    return out


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@contextmanager
def slow_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """Half idle (connected, silent), half sending their headers one byte a second."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            sock.sendall(b"POST /api/v1/facts HTTP/1.1\r\nHost: x\r\nX-API-Key: ")
        socks.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in socks[1::2]:
                with suppress(OSError):
                    sock.sendall(b"k")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join()
        for sock in socks:
            sock.close()


def _is_closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1024) is not None  # b"" (closed) or an error response
    except TimeoutError:
        return False
    except OSError:
        return True


def test_two_hundred_slow_connections_do_not_stop_legitimate_clients(data_root: Path) -> None:
    requests = int(300 * SCALE)
    with running_server(data_root, api_key=KEY) as server:
        _latencies(server, 50, 0)  # warm-up
        baseline = _latencies(server, requests, 1000)
        rss_before = _rss(server)
        with slow_connections(server.port, SLOW) as socks:
            time.sleep(1.0)
            loaded = _latencies(server, requests, 5000)
            rss_after = _rss(server)
            alive = sum(not _is_closed_by_peer(s) for s in socks)
        assert server.proc.poll() is None
    ratio = _p99(loaded) / _p99(baseline)
    growth = (rss_after - rss_before) / MB
    print(
        f"slow clients: {SLOW} slow connections ({alive} still open); legitimate p99 "
        f"{_p99(baseline) * 1000:.1f} ms -> {_p99(loaded) * 1000:.1f} ms (x{ratio:.2f}); "
        f"server memory +{growth:.1f} MB"
    )
    assert growth < 50


def test_slow_headers_are_cut_off_by_a_timeout(data_root: Path) -> None:
    from gravix.ingest.process import HEADER_TIMEOUT_SECONDS

    with (
        running_server(data_root, api_key=KEY) as server,
        slow_connections(server.port, 2) as socks,
    ):
        opened = time.monotonic()
        deadline = opened + HEADER_TIMEOUT_SECONDS + 20
        while time.monotonic() < deadline and not all(_is_closed_by_peer(s) for s in socks):
            time.sleep(0.5)
        assert _is_closed_by_peer(socks[0]), "a silent connection stayed open"
        assert _is_closed_by_peer(socks[1]), "a connection trickling its headers stayed open"
        # cut by the header timeout, not at once
        assert time.monotonic() - opened >= HEADER_TIMEOUT_SECONDS - 1
