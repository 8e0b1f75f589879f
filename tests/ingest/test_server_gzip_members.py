"""A gzip body is decoded whole (DESIGN §4): every member of a multi-member body, a 400 for
bytes after the last member that are not one, and the limit on the whole decoded size."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest

from serverutil import RunningServer, fact, ndjson, running_server

BATCH_LIMIT = 64 * 1024
GZIP_NDJSON = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("gzip") / "data"
    with running_server(root, "--max-batch-bytes", str(BATCH_LIMIT)) as srv:
        yield srv


def test_every_member_of_a_multi_member_gzip_body_is_stored(server: RunningServer) -> None:
    first, second = fact(), fact()
    body = gzip.compress(ndjson([first])) + gzip.compress(ndjson([second]))
    with server.client() as client:
        response = client.post("/api/v1/facts/batch", content=body, headers=GZIP_NDJSON)
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 2, "rejected": 0, "errors": []}
        single = gzip.compress(b'{"event_id": "') + gzip.compress(
            ndjson([fact()])[len('{"event_id": "') :]
        )
        response = client.post(
            "/api/v1/facts",
            content=single,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "trailer", [b"x", b"\x00" * 8, b"\x1f\x8bgarbage", gzip.compress(b"{}\n")[:12]]
)
def test_bytes_after_the_last_gzip_member_are_a_400(server: RunningServer, trailer: bytes) -> None:
    body = gzip.compress(ndjson([fact()])) + trailer
    with server.client() as client:
        response = client.post("/api/v1/facts/batch", content=body, headers=GZIP_NDJSON)
    assert response.status_code == 400, response.text
    assert "gzip" in response.json()["error"]


def test_the_decoded_size_limit_applies_to_all_members_together(server: RunningServer) -> None:
    half = ndjson([fact() for _ in range(200)])
    while len(half) < BATCH_LIMIT * 0.6:
        half += ndjson([fact()])
    assert len(half) < BATCH_LIMIT
    with server.client() as client:
        one = client.post("/api/v1/facts/batch", content=gzip.compress(half), headers=GZIP_NDJSON)
        assert one.status_code == 200, one.text
        body = gzip.compress(half) + gzip.compress(half)
        both = client.post("/api/v1/facts/batch", content=body, headers=GZIP_NDJSON)
    assert both.status_code == 413, both.text
