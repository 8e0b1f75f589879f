"""/metrics of a real server shows what the alert rules need beyond the process: free space
of the data root beside the floor, and the newest hour a `gravix rollup` has built."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from serverutil import RunningServer, fact, running_server

FLOOR = 3 * 2**20


def samples(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _wait_for_raw(root: Path, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines = sum(len(p.read_bytes().splitlines()) for p in (root / "raw").rglob("*.jsonl"))
        if lines >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} lines reached raw/")


def test_free_space_and_floor_are_those_of_the_data_root(data_root: Path) -> None:
    with running_server(data_root, env={"GRAVIX_MIN_FREE_BYTES": str(FLOOR)}) as server:
        got = samples(server)
    st = os.statvfs(data_root)
    assert got[("gravix_data_min_free_bytes", ())] == FLOOR
    assert got[("gravix_data_size_bytes", ())] == st.f_blocks * st.f_frsize
    # Other processes write to the same disk meanwhile: equal within 64 MiB.
    assert abs(got[("gravix_data_free_bytes", ())] - st.f_bavail * st.f_frsize) < 64 * 2**20


def test_newest_rolled_up_hour_follows_the_rollup(data_root: Path) -> None:
    now = datetime.now(UTC)
    moments = [now - timedelta(hours=3), now - timedelta(hours=1)]
    stamps = [m.strftime("%Y-%m-%dT%H:%M:%S.000Z") for m in moments]
    with running_server(data_root, "--rotate-seconds", "1") as server:
        before = samples(server)
        with server.client() as client:
            for stamp in stamps:
                assert client.post("/api/v1/facts", json=fact(event_time=stamp)).status_code == 201
        _wait_for_raw(data_root, len(stamps))
        subprocess.run(
            [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(data_root), "--json"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        after = samples(server)
    gauge = "gravix_rollup_newest_hour_timestamp_seconds"
    assert not [key for key in before if key[0] == gauge]  # nothing rolled up yet
    newest = moments[-1].replace(minute=0, second=0, microsecond=0)
    assert after[(gauge, (("table", "request_metrics_minute"),))] == newest.timestamp()
