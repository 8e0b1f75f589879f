"""Cleanup beside a real `gravix rollup`: no partition is deleted or half-deleted while the
rollup writes it, and metrics kept longer than raw survive later incremental rollups."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from gravix import rollup
from gravix.ops import retention
from publish_facts import fact_lines

TABLE = "request_metrics_minute"


def raw_days(root: Path, today: datetime, ages: range) -> None:
    for age in ages:
        for hour in (3, 15):
            start = (today - timedelta(days=age)).replace(hour=hour, minute=1)
            lines = fact_lines(40, start=start, step_s=80.0)
            hour_dir = (
                root / "raw" / "request_facts" / f"event_day={start.date()}" / f"hour={hour:02d}"
            )
            hour_dir.mkdir(parents=True, exist_ok=True)
            (hour_dir / "f.jsonl").write_bytes(b"".join(lines))


def warehouse_days(root: Path) -> dict[str, int]:
    base = root / "warehouse" / TABLE
    if not base.exists():
        return {}
    return {p.name: len(list(p.glob("*.parquet"))) for p in base.iterdir()}


def requests_by_day(root: Path) -> dict[str, int]:
    """Requests per event day as DuckDB reads the warehouse files."""
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT event_day::VARCHAR, sum(request_count) FROM read_parquet(?, "
            "hive_partitioning = true) GROUP BY ALL",
            [str(root / "warehouse" / TABLE / "**" / "*.parquet")],
        ).fetchall()
    return {day: int(n) for day, n in rows}


def test_cleanup_beside_a_running_rollup_never_deletes_what_it_writes(data_root: Path) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    raw_days(data_root, today, range(1, 41))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(data_root), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lock = data_root / "state" / "locks" / "rollup.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and b"gravix rollup" not in (
        lock.read_bytes() if lock.exists() else b""
    ):
        time.sleep(0.01)
    results: list[retention.CleanupReport] = []
    cleaner = threading.Thread(
        target=lambda: results.append(
            retention.run_cleanup(root=data_root, days=30, warehouse_days=30)
        )
    )
    cleaner.start()
    shrunk: list[str] = []
    seen: dict[str, int] = {}
    samples = 0
    while True:
        now = warehouse_days(data_root)
        # the holder's name is cleared before the lock is released: still there after the
        # snapshot means the rollup held its lock for all of it
        if b"gravix rollup" not in lock.read_bytes():
            break
        shrunk.extend(day for day, n in seen.items() if now.get(day, 0) < n)
        seen = now
        samples += 1
        time.sleep(0.005)
    _out, err = proc.communicate()
    cleaner.join(timeout=120)
    assert proc.returncode == 0, err
    assert samples > 5
    assert shrunk == []  # while the rollup ran, no partition lost a file
    assert results, "cleanup did not finish"

    cutoff = (today - timedelta(days=30)).date()
    expected = {f"event_day={(today - timedelta(days=a)).date()}" for a in range(1, 31)}
    assert set(warehouse_days(data_root)) == expected
    # every kept day is closed: cleanup joined its two hour files into one
    assert all(n == 1 for n in warehouse_days(data_root).values())
    assert {p.day for p in results[0].plan.partitions if p.area == "warehouse"} == {
        (today - timedelta(days=a)).date() for a in range(31, 41)
    }
    assert all(p.day < cutoff for p in results[0].plan.partitions)
    # every remaining file is whole: DuckDB reads all of them and counts every raw fact kept
    with duckdb.connect() as con:
        metrics = con.execute(
            "SELECT sum(request_count) FROM read_parquet(?)",
            [str(data_root / "warehouse" / TABLE / "**" / "*.parquet")],
        ).fetchone()
        facts = con.execute(
            "SELECT count(*) FROM read_json_auto(?)",
            [str(data_root / "raw" / "request_facts" / "*" / "*" / "*.jsonl")],
        ).fetchone()
    assert metrics is not None and facts is not None
    assert metrics[0] == facts[0] == 30 * 2 * 40


def test_metrics_kept_longer_than_raw_survive_the_next_incremental_rollup(
    data_root: Path,
) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    raw_days(data_root, today, range(1, 13))
    rollup.run_rollup(root=data_root)
    before = requests_by_day(data_root)
    assert len(before) == 12 and all(n == 2 * 40 for n in before.values())

    retention.run_cleanup(root=data_root, days=5, warehouse_days=10)
    rollup.run_rollup(root=data_root)

    after = requests_by_day(data_root)
    assert set(after) == {str((today - timedelta(days=a)).date()) for a in range(1, 11)}
    assert all(after[day] == before[day] for day in after)  # compacted, and no row lost
    assert all(n == 1 for n in warehouse_days(data_root).values())
    raw_left = {p.name for p in (data_root / "raw" / "request_facts").iterdir()}
    assert raw_left == {f"event_day={(today - timedelta(days=a)).date()}" for a in range(1, 6)}
