"""``request_metrics_hour``: written by the minute table's hour task, checked by DuckDB
against the raw facts and against the minute table's rows summed per hour."""

from __future__ import annotations

import math
import random
import shutil
from datetime import timedelta
from pathlib import Path

from test_rollup import assert_matches_duckdb, connect, metrics_view, raw_facts

from gravix import schema
from gravix.ops import retention
from gravix.rollup import plan_hours, run_rollup
from gravix.schema import sketch
from gravix.storage import layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, DAY2, generate

MINUTES = schema.REQUEST_METRICS_MINUTE
HOURS = schema.REQUEST_METRICS_HOUR
TODAY = DAY2 + timedelta(days=1)
KEYS = "bucket_start, service, method, path_template"


def build(root: Path, hours: list[Hour], per_hour: int = 50, seed: int = 4) -> None:
    generate(random.Random(seed), hours, per_hour).write(root)
    run_rollup(root=root)


def summed_minutes(root: Path) -> list[tuple[object, ...]]:
    """DuckDB's sums of the minute table per hour: counts, extremes and the histogram
    added bucket by bucket."""
    con = connect()
    metrics_view(con, root, MINUTES)
    return con.execute(f"""
        WITH rows AS (SELECT date_trunc('hour', bucket_start) AS bucket_start, service, method,
                        path_template, request_count, error_count, client_error_count,
                        latency_min_ms, latency_max_ms, lat_zero_count, lat_idx, lat_cnt
                      FROM metrics),
        sums AS (SELECT {KEYS}, sum(request_count), sum(error_count),
                   sum(client_error_count), min(latency_min_ms), max(latency_max_ms),
                   sum(lat_zero_count)
                 FROM rows GROUP BY ALL),
        buckets AS (SELECT {KEYS}, i, sum(c)::BIGINT AS c
                    FROM (SELECT {KEYS}, unnest(lat_idx) AS i, unnest(lat_cnt) AS c FROM rows)
                    GROUP BY ALL),
        hist AS (SELECT {KEYS}, list(i ORDER BY i) AS idx, list(c ORDER BY i) AS cnt
                 FROM buckets GROUP BY ALL)
        SELECT * FROM sums LEFT JOIN hist USING ({KEYS}) ORDER BY ALL
    """).fetchall()


def hour_rows(root: Path) -> list[tuple[object, ...]]:
    con = connect()
    metrics_view(con, root, HOURS)
    return con.execute(f"""
        SELECT {KEYS}, request_count, error_count, client_error_count, latency_min_ms,
          latency_max_ms, lat_zero_count, lat_idx, lat_cnt
        FROM metrics ORDER BY ALL
    """).fetchall()


def test_hour_rows_are_the_raw_facts_per_hour_and_the_minutes_summed(data_root: Path) -> None:
    build(data_root, [Hour(DAY1, 9), Hour(DAY1, 10), Hour(DAY1, 23), Hour(DAY2, 0)])

    assert assert_matches_duckdb(data_root, HOURS) > 0  # exact percentiles from the facts
    assert assert_matches_duckdb(data_root, MINUTES) > 0
    summed = summed_minutes(data_root)
    assert summed and hour_rows(data_root) == summed
    hour_file = layout.warehouse_hour_file(data_root, HOURS, Hour(DAY1, 9))
    assert hour_file.parent.name == "event_day=2026-02-16" and hour_file.exists()


def test_a_late_fact_rebuilds_its_hour_in_both_tables(data_root: Path) -> None:
    build(data_root, [Hour(DAY1, 9), Hour(DAY1, 10)])
    untouched = layout.warehouse_hour_file(data_root, HOURS, Hour(DAY1, 9)).stat()
    late = Hour(DAY1, 10)
    generate(random.Random(77), [late], 20, duplicate_rate=0.0, prefix="late").write(data_root)

    summary = run_rollup(root=data_root)

    assert [(h.hour, h.reason) for h in summary.hours] == [(late, "changed")]
    assert_matches_duckdb(data_root, MINUTES)
    assert_matches_duckdb(data_root, HOURS)
    assert hour_rows(data_root) == summed_minutes(data_root)
    after = layout.warehouse_hour_file(data_root, HOURS, Hour(DAY1, 9)).stat()
    assert (after.st_ino, after.st_mtime_ns) == (untouched.st_ino, untouched.st_mtime_ns)
    assert run_rollup(root=data_root).nothing_to_do


def test_a_warehouse_without_the_hour_table_gets_it_on_the_next_rollup(data_root: Path) -> None:
    hours = [Hour(DAY1, 9), Hour(DAY1, 10), Hour(DAY2, 3)]
    build(data_root, hours)
    minute_files = sorted(layout.warehouse_table_dir(data_root, MINUTES).rglob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in minute_files}
    shutil.rmtree(layout.warehouse_table_dir(data_root, HOURS))

    assert [(p.hour, p.reason) for p in plan_hours(data_root, MINUTES)] == [
        (h, "missing") for h in hours
    ]
    run_rollup(root=data_root)

    assert {p: p.stat().st_mtime_ns for p in minute_files} == before  # minutes untouched
    assert_matches_duckdb(data_root, HOURS)
    assert plan_hours(data_root) == []


def test_an_hour_whose_raw_facts_are_gone_is_summed_from_its_minutes(data_root: Path) -> None:
    """Retention keeps the warehouse longer than raw: such an hour of a warehouse made
    before the hour table existed gets its hour rows from the minute rows, with counts
    exact and percentiles within the sketch's bound of the exact rank values."""
    hour = Hour(DAY1, 9)
    build(data_root, [hour], per_hour=300)
    con = connect()
    raw_facts(con, data_root)
    exact = {
        (service, method, path): (n, [float(v) for v in values])
        for service, method, path, n, values in con.execute("""
            SELECT service, method, path_template, count(*),
              [list_sort(list(latency_ms))[greatest(1, ceil(q * count(*))::BIGINT)]
               FOR q IN [0.5, 0.95, 0.99]]
            FROM facts GROUP BY ALL
        """).fetchall()
    }
    shutil.rmtree(layout.raw_hour_dir(data_root, schema.REQUEST_FACTS, hour))
    assert [h.reason for h in run_rollup(root=data_root).hours] == ["removed"]
    shutil.rmtree(layout.warehouse_table_dir(data_root, HOURS))

    summary = run_rollup(root=data_root)

    assert [(h.hour, h.reason) for h in summary.hours] == [(hour, "missing")]
    assert hour_rows(data_root) == summed_minutes(data_root)
    con = connect()
    metrics_view(con, data_root, HOURS)
    got = con.execute(
        "SELECT service, method, path_template, request_count, "
        "[p50_latency_ms, p95_latency_ms, p99_latency_ms] FROM metrics"
    ).fetchall()
    assert len(got) == len(exact)
    for service, method, path, n, values in got:
        want_n, want = exact[(service, method, path)]
        assert n == want_n
        for value, reference in zip(values, want, strict=True):
            assert math.isclose(value, reference, rel_tol=sketch.RELATIVE_ERROR + 1e-12)
    assert plan_hours(data_root) == []


def test_retention_removes_the_hour_table_with_the_minutes(data_root: Path) -> None:
    build(data_root, [Hour(DAY1, 9), Hour(DAY2, 9)])

    retention.run_cleanup(root=data_root, days=1, warehouse_days=1, today=TODAY)

    for table in (MINUTES, HOURS):
        assert list(layout.warehouse_days(data_root, table)) == [DAY2]
    con = connect()
    metrics_view(con, data_root, HOURS)
    assert con.execute("SELECT DISTINCT event_day FROM metrics").fetchall() == [(DAY2,)]


def test_a_day_of_the_hour_table_is_joined_only_once_every_hour_is_built(
    data_root: Path,
) -> None:
    build(data_root, [Hour(DAY1, h) for h in range(24)], per_hour=10)
    layout.warehouse_hour_file(data_root, HOURS, Hour(DAY1, 5)).unlink()

    report = retention.run_cleanup(root=data_root, days=30, warehouse_days=30, today=TODAY)

    assert [(d.table, d.day) for d in report.compacted.days] == [(MINUTES, DAY1)]
    where, why = report.compacted.skipped[0]
    assert where == str(layout.warehouse_day_dir(data_root, HOURS, DAY1))
    assert "hour 05 is not built yet" in why
    assert [(p.hour, p.reason) for p in plan_hours(data_root)] == [(Hour(DAY1, 5), "missing")]
    run_rollup(root=data_root)
    report = retention.run_cleanup(root=data_root, days=30, warehouse_days=30, today=TODAY)
    assert [(d.table, d.day, d.hour_files) for d in report.compacted.days] == [(HOURS, DAY1, 24)]
    assert_matches_duckdb(data_root, HOURS)
