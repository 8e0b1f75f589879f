"""One live `gravix ingest-server` for the deploy tests, having done what a node does:
accepted and rejected events, rotated into raw, failed one buffer write, and served
/metrics after a `gravix rollup` of its data root."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from watch_support import Exported, parse_exposition

from serverutil import RunningServer, fact, ndjson, running_server, service_event


def _wait_for_raw(root: Path, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = sum(len(p.read_bytes().splitlines()) for p in (root / "raw").rglob("*.jsonl"))
        if lines >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} lines reached raw/")


@pytest.fixture(scope="session")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("live-node") / "data"
    root.mkdir()
    # The fourth append to an active buffer file fails (a full disk for a moment).
    plan = [{"op": "write", "path": "active-", "skip": 3, "times": 1, "action": "enospc"}]
    env = {"GRAVIX_FAULT_PLAN": json.dumps(plan)}
    with running_server(root, "--rotate-seconds", "1", env=env) as server, server.client() as c:
        assert c.post("/api/v1/facts", json=fact()).status_code == 201
        batch = ndjson([fact(), fact(status_code=700)])
        answer = c.post(
            "/api/v1/facts/batch", content=batch, headers={"Content-Type": "application/x-ndjson"}
        )
        assert answer.json()["accepted"] == 1, answer.text
        assert c.post("/api/v1/events", json=service_event()).status_code == 201
        assert c.post("/api/v1/facts", json=fact()).status_code == 503
        _wait_for_raw(root, 3)
        subprocess.run(
            [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(root), "--json"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield server


@pytest.fixture(scope="session")
def live_metrics_text(live_node: RunningServer) -> str:
    return httpx.get(f"{live_node.url}/metrics", timeout=10).text


@pytest.fixture(scope="session")
def live(live_metrics_text: str) -> Exported:
    return parse_exposition(live_metrics_text)
