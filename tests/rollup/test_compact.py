"""Compaction of closed days (``gravix cleanup``): one file per day, DESIGN §7 kept.

DuckDB over the raw facts is the reference for every number; readers run beside a
compaction and are checked answer by answer."""

from __future__ import annotations

import random
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from test_rollup import assert_matches_duckdb, connect, raw_facts

from gravix import schema
from gravix.ops import recovery, retention
from gravix.query import run_sql, service_health
from gravix.rollup import compact, run_rollup
from gravix.storage import durable, layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, DAY2, generate

TABLE = schema.REQUEST_METRICS_MINUTE
HOURS_TABLE = schema.REQUEST_METRICS_HOUR
TODAY = DAY2 + timedelta(days=1)
HOURLY_SQL = (
    "SELECT date_trunc('hour', bucket_start) AS hour, sum(request_count) AS n "
    "FROM request_metrics_minute GROUP BY 1 ORDER BY 1"
)


def build(root: Path, days: list[date], per_hour: int, seed: int = 3) -> None:
    hours = [Hour(day, h) for day in days for h in range(24)]
    generate(random.Random(seed), hours, per_hour).write(root)
    run_rollup(root=root)


def cleanup(root: Path) -> retention.CleanupReport:
    return retention.run_cleanup(root=root, days=30, warehouse_days=30, today=TODAY)


def day_files(root: Path, day: date, table: str = TABLE) -> list[str]:
    return sorted(p.name for p in layout.warehouse_day_dir(root, table, day).iterdir())


def raw_hourly(root: Path) -> list[tuple[object, int]]:
    """Distinct facts per hour, as DuckDB counts them from the raw files."""
    con = connect()
    raw_facts(con, root)
    rows = con.execute(
        "SELECT date_trunc('hour', event_time) AS hour, count(*) FROM facts GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [(hour.replace(tzinfo=None), int(n)) for hour, n in rows]


def gravix_hourly(root: Path) -> list[tuple[object, int]]:
    frame = run_sql(root, HOURLY_SQL)
    return [(hour.replace(tzinfo=None), int(n)) for hour, n in frame.iter_rows()]


def test_compacted_days_answer_as_duckdb_does_over_the_raw_facts(data_root: Path) -> None:
    build(data_root, [DAY1, DAY2], per_hour=60)
    expected = raw_hourly(data_root)
    report = cleanup(data_root)
    assert [(d.table, d.day, d.hour_files) for d in report.compacted.days] == [
        (TABLE, DAY1, 24),
        (TABLE, DAY2, 24),
        (HOURS_TABLE, DAY1, 24),
        (HOURS_TABLE, DAY2, 24),
    ]
    assert day_files(data_root, DAY1) == day_files(data_root, DAY2) == [layout.DAY_FILE]
    assert day_files(data_root, DAY1, HOURS_TABLE) == [layout.DAY_FILE]
    assert_matches_duckdb(data_root)  # every minute row, as DuckDB aggregates the raw facts
    assert_matches_duckdb(data_root, HOURS_TABLE)  # and every hour row
    assert gravix_hourly(data_root) == expected
    # a preset over the compacted days: every hour's requests as DuckDB counts them
    health = service_health(
        root=data_root,
        since=Hour(DAY1, 0).start,
        until=Hour(TODAY, 0).start,
        step_minutes=60,
    ).frame
    assert [(t.replace(tzinfo=None), n) for t, n in health.select("bucket_start", "requests")
            .iter_rows()] == expected  # fmt: skip
    # rows sorted by service then minute, in row groups a filter on service can skip
    day = pq.ParquetFile(layout.warehouse_day_file(data_root, TABLE, DAY1))
    frame = pl.read_parquet(layout.warehouse_day_file(data_root, TABLE, DAY1))
    assert frame.equals(frame.sort(compact.SORT_KEYS))
    assert day.metadata.num_row_groups == -(-frame.height // compact.ROW_GROUP_ROWS)
    hours = layout.warehouse_day_file(data_root, HOURS_TABLE, DAY1)
    rows = pl.read_parquet(hours)
    assert rows.equals(rows.sort(compact.SORT_KEYS))
    groups = -(-rows.height // compact.HOUR_TABLE_ROW_GROUP_ROWS)
    assert pq.ParquetFile(hours).metadata.num_row_groups == groups > 1
    # the next cleanup has nothing to join, and the swapped-out hour files are gone
    assert cleanup(data_root).compacted.days == []
    assert layout.compact_staging_days(data_root) == []


def test_a_late_fact_into_a_compacted_day_rebuilds_exactly_its_hour(data_root: Path) -> None:
    build(data_root, [DAY1], per_hour=40)
    cleanup(data_root)
    day_file = layout.warehouse_day_file(data_root, TABLE, DAY1)
    before = pl.read_parquet(day_file)
    late = Hour(DAY1, 13)
    generate(random.Random(99), [late], 25, duplicate_rate=0.0, prefix="late").write(data_root)

    summary = run_rollup(root=data_root)

    assert [(h.hour, h.reason) for h in summary.hours] == [(late, "changed")]
    assert day_files(data_root, DAY1) == [layout.DAY_FILE]  # still one file
    assert day_files(data_root, DAY1, HOURS_TABLE) == [layout.DAY_FILE]
    assert_matches_duckdb(data_root)  # the late facts are counted, nothing twice
    assert_matches_duckdb(data_root, HOURS_TABLE)  # in the hour table too
    after = pl.read_parquet(day_file)
    outside = pl.col("bucket_start").dt.hour() != 13
    assert after.filter(outside).equals(before.filter(outside))  # other hours untouched
    assert (
        after.filter(~outside)["request_count"].sum()
        > before.filter(~outside)["request_count"].sum()
    )
    assert run_rollup(root=data_root).nothing_to_do  # planning by raw file set still works


def test_a_reader_during_compaction_never_sees_an_hour_missing_or_twice(data_root: Path) -> None:
    days = [DAY1 - timedelta(days=n) for n in range(5, -1, -1)]
    build(data_root, days, per_hour=6)
    expected = raw_hourly(data_root)
    glob = layout.warehouse_glob(data_root, TABLE)
    wrong: list[str] = []
    answers = {"gravix": 0, "duckdb": 0, "duckdb_failed": 0}
    stop = threading.Event()

    def gravix_reader() -> None:
        while not stop.is_set():
            got = gravix_hourly(data_root)
            answers["gravix"] += 1
            if got != expected:
                wrong.append(f"gravix: {len(got)} hours, {sum(n for _, n in got)} requests")

    def duckdb_reader() -> None:  # a reader that globs the table as it is, with no retry
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        sql = HOURLY_SQL.replace("request_metrics_minute", f"read_parquet('{glob}')")
        while not stop.is_set():
            try:
                rows = con.execute(sql).fetchall()
            except duckdb.Error:
                answers["duckdb_failed"] += 1  # a file gone between listing and opening
                continue
            answers["duckdb"] += 1
            got = [(hour.replace(tzinfo=None), int(n)) for hour, n in rows]
            if got != expected:
                wrong.append(f"duckdb: {len(got)} hours, {sum(n for _, n in got)} requests")

    # Every durable step of the compaction waits a little, so the readers meet each of them.
    previous = durable.set_hook(lambda op, path: time.sleep(0.02))
    readers = [threading.Thread(target=f) for f in (gravix_reader, duckdb_reader)]
    try:
        for reader in readers:
            reader.start()
        time.sleep(0.2)
        report = cleanup(data_root)
        time.sleep(0.2)
    finally:
        stop.set()
        durable.set_hook(previous)
        for reader in readers:
            reader.join(timeout=30)
    assert len(report.compacted.days) == len(days) * len(compact.COMPACTED_TABLES)
    assert all(day_files(data_root, day) == [layout.DAY_FILE] for day in days)
    assert wrong == []
    assert answers["gravix"] >= 10 and answers["duckdb"] >= 10, answers
    assert gravix_hourly(data_root) == expected


def test_days_stay_as_hour_files_where_directories_cannot_be_swapped(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(data_root, [DAY1], per_hour=20)
    monkeypatch.setattr(durable, "exchange", lambda a, b: False)

    report = cleanup(data_root)

    assert report.compacted.days == []
    assert [where for where, _ in report.compacted.skipped] == [
        str(layout.warehouse_day_dir(data_root, table, DAY1)) for table in (TABLE, HOURS_TABLE)
    ]
    assert "swap" in report.compacted.skipped[0][1]
    assert len(day_files(data_root, DAY1)) == 24
    assert layout.compact_staging_days(data_root) == []
    assert_matches_duckdb(data_root)


def test_hour_files_beside_a_day_file_are_not_read_twice(data_root: Path) -> None:
    build(data_root, [DAY1], per_hour=20)
    expected = raw_hourly(data_root)
    stray = layout.warehouse_hour_file(data_root, TABLE, Hour(DAY1, 5)).read_bytes()
    cleanup(data_root)
    layout.warehouse_hour_file(data_root, TABLE, Hour(DAY1, 5)).write_bytes(stray)

    assert gravix_hourly(data_root) == expected
    cleanup(data_root)  # and the next compaction removes the leftover
    assert day_files(data_root, DAY1) == [layout.DAY_FILE]
    assert gravix_hourly(data_root) == expected


def test_a_damaged_day_file_is_quarantined_and_its_hours_rebuilt_from_raw(
    data_root: Path,
) -> None:
    build(data_root, [DAY1], per_hour=20)
    expected = raw_hourly(data_root)
    cleanup(data_root)
    day_file = layout.warehouse_day_file(data_root, TABLE, DAY1)
    damaged = day_file.read_bytes()
    day_file.write_bytes(damaged[: len(damaged) // 2])

    report = recovery.run_recover(root=data_root)

    assert [p.path for p in report.parquet_problems] == [day_file]
    assert report.rebuild_hours == {TABLE: [Hour(DAY1, h) for h in range(24)]}
    assert len(day_files(data_root, DAY1)) == 24  # rebuilt as hours, until the next cleanup
    assert gravix_hourly(data_root) == expected
    cleanup(data_root)
    assert day_files(data_root, DAY1) == [layout.DAY_FILE]
    assert_matches_duckdb(data_root)
