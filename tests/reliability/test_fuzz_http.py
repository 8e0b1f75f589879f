"""Fuzzing the ingest server over HTTP: hostile bodies, headers and encodings on every
ingest route get one of 2xx, 400, 401, 411, 413, 415, 429 — never a 5xx — and every line
the server stored passes an independent reading of the contract."""

from __future__ import annotations

import gzip
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relutil import hostile_batch, hostile_body, line_problems, stored_lines

from serverutil import RunningServer, start_server

SCALE = float(os.environ.get("GRAVIX_RELIABILITY_SCALE", "1"))
KEY = "fuzz-key"
ALLOWED = {200, 201, 400, 401, 411, 413, 415, 429}
ROUTES = {
    "/api/v1/facts": ("request_facts", False),
    "/api/v1/facts/batch": ("request_facts", True),
    "/api/v1/events": ("service_events", False),
    "/api/v1/events/batch": ("service_events", True),
}
STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("fuzz") / "data"
    root.mkdir()
    running = start_server(root, "--max-single-bytes", "64KiB", api_key=KEY)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop()
        running.kill()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@st.composite
def request_case(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes | None, bytes]:
    route = draw(st.sampled_from(sorted(ROUTES)))
    topic, batch = ROUTES[route]
    body = draw(hostile_batch(topic) if batch else hostile_body(topic))
    headers = {
        "Content-Type": draw(
            st.sampled_from(
                [
                    "application/json",
                    "application/json",
                    "application/x-ndjson",
                    "application/x-ndjson",
                    "application/json; charset=utf-8",
                    "text/plain",
                    "application/xml",
                    "",
                    "application/json\x7f",
                ]
            )
        ),
        "X-API-Key": draw(st.sampled_from([KEY] * 6 + ["", "wrong", KEY + "x", "../" + KEY])),
    }
    headers = {k: v for k, v in headers.items() if v and v.isprintable()}
    if draw(st.integers(0, 9)) == 0:
        body = b" " * draw(st.sampled_from([70_000, 2**20 + 1]))  # over a limit
    wire = body
    if draw(st.integers(0, 6)) == 0:
        headers["Content-Encoding"] = "gzip"
        wire = gzip.compress(body) if draw(st.booleans()) else body  # sometimes not gzip at all
    length = draw(st.sampled_from(["exact", "exact", "exact", "chunked"]))
    return route, headers, (None if length == "chunked" else wire), wire


def _send(client: httpx.Client, case: tuple[str, dict[str, str], bytes | None, bytes]) -> int:
    route, headers, content, wire = case
    if content is None:

        def chunks() -> Iterator[bytes]:
            yield wire

        response = client.post(route, headers=headers, content=chunks())
    else:
        response = client.post(route, headers=headers, content=content)
    STATUSES[response.status_code] += 1
    assert response.status_code in ALLOWED, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["code"] == response.status_code
    return response.status_code


_SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


@settings(max_examples=int(500 * SCALE), **_SETTINGS)  # type: ignore[arg-type]
@given(case=request_case())
def test_hostile_requests_never_get_a_5xx(client: httpx.Client, case) -> None:  # type: ignore[no-untyped-def]
    _send(client, case)


PER_EXAMPLE = 25


@pytest.mark.slow
@pytest.mark.timeout(7200)
# A failing example holds up to 25 large bodies; let hypothesis print it however long.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=int(100_000 * SCALE) // PER_EXAMPLE, **_SETTINGS)  # type: ignore[arg-type]
@given(cases=st.lists(request_case(), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
def test_hostile_requests_long_run(server: RunningServer, cases) -> None:  # type: ignore[no-untyped-def]
    # Many requests per example, sent concurrently: 100,000 requests in minutes, not hours.
    # Each thread has its own client: a shared httpx pool, when the server closes a
    # connection early (411/413), can hand a socket closed by one thread to another (EBADF).
    def send_all(chunk):  # type: ignore[no-untyped-def]
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for case in chunk:
                _send(client, case)

    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(send_all, [cases[i::SENDERS] for i in range(SENDERS)]))


SENDERS = 8


def test_every_stored_line_passes_the_contract(server: RunningServer) -> None:
    _check_stored(server)


@pytest.mark.slow
def test_every_stored_line_passes_the_contract_after_the_long_run(server: RunningServer) -> None:
    _check_stored(server)


def _check_stored(server: RunningServer) -> None:
    # Runs after the fuzzing above (same module, same server): stop it so that every
    # buffer is sealed into raw, then read what is on disk.
    assert server.stop() == 0
    root: Path = server.data_dir
    print(f"HTTP fuzz statuses: {dict(sorted(STATUSES.items()))}")
    checked = 0
    for topic in ("request_facts", "service_events"):
        for line in stored_lines(root, topic):
            assert line_problems(topic, line) == [], line[:200]
            checked += 1
    assert STATUSES[200] + STATUSES[201] == 0 or checked > 0
    assert sum(STATUSES.values()) > 0
