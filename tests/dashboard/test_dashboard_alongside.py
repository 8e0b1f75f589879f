"""The dashboard reads while the rest of Gravix writes: a rollup process rebuilds the same
hours over and over, an ingest server takes facts into the same data root and SQL queries
run, and every dashboard answer is complete — no error, no hour missing or counted twice."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard_support import END, START, duck, facts_sql, incident_night
from gravix.dashboard import running
from gravix.query import run_sql
from gravix.settings import load_settings
from gravix.tools.serverproc import running_server
from gravix.tools.traffic import Traffic

Z = "%Y-%m-%dT%H:%M:%SZ"
SECONDS = 8.0
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return incident_night(tmp_path / "data")


def hourly_reference(root: Path) -> dict[str, int]:
    rows = (
        duck()
        .execute(
            f"SELECT strftime(date_trunc('hour', event_time), '{Z}'), count(*) "
            f"FROM {facts_sql(root)} GROUP BY 1"
        )
        .fetchall()
    )
    return dict(rows)


def rollup_loop(root: Path, stop: threading.Event, results: list[int]) -> None:
    """`gravix rollup` over the whole window, again and again, in its own process."""
    while not stop.is_set():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "gravix",
                "rollup",
                "--data-dir",
                str(root),
                "--start-time",
                START.strftime(Z),
                "--end-time",
                END.strftime(Z),
                "--json",
            ],
            capture_output=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC)},
        )
        results.append(done.returncode)


def query_loop(root: Path, stop: threading.Event, totals: list[Any]) -> None:
    while not stop.is_set():
        frame = run_sql(root, "SELECT sum(request_count) AS n FROM request_metrics_minute")
        totals.append(frame["n"][0])
        time.sleep(0.05)


def test_rollup_ingest_and_query_go_on_and_the_dashboard_never_sees_a_partial_hour(
    root: Path,
) -> None:
    expected = hourly_reference(root)
    total = sum(expected.values())
    stop = threading.Event()
    rollups: list[int] = []
    totals: list[Any] = []
    threads = [
        threading.Thread(target=rollup_loop, args=(root, stop, rollups)),
        threading.Thread(target=query_loop, args=(root, stop, totals)),
    ]
    settings = load_settings(data_dir=root, dashboard_port=0, environ={})
    window = {"from": START.strftime(Z), "to": END.strftime(Z)}
    answers = 0
    with (
        running_server(root, api_key="alongside-key") as ingest,
        running(settings=settings) as url,
        httpx.Client(base_url=url, timeout=60) as http,
        ingest.client() as sender,
    ):
        for thread in threads:
            thread.start()
        traffic = Traffic(["frontend", "checkout"], seed=3)
        deadline = time.monotonic() + SECONDS
        acknowledged = 0
        try:
            while time.monotonic() < deadline or len(rollups) < 2:
                series = http.get("/api/v1/series", params={**window, "step": "3600"})
                assert series.status_code == 200, series.text
                hours = {p["t"]: p["requests"] for p in series.json()["points"]}
                assert hours == expected, "an hour was missing or doubled while rebuilt"
                rows = http.get("/api/v1/endpoints", params={**window, "limit": "100"})
                assert rows.status_code == 200, rows.text
                assert sum(r["requests"] for r in rows.json()["rows"]) == total
                heat = http.get("/api/v1/heatmap", params={**window, "step": "3600"})
                assert heat.status_code == 200, heat.text
                assert sum(sum(p["counts"]) for p in heat.json()["points"]) == total
                answers += 1
                now_ms = int(datetime.now(UTC).timestamp() * 1000)
                batch = [traffic.fact(now_ms, 0.0) for _ in range(50)]
                sent = sender.post(
                    "/api/v1/facts/batch",
                    content="\n".join(json.dumps(f) for f in batch),
                    headers={"Content-Type": "application/x-ndjson"},
                )
                assert sent.status_code == 200, sent.text
                acknowledged += sent.json()["accepted"]
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
    assert answers >= 5 and acknowledged == 50 * answers
    assert len(rollups) >= 2 and set(rollups) == {0}, rollups
    assert totals and all(t == total for t in totals), "SQL saw a partial hour"
