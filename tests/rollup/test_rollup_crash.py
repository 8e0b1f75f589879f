"""Rollup under SIGKILL and concurrent runs: readers never see an hour missing or doubled,
the end state equals a clean run's, and one rollup runs at a time."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from gravix import schema
from gravix.errors import LockHeld
from gravix.rollup import LOCK_NAME, run_rollup
from gravix.storage import durable, layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, DAY2, Facts, event_line, generate

HOURS = [Hour(DAY1, 22), Hour(DAY1, 23), Hour(DAY2, 0), Hour(DAY2, 1)]

READER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import duckdb
    root, out, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    metrics = f"{root}/warehouse/request_metrics_minute/**/*.parquet"
    daily = f"{root}/warehouse/service_events_daily/**/*.parquet"
    with out.open("w") as log:
        # A scan that opens a file twice can straddle the rename that replaces it and fail
        # loudly (DuckDB: "Invalid data"); a reader retries. What the test forbids is a
        # successful read that shows an hour missing or doubled, and a read that keeps failing.
        failures = 0
        while not stop.exists():
            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            try:
                hours = con.execute(
                    "SELECT strftime(date_trunc('hour', bucket_start), '%Y-%m-%dT%H'), "
                    "sum(request_count) "
                    f"FROM read_parquet('{metrics}', hive_partitioning = true) GROUP BY 1"
                ).fetchall()
                days = con.execute(
                    "SELECT CAST(event_day AS VARCHAR), sum(event_count) "
                    f"FROM read_parquet('{daily}', hive_partitioning = true) GROUP BY 1"
                ).fetchall()
                log.write(json.dumps({"hours": dict(hours), "days": dict(days)}) + "\\n")
                failures = 0
            except Exception as exc:
                failures += 1
                kind = "error" if failures >= 3 else "retried"
                log.write(json.dumps({kind: repr(exc)}) + "\\n")
            log.flush()
            con.close()
""")


def _raw_facts(root: Path, rng: random.Random, prefix: str, per_hour: int) -> None:
    generate(rng, HOURS, per_hour, prefix=prefix).write(root)
    events = Facts()
    for hour in HOURS:
        for _ in range(10):
            moment = hour.start + timedelta(seconds=rng.randrange(3600))
            events.add(hour, f"{prefix}-e", event_line(rng, moment, "deploy_started"))
    events.write(root, schema.SERVICE_EVENTS)


def _totals(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    metrics = layout.warehouse_glob(root, schema.REQUEST_METRICS_MINUTE)
    daily = layout.warehouse_glob(root, schema.SERVICE_EVENTS_DAILY)
    hours = con.execute(
        "SELECT strftime(date_trunc('hour', bucket_start), '%Y-%m-%dT%H'), sum(request_count) "
        f"FROM read_parquet('{metrics}', hive_partitioning = true) GROUP BY 1"
    ).fetchall()
    days = con.execute(
        "SELECT CAST(event_day AS VARCHAR), sum(event_count) "
        f"FROM read_parquet('{daily}', hive_partitioning = true) GROUP BY 1"
    ).fetchall()
    return dict(hours), dict(days)


def _table_rows(root: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    con = duckdb.connect()
    metrics = layout.warehouse_glob(root, schema.REQUEST_METRICS_MINUTE)
    daily = layout.warehouse_glob(root, schema.SERVICE_EVENTS_DAILY)
    return (
        con.execute(
            f"SELECT * FROM read_parquet('{metrics}', hive_partitioning = true) ORDER BY ALL"
        ).fetchall(),
        con.execute(
            f"SELECT * FROM read_parquet('{daily}', hive_partitioning = true) ORDER BY ALL"
        ).fetchall(),
    )


def _rollup_cmd(root: Path, window: bool) -> list[str]:
    cmd = [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(root), "--json"]
    if window:
        cmd += ["--start-time", "2026-02-16T22:00:00Z", "--end-time", "2026-02-17T02:00:00Z"]
    return cmd


# A full window run makes about 70 durable operations over these four hours.
FULL_RUN_OPERATIONS = 69


@pytest.mark.parametrize(
    "kills",
    [20, pytest.param(80, marks=pytest.mark.slow)],
)
def test_sigkill_at_random_points_never_shows_an_hour_missing_or_doubled(
    tmp_path: Path, kills: int
) -> None:
    rng = random.Random(2026 + kills)
    root = tmp_path / "data"
    clean = tmp_path / "clean"
    root.mkdir()
    _raw_facts(root, rng, "a", 200)
    run_rollup(root=root)
    old_hours, old_days = _totals(root)
    _raw_facts(root, rng, "b", 200)  # late facts for every hour and day
    shutil.copytree(layout.raw_root(root), layout.raw_root(clean))
    run_rollup(root=clean)
    new_hours, new_days = _totals(clean)
    assert set(old_hours) == set(new_hours) and len(new_hours) == len(HOURS)
    assert all(new_hours[h] > old_hours[h] for h in new_hours)
    assert all(new_days[d] > old_days[d] for d in new_days)

    observed = tmp_path / "reader.jsonl"
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(root), str(observed), str(stop)])
    killed = 0
    try:
        for attempt in range(kills * 3):
            if killed >= kills:
                break
            env = dict(os.environ)
            timed = attempt % 4 == 3
            if not timed:  # die exactly at the k-th durable operation
                plan = [{"op": "*", "skip": rng.randrange(FULL_RUN_OPERATIONS), "action": "kill"}]
                env["GRAVIX_FAULT_PLAN"] = json.dumps(plan)
            proc = subprocess.Popen(
                _rollup_cmd(root, window=attempt % 5 != 4),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if timed:
                time.sleep(rng.uniform(0.3, 2.0))
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=120)
            if proc.returncode == -signal.SIGKILL:
                killed += 1
            else:
                assert proc.returncode == 0, err.decode()
    finally:
        stop.touch()
        reader.wait(timeout=60)
    assert killed >= kills

    final = run_rollup(root=root)
    assert final.bad_lines == 0
    assert _table_rows(root) == _table_rows(clean)
    leftovers = [p for p in layout.warehouse_root(root).rglob("*") if layout.is_tmp(p)]
    assert leftovers == []

    polls = [json.loads(line) for line in observed.read_text().splitlines()]
    assert len(polls) >= 10, "the reader did not get to poll"
    errors = [p["error"] for p in polls if "error" in p]
    assert errors == []
    reads = [p for p in polls if "hours" in p]
    assert len(reads) >= 10, "too few successful reads"
    for poll in reads:
        assert set(poll["hours"]) == set(new_hours), poll
        for hour, total in poll["hours"].items():
            assert total in (old_hours[hour], new_hours[hour]), (hour, total)
        assert set(poll["days"]) == set(new_days), poll
        for day, total in poll["days"].items():
            assert total in (old_days[day], new_days[day]), (day, total)


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from gravix.storage import durable, layout
    lock = durable.FileLock(layout.lock_path(Path(sys.argv[1]), "rollup"), "test holder")
    lock.acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def test_second_rollup_exits_1_naming_the_holder_and_a_dead_holders_lock_is_taken_over(
    data_root: Path,
) -> None:
    generate(random.Random(1), HOURS[:1], 50).write(data_root)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_root)], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with pytest.raises(LockHeld) as caught:
            run_rollup(root=data_root)
        assert f"pid {holder.pid}" in caught.value.holder
        second = subprocess.run(
            _rollup_cmd(data_root, window=False), capture_output=True, timeout=120
        )
        assert second.returncode == 1
        assert f"pid {holder.pid}" in second.stderr.decode()
        assert not layout.warehouse_root(data_root).exists()
    finally:
        holder.kill()
        holder.communicate()
    # the holder died without releasing: its lock file still names it, and the lock is free
    assert durable.describe_holder(layout.lock_path(data_root, LOCK_NAME)) != ""
    third = subprocess.run(_rollup_cmd(data_root, window=False), capture_output=True, timeout=120)
    assert third.returncode == 0, third.stderr.decode()
    assert json.loads(third.stdout)["hours_built"] == 1
