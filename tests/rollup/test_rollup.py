"""Rollup against DuckDB as an independent reference (DESIGN §6, §7)."""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from gravix import schema
from gravix.errors import ConfigError
from gravix.report import to_json
from gravix.rollup import plan_hours, rebuild_hours, recent_runs, run_rollup
from gravix.schema import sketch
from gravix.storage import layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, DAY2, Facts, event_line, fact_line, generate, stamp

HOURS = [Hour(DAY1, 9), Hour(DAY1, 10), Hour(DAY1, 23), Hour(DAY2, 0)]
RAW_COLUMNS = (
    "{event_id: 'VARCHAR', event_time: 'TIMESTAMPTZ', service: 'VARCHAR', method: 'VARCHAR', "
    "path_template: 'VARCHAR', status_code: 'BIGINT', latency_ms: 'DOUBLE', "
    "user_agent_family: 'VARCHAR'}"
)


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def raw_facts(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    glob = layout.raw_glob(root, schema.REQUEST_FACTS)
    con.execute(
        "CREATE OR REPLACE TABLE facts AS SELECT DISTINCT ON (event_id) * FROM "
        f"read_json('{glob}', format = 'newline_delimited', columns = {RAW_COLUMNS})"
    )


def metrics_view(
    con: duckdb.DuckDBPyConnection, root: Path, table: str = schema.REQUEST_METRICS_MINUTE
) -> None:
    glob = layout.warehouse_glob(root, table)
    con.execute(
        "CREATE OR REPLACE VIEW metrics AS SELECT * FROM "
        f"read_parquet('{glob}', hive_partitioning = true)"
    )


def assert_matches_duckdb(root: Path, table: str = schema.REQUEST_METRICS_MINUTE) -> int:
    """Every row of ``table`` (request_metrics_minute, or _hour) equals DuckDB's aggregate
    of the raw facts per minute (or hour)."""
    con = connect()
    raw_facts(con, root)
    metrics_view(con, root, table)
    unit = "hour" if table == schema.REQUEST_METRICS_HOUR else "minute"
    reference = f"""
        SELECT date_trunc('{unit}', event_time) AS bucket_start, service, method, path_template,
          count(*) AS n, count(*) FILTER (WHERE status_code >= 500) AS errors,
          count(*) FILTER (WHERE status_code >= 400 AND status_code < 500) AS client_errors,
          sum(latency_ms) AS s, min(latency_ms) AS lo, max(latency_ms) AS hi,
          quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.95) AS p95,
          quantile_cont(latency_ms, 0.99) AS p99,
          count(*) FILTER (WHERE latency_ms = 0) AS zeros
        FROM facts GROUP BY ALL
    """
    rows = con.execute(f"""
        SELECT r.*, m.request_count, m.error_count, m.client_error_count, m.latency_sum_ms,
          m.latency_min_ms, m.latency_max_ms, m.p50_latency_ms, m.p95_latency_ms,
          m.p99_latency_ms, m.lat_zero_count, m.error_rate, m.event_day,
          list_sum(m.lat_cnt) AS hist_n, m.lat_idx, m.lat_scale
        FROM ({reference}) r FULL OUTER JOIN metrics m
          USING (bucket_start, service, method, path_template)
    """).fetchall()
    assert rows
    for row in rows:
        (
            bucket,
            _svc,
            _meth,
            _path,
            n,
            errors,
            client,
            s,
            lo,
            hi,
            p50,
            p95,
            p99,
            zeros,
            count,
            error_count,
            client_count,
            lsum,
            lmin,
            lmax,
            q50,
            q95,
            q99,
            zero_count,
            error_rate,
            event_day,
            hist_n,
            idx,
            scale,
        ) = row
        assert n is not None and count is not None, f"row only on one side: {row}"
        assert (count, error_count, client_count) == (n, errors, client)
        assert (lsum, lmin, lmax) == (s, lo, hi)
        for mine, ref in ((q50, p50), (q95, p95), (q99, p99)):
            assert math.isclose(mine, ref, rel_tol=1e-9, abs_tol=1e-12), (mine, ref, row)
        assert zero_count == zeros
        assert zero_count + (hist_n or 0) == count
        assert idx == sorted(idx)
        assert scale == sketch.SCALE
        assert error_rate == error_count / count
        assert event_day == bucket.date()
    return len(rows)


def merged_quantiles_within_bound(root: Path, where: str) -> None:
    """p50…p99.9 merged from the histograms of the rows matching ``where`` are within
    α of DuckDB's quantile_disc over the raw facts matching it."""
    con = connect()
    raw_facts(con, root)
    metrics_view(con, root)
    rows = con.execute(
        "SELECT lat_zero_count, lat_idx, lat_cnt, latency_min_ms, latency_max_ms "
        f"FROM metrics WHERE {where.replace('event_time', 'bucket_start')}"
    ).fetchall()
    assert rows
    zero, idx, cnt = sketch.merge_arrays((z, i, c) for z, i, c, _, _ in rows)
    lo = min(r[3] for r in rows)
    hi = max(r[4] for r in rows)
    for q in (0.5, 0.95, 0.99, 0.999):
        (exact,) = con.execute(
            f"SELECT quantile_disc(latency_ms, {q}) FROM facts WHERE {where}"
        ).fetchone() or (None,)
        estimate = sketch.quantile_from_arrays(zero, idx, cnt, q, lo, hi)
        assert abs(estimate - exact) <= sketch.RELATIVE_ERROR * exact * (1 + 1e-9), (q, where)


@pytest.fixture(scope="module")
def built_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built") / "data"
    root.mkdir()
    rng = random.Random(7)
    generate(rng, HOURS, 1500, files_per_hour=3).write(root)
    summary = run_rollup(root=root)
    assert summary.total("facts") > 0
    return root


@pytest.fixture()
def built(built_template: Path, tmp_path: Path) -> Path:
    """A data root with raw facts over four hours (two days), rolled up once."""
    root = tmp_path / "built"
    shutil.copytree(built_template, root)
    return root


def test_metrics_equal_duckdb_with_duplicates_boundaries_zero_and_fractional_latencies(
    built: Path,
) -> None:
    assert assert_matches_duckdb(built) > 1000


@pytest.mark.parametrize(
    "where",
    [
        "event_time >= '2026-02-16 10:00:00+00' AND event_time < '2026-02-16 11:00:00+00'",
        "event_time >= '2026-02-16 00:00:00+00' AND event_time < '2026-02-17 00:00:00+00'",
        "service = 'checkout'",
        "true",
    ],
    ids=["hour", "day", "service", "all"],
)
def test_quantiles_merged_from_histograms_are_within_the_bound(built: Path, where: str) -> None:
    merged_quantiles_within_bound(built, where)


def test_late_facts_rebuild_exactly_their_hour_and_still_match_duckdb(built: Path) -> None:
    rng = random.Random(11)
    old = Hour(DAY1, 10)
    late = Facts()
    for _ in range(300):
        moment = old.start + timedelta(milliseconds=rng.randrange(3_600_000))
        late.add(old, "late-000", fact_line(rng, moment))
    # a copy of a fact already stored in another file of that hour is still one fact
    first_file = layout.raw_files(layout.raw_hour_dir(built, schema.REQUEST_FACTS, old))[0]
    late.add(old, "late-000", first_file.read_bytes().splitlines()[0])
    late.write(built)
    new_hour = Hour(DAY2, 5)
    generate(rng, [new_hour], 200, prefix="n").write(built)

    plan = {(p.table, p.hour, p.reason) for p in plan_hours(built)}
    assert plan == {
        (schema.REQUEST_METRICS_MINUTE, old, "changed"),
        (schema.REQUEST_METRICS_MINUTE, new_hour, "new"),
    }
    summary = run_rollup(root=built)
    assert {(h.table, h.hour) for h in summary.hours} == {
        (schema.REQUEST_METRICS_MINUTE, old),
        (schema.REQUEST_METRICS_MINUTE, new_hour),
    }
    assert assert_matches_duckdb(built) > 1000
    again = run_rollup(root=built)
    assert again.nothing_to_do
    assert "Nothing to do" in again.message


def test_plan_since_last_run_passes_over_unchanged_hours_and_finds_the_same_work(
    built: Path,
) -> None:
    """The doctor's fast plan (an hour directory untouched since the last incremental run
    started, with manifest and output, is up to date) agrees with the full walk."""

    def both() -> tuple[set[tuple[str, Hour, str]], set[tuple[str, Hour, str]]]:
        fast = {(p.table, p.hour, p.reason) for p in plan_hours(built, since_last_run=True)}
        return fast, {(p.table, p.hour, p.reason) for p in plan_hours(built)}

    long_ago = time.time() - 3 * 3600
    for topic in schema.TOPICS:
        for hour_dir in layout.raw_hours(built, topic).values():
            os.utime(hour_dir, (long_ago, long_ago))
    assert both() == (set(), set())
    rng = random.Random(5)
    changed, missing, removed = Hour(DAY1, 10), Hour(DAY2, 0), Hour(DAY1, 9)
    generate(rng, [changed], 20, prefix="late").write(built)
    layout.warehouse_hour_file(built, schema.REQUEST_METRICS_MINUTE, missing).unlink()
    for path in layout.raw_files(layout.raw_hour_dir(built, schema.REQUEST_FACTS, removed)):
        path.unlink()
    fast, full = both()
    assert fast == full
    assert {(h, r) for _, h, r in fast} >= {
        (changed, "changed"),
        (missing, "missing"),
        (removed, "removed"),
    }
    newest = {p.hour: p.newest_mtime for p in plan_hours(built, since_last_run=True)}
    assert newest[changed] > long_ago


def _inodes(root: Path) -> dict[str, int]:
    base = layout.warehouse_table_dir(root, schema.REQUEST_METRICS_MINUTE)
    return {str(p.relative_to(base)): p.stat().st_ino for p in base.rglob("*.parquet")}


def test_runbook_window_recomputes_exactly_that_hour(built: Path) -> None:
    before = _inodes(built)
    summary = run_rollup(root=built, start="2026-02-16T10:00:00Z", end="2026-02-16T11:00:00Z")
    assert not summary.widened
    assert [(h.table, h.hour) for h in summary.hours] == [
        (schema.REQUEST_METRICS_MINUTE, Hour(DAY1, 10))
    ]
    after = _inodes(built)
    assert before.keys() == after.keys()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"event_day=2026-02-16/part-10.parquet"}
    assert assert_matches_duckdb(built) > 1000


def test_window_not_on_hours_is_widened_and_says_so(built: Path) -> None:
    summary = run_rollup(root=built, start="2026-02-16T09:15:00Z", end="2026-02-16T10:00:00.001Z")
    assert summary.widened
    assert summary.start == datetime(2026, 2, 16, 9, tzinfo=UTC)
    assert summary.end == datetime(2026, 2, 16, 11, tzinfo=UTC)
    assert summary.widened_note and "widened" in summary.widened_note
    assert "2026-02-16T09:00:00Z" in summary.widened_note
    assert [h.hour for h in summary.hours] == [Hour(DAY1, 9), Hour(DAY1, 10)]
    assert to_json(summary)["widened"] is True


def test_bad_window_is_a_usage_error_and_changes_nothing(built: Path) -> None:
    before = _inodes(built)
    with pytest.raises(ConfigError):
        run_rollup(root=built, start="yesterday")
    with pytest.raises(ConfigError):
        run_rollup(root=built, start="2026-02-16T11:00:00Z", end="2026-02-16T10:00:00Z")
    with pytest.raises(ConfigError):
        run_rollup(root=built, tables=["nope"])
    assert _inodes(built) == before


def test_tables_have_design_columns_types_hive_partitions_and_zstd(built: Path) -> None:
    rng = random.Random(3)
    events = Facts()
    for hour in HOURS[:2]:
        for _ in range(5):
            moment = hour.start + timedelta(seconds=rng.randrange(3600))
            events.add(hour, "e000", event_line(rng, moment, "deploy_started", "checkout"))
    events.write(built, schema.SERVICE_EVENTS)
    run_rollup(root=built)
    con = connect()
    expected_request = {
        "bucket_start": "TIMESTAMP WITH TIME ZONE",
        "service": "VARCHAR",
        "method": "VARCHAR",
        "path_template": "VARCHAR",
        "request_count": "BIGINT",
        "error_count": "BIGINT",
        "client_error_count": "BIGINT",
        "error_rate": "DOUBLE",
        "latency_sum_ms": "DOUBLE",
        "latency_min_ms": "DOUBLE",
        "latency_max_ms": "DOUBLE",
        "p50_latency_ms": "DOUBLE",
        "p95_latency_ms": "DOUBLE",
        "p99_latency_ms": "DOUBLE",
        "lat_scale": "TINYINT",
        "lat_zero_count": "BIGINT",
        "lat_idx": "INTEGER[]",
        "lat_cnt": "BIGINT[]",
        "event_day": "DATE",
    }
    expected_daily = {
        "service": "VARCHAR",
        "event_type": "VARCHAR",
        "event_count": "BIGINT",
        "first_event_time": "TIMESTAMP WITH TIME ZONE",
        "last_event_time": "TIMESTAMP WITH TIME ZONE",
        "event_day": "DATE",
    }
    for table, expected in (
        (schema.REQUEST_METRICS_MINUTE, expected_request),
        (schema.SERVICE_EVENTS_DAILY, expected_daily),
    ):
        glob = layout.warehouse_glob(built, table)
        described = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true)"
        ).fetchall()
        assert {name: kind for name, kind, *_ in described} == expected
        frame = pl.scan_parquet(glob, hive_partitioning=True).collect()
        assert frame.height > 0 and "event_day" in frame.columns
        files = sorted(layout.warehouse_table_dir(built, table).rglob("*.parquet"))
        assert files
        for path in files:
            assert path.parent.name.startswith("event_day=")
            meta = pq.ParquetFile(path).metadata
            codecs = {
                meta.row_group(g).column(c).compression
                for g in range(meta.num_row_groups)
                for c in range(meta.num_columns)
            }
            assert codecs == {"ZSTD"}
    # rows sorted by service, then bucket_start, within each file
    for path in layout.warehouse_table_dir(built, schema.REQUEST_METRICS_MINUTE).rglob("*.parquet"):
        keys = pl.read_parquet(path).select("service", "bucket_start").rows()
        assert keys == sorted(keys)


def test_service_events_daily_equals_duckdb_across_hours_of_a_day(data_root: Path) -> None:
    rng = random.Random(5)
    events = Facts()
    for hour in HOURS:
        for n in range(60):
            moment = hour.start + timedelta(milliseconds=rng.randrange(3_600_000))
            if n == 0:
                moment = hour.start  # the first and last millisecond of the hour
            if n == 1:
                moment = hour.start + timedelta(hours=1) - timedelta(milliseconds=1)
            line = event_line(
                rng, moment, rng.choice(("deploy_started", "deploy_completed", "restart"))
            )
            for _ in range(rng.choice((1, 1, 2, 3))):
                events.add(hour, f"e{rng.randrange(2):03d}", line)
    events.write(data_root, schema.SERVICE_EVENTS)
    run_rollup(root=data_root, tables="service_events_daily")
    # late events for one hour of the first day: the day's rows are recomputed
    late = Facts()
    for _ in range(7):
        moment = HOURS[0].start + timedelta(seconds=rng.randrange(3600))
        late.add(HOURS[0], "late", event_line(rng, moment, "restart", "frontend"))
    late.write(data_root, schema.SERVICE_EVENTS)
    summary = run_rollup(root=data_root)
    assert {h.hour for h in summary.hours if h.reason == "changed"} == {HOURS[0]}
    con = connect()
    raw = layout.raw_glob(data_root, schema.SERVICE_EVENTS)
    glob = layout.warehouse_glob(data_root, schema.SERVICE_EVENTS_DAILY)
    reference = con.execute(f"""
        SELECT CAST(event_time AS DATE), service, event_type, count(*), min(event_time),
          max(event_time)
        FROM (SELECT DISTINCT ON (event_id) * FROM read_json('{raw}',
          format = 'newline_delimited', columns = {{event_id: 'VARCHAR',
          event_time: 'TIMESTAMPTZ', service: 'VARCHAR', event_type: 'VARCHAR'}}))
        GROUP BY ALL ORDER BY ALL
    """).fetchall()
    mine = con.execute(f"""
        SELECT event_day, service, event_type, event_count, first_event_time, last_event_time
        FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY ALL
    """).fetchall()
    assert mine == reference
    assert len({r[0] for r in mine}) == 2


def _write_lines(root: Path, hour: Hour, name: str, lines: list[bytes], tail: bytes = b"") -> None:
    path = layout.raw_file_path(root, schema.REQUEST_FACTS, hour, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines) + tail)


def test_torn_and_invalid_lines_are_counted_skipped_and_recorded(data_root: Path) -> None:
    rng = random.Random(9)
    clean, damaged = Hour(DAY1, 10), Hour(DAY1, 11)

    def good(hour: Hour, n: int) -> list[bytes]:
        return [
            fact_line(rng, hour.start + timedelta(seconds=rng.randrange(3600))) for _ in range(n)
        ]

    sample = good(clean, 1)[0].decode()
    other_hour = stamp(datetime(2026, 2, 16, 12, 0, tzinfo=UTC))
    # well-formed JSON that breaks the contract: the fast path has to catch these
    invalid = [
        b'{"event_id":"x"}',
        sample.replace(
            sample[sample.index('"latency_ms":') :].split(",")[0].rstrip("}"), '"latency_ms":-1'
        ).encode(),
        sample.replace(
            sample[sample.index('"status_code":') :].split(",")[0], '"status_code":"abc"'
        ).encode(),
        sample.replace(
            sample[sample.index('"event_time":') :].split(",")[0], f'"event_time":"{other_hour}"'
        ).encode(),
        sample.replace(
            sample[sample.index('"event_time":') :].split(",")[0], '"event_time":"soon"'
        ).encode(),
    ]
    _write_lines(data_root, clean, "a", good(clean, 50) + invalid[:3])
    # a valid time written with an offset instead of Z still belongs to its UTC hour
    offset_time = sample.replace(
        sample[sample.index('"event_time":') :].split(",")[0],
        '"event_time":"2026-02-16T11:30:00.250+01:00"',
    ).replace(sample[sample.index('"event_id":') :].split(",")[0], '"event_id":"offset-1"')
    _write_lines(data_root, clean, "b", [*invalid[3:], *good(clean, 50), offset_time.encode()])
    # not JSON at all: a broken line mid-file, an array, a torn tail, zero fill
    torn = good(damaged, 1)[0][:37]
    _write_lines(
        data_root,
        damaged,
        "a",
        [*good(damaged, 40), b"{not json", b"[1, 2]", *good(damaged, 40)],
        tail=torn,
    )
    _write_lines(data_root, damaged, "b", good(damaged, 20), tail=b"\x00" * 64)
    summary = run_rollup(root=data_root)
    by_hour = {h.hour: h for h in summary.hours}
    assert (by_hour[clean].facts, by_hour[clean].bad_lines) == (101, 5)
    assert (by_hour[damaged].facts, by_hour[damaged].bad_lines) == (100, 4)
    assert summary.bad_lines == 9
    assert to_json(summary)["bad_lines"] == 9
    (last,) = recent_runs(data_root, limit=1)
    assert last["bad_lines"] == 9
    con = connect()
    metrics_view(con, data_root)
    assert con.execute("SELECT sum(request_count) FROM metrics").fetchone() == (201,)


def test_hour_whose_raw_files_are_all_gone_keeps_its_rows(built: Path) -> None:
    gone = Hour(DAY1, 9)
    for path in layout.raw_files(layout.raw_hour_dir(built, schema.REQUEST_FACTS, gone)):
        path.unlink()
    output = layout.warehouse_hour_file(built, schema.REQUEST_METRICS_MINUTE, gone)
    assert output.exists()
    assert [(p.hour, p.reason) for p in plan_hours(built)] == [(gone, "removed")]
    run_rollup(root=built)
    assert output.exists()
    assert plan_hours(built) == []


def test_deleted_parquet_is_planned_as_missing_and_rebuilt(built: Path) -> None:
    hour = Hour(DAY2, 0)
    output = layout.warehouse_hour_file(built, schema.REQUEST_METRICS_MINUTE, hour)
    output.unlink()
    assert [(p.hour, p.reason) for p in plan_hours(built)] == [(hour, "missing")]
    run_rollup(root=built)
    assert output.exists()
    assert assert_matches_duckdb(built) > 1000


def test_rebuild_hours_rewrites_the_given_hours(built: Path) -> None:
    hour = Hour(DAY1, 23)
    output = layout.warehouse_hour_file(built, schema.REQUEST_METRICS_MINUTE, hour)
    output.write_bytes(b"PAR1 corrupt")
    summary = rebuild_hours(built, schema.REQUEST_METRICS_MINUTE, [hour])
    assert [h.hour for h in summary.hours] == [hour]
    assert assert_matches_duckdb(built) > 1000


def _summary_keys(summary: Any) -> set[str]:
    return set(to_json(summary))


def test_summary_reports_every_count_for_json(built: Path) -> None:
    summary = run_rollup(root=built, start="2026-02-16T10:00:00Z", end="2026-02-16T11:00:00Z")
    assert {
        "hours_built",
        "facts",
        "duplicates",
        "bad_lines",
        "rows",
        "lines",
        "notes",
        "message",
        "hours",
    } <= _summary_keys(summary)
    doc = to_json(summary)
    assert doc["hours_built"] == 1
    assert doc["facts"] + doc["duplicates"] + doc["bad_lines"] == doc["lines"]
