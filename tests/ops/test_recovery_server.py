"""`gravix recover` beside a real, live ingest server, and after the server is killed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from serverutil import fact, ndjson, raw_lines, running_server, server_env


def recover(root: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "gravix", "recover", "--data-dir", str(root), "--json"],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, object] = json.loads(done.stdout)
    return document


def post(client: object, count: int) -> list[str]:
    docs = [fact(status_code=200 + i % 3 * 100) for i in range(count)]
    response = client.post(  # type: ignore[attr-defined]
        "/api/v1/facts/batch",
        content=ndjson(docs),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == count
    return [str(d["event_id"]) for d in docs]


def test_a_live_servers_buffer_is_left_alone_and_a_killed_ones_is_recovered_exactly_once(
    data_root: Path,
) -> None:
    acked: list[str] = []
    with running_server(data_root, "--rotate-seconds", "3600") as server, server.client() as c:
        acked += post(c, 120)
        active = sorted((data_root / "buffer" / "request_facts").glob("active-*.jsonl"))
        assert active
        before = {p: p.read_bytes() for p in active}

        report = recover(data_root)

        buffers = report["buffers"]
        assert isinstance(buffers, dict)
        assert buffers["files"] == 0
        assert {Path(p) for p in buffers["skipped_live"]} >= set(active)
        assert {p: p.read_bytes() for p in active} == before
        # the server goes on accepting into the same file
        acked += post(c, 80)
        assert c.get("/ready").status_code == 200
        server.kill()

    report = recover(data_root)

    buffers = report["buffers"]
    assert isinstance(buffers, dict)
    assert buffers["lines"] == 200 and buffers["torn_tail_lines"] == 0
    stored = [str(line["event_id"]) for line in raw_lines(data_root, "request_facts")]
    assert Counter(stored) == Counter(acked)  # every acknowledged fact, once
    assert not list((data_root / "buffer" / "request_facts").glob("*.jsonl"))
