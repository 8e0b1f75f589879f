"""Fuzzing the ingest server over HTTP: hostile bodies, headers and encodings on every
ingest route get one of 2xx, 400, 401, 411, 413, 415, 429 — never a 5xx — and every line
the server stored passes an independent reading of the contract."""

from __future__ import annotations

import gzip
import os
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from relutil import (
    Choices,
    Drawn,
    Seeded,
    batch_from,
    body_from,
    line_problems,
    one_in,
    pick,
    stored_lines,
)

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
    running = start_server(
        root, "--max-single-bytes", "64KiB", "--max-batch-bytes", "1MiB", api_key=KEY
    )
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


SENDERS = 8


@pytest.fixture(scope="module")
def senders(server: RunningServer) -> Iterator[tuple[ThreadPoolExecutor, list[httpx.Client]]]:
    """Threads and keep-alive clients for the whole long run: sender i always uses client i,
    so no client is ever shared by two threads (a shared httpx pool, when the server closes a
    connection early after 411/413, can hand one thread a socket another closed: EBADF)."""
    with ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=server.url, timeout=60))
            for _ in range(SENDERS)
        ]
        yield stack.enter_context(ThreadPoolExecutor(SENDERS)), clients


@dataclass(frozen=True)
class Request:
    route: str
    headers: dict[str, str]
    body: bytes  # as sent
    chunked: bool  # sent without a Content-Length
    plain: bytes | None = None  # the body before gzip, when ``body`` is its gzip form

    def __str__(self) -> str:
        framing = "chunked" if self.chunked else "Content-Length"
        text = f"POST {self.route} {self.headers} {framing}, {len(self.body)} bytes"
        if self.plain is not None:
            text += f", gzip of {len(self.plain)}"
        return f"{text}: {(self.body if self.plain is None else self.plain)[:300]!r}"


_ROUTES = sorted(ROUTES)
# A bad Content-Type or API key in about one request of four each, so that most requests
# get past the header checks to the body.
CONTENT_TYPES = (
    *["application/json"] * 3,
    *["application/x-ndjson"] * 3,
    "application/json; charset=utf-8",
    "application/x-ndjson; charset=utf-8",
    "text/plain",
    "application/xml",
    "application/jsonx",  # a prefix is not a match
    "",  # no Content-Type header
)
API_KEYS = (*[KEY] * 12, "", "wrong", KEY + "x", "../" + KEY)  # "" = no X-API-Key header
# Over the single limit (64 KiB) and over the batch limit (1 MiB); built once, as are their
# gzip forms (small bodies that decompress to more than the limit).
OVER_LIMIT = (b" " * 70_000, b" " * (2**20 + 1))
OVER_LIMIT_GZIP = tuple(gzip.compress(body) for body in OVER_LIMIT)


def hostile_request(c: Choices) -> Request:
    """One request to a random ingest route, hostile in its headers, framing or body."""
    route = pick(c, _ROUTES)
    topic, batch = ROUTES[route]
    headers = {}
    if content_type := pick(c, CONTENT_TYPES):
        headers["Content-Type"] = content_type
    if key := pick(c, API_KEYS):
        headers["X-API-Key"] = key
    over = c.below(len(OVER_LIMIT)) if one_in(c, 25) else None
    if over is None:
        body = batch_from(c, topic) if batch else body_from(c, topic)
    else:
        body = OVER_LIMIT[over]
    plain = None
    if one_in(c, 7):
        headers["Content-Encoding"] = "gzip"
        if c.below(2):  # else: not gzip at all
            plain, body = body, gzip.compress(body) if over is None else OVER_LIMIT_GZIP[over]
    return Request(route, headers, body, chunked=one_in(c, 8), plain=plain)


@st.composite
def request_case(draw: st.DrawFn) -> Request:
    return hostile_request(Drawn(draw))


LONG_RUN = int(100_000 * SCALE)
PER_EXAMPLE = 100
LONG_RUN_SENT: Counter[int] = Counter()


def hostile_requests(seed: int) -> list[Request]:
    """The requests of one long-run example (event ids and times aside, which are new)."""
    choices = Seeded(random.Random(seed))
    return [hostile_request(choices) for _ in range(PER_EXAMPLE)]


def _send(client: httpx.Client, request: Request) -> int:
    content = iter((request.body,)) if request.chunked else request.body
    try:
        response = client.post(request.route, headers=request.headers, content=content)
    except httpx.TransportError as exc:
        raise AssertionError(f"{exc!r} for {request}") from exc
    status = response.status_code
    assert status in ALLOWED, f"{status} {response.text[:300]!r} for {request}"
    if status >= 400:
        assert _error_code(response) == status, f"{status} {response.text[:300]!r} for {request}"
    return status


def _error_code(response: httpx.Response) -> object:
    try:
        return response.json()["code"]
    except (ValueError, KeyError, TypeError):
        return None


_SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


@settings(max_examples=int(500 * SCALE), **_SETTINGS)  # type: ignore[arg-type]
@given(request=request_case())
def test_hostile_requests_never_get_a_5xx(client: httpx.Client, request: Request) -> None:
    STATUSES[_send(client, request)] += 1


@pytest.mark.slow
@pytest.mark.timeout(1800)
@settings(
    max_examples=-(-LONG_RUN // PER_EXAMPLE),
    phases=[Phase.generate],  # a smaller seed is not a simpler case
    **_SETTINGS,  # type: ignore[arg-type]
)
@given(seed=st.integers(0, 2**64 - 1))
def test_hostile_requests_long_run(
    senders: tuple[ThreadPoolExecutor, list[httpx.Client]], seed: int
) -> None:
    # Hypothesis draws only a seed; the same generators as above make the requests from it,
    # at a small fraction of the cost of a hypothesis draw per choice. A failure names its
    # request, and hostile_requests(seed) makes that example's requests again.
    note(f"the example's requests again: hostile_requests({seed})")
    pool, clients = senders
    requests = hostile_requests(seed)

    def send_all(i: int) -> Counter[int]:
        return Counter(_send(clients[i], request) for request in requests[i::SENDERS])

    for counts in pool.map(send_all, range(SENDERS)):
        LONG_RUN_SENT.update(counts)
        STATUSES.update(counts)


def test_every_stored_line_passes_the_contract(server: RunningServer) -> None:
    _check_stored(server)


@pytest.mark.slow
def test_every_stored_line_passes_the_contract_after_the_long_run(server: RunningServer) -> None:
    _check_stored(server)
    assert LONG_RUN_SENT.total() >= LONG_RUN


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
    print(f"HTTP fuzz: {checked} stored lines pass the oracle")
    assert STATUSES[200] + STATUSES[201] == 0 or checked > 0
    assert sum(STATUSES.values()) > 0
