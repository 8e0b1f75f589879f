"""The query layer: SQL over all four tables by every name form, the same answers as DuckDB
on the same files, partition pruning, clear errors, and time windows."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from gravix import schema
from gravix.errors import ConfigError, QueryError, UnsafePath
from gravix.query import answer_sql, prepare_sql, resolve_window, run_sql
from gravix.query.answer import referenced_tables, rewrite_names
from gravix.query.times import default_step
from gravix.schema import REQUEST_METRICS_COLUMNS
from gravix.storage import layout
from gravix.units import parse_time
from test_query_support import (
    START,
    build_warehouse,
    duck,
    duck_sources,
    make_facts,
    populate,
    write_raw,
)

TABLES = ["request_metrics_minute", "service_events_daily", "request_facts", "service_events"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("query") / "data"
    populate(data, minutes=180)
    build_warehouse(data)
    return data


def same_rows(ours: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            if isinstance(x, float) or isinstance(y, float):
                assert x == pytest.approx(y, rel=1e-12, abs=1e-12) or (
                    math.isnan(x) and math.isnan(y)
                )
            elif isinstance(x, datetime) and isinstance(y, datetime):
                assert x.astimezone(UTC) == y.astimezone(UTC)
            else:
                assert x == y, (a, b)


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("prefix", ["", "raw.", "gravix.raw.", '"gravix"."raw".', "GRAVIX.RAW."])
def test_every_table_answers_by_bare_and_qualified_names(
    root: Path, table: str, prefix: str
) -> None:
    count = run_sql(root, f"SELECT count(*) AS n FROM {prefix}{table}")["n"][0]
    expected = duck().execute(f"SELECT count(*) FROM {duck_sources(root)[table]}").fetchone()[0]
    assert count == expected > 0


def test_the_runbook_check_returns_ten_warehouse_rows_with_every_column(root: Path) -> None:
    df = run_sql(root, "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10")
    assert df.height == 10
    from gravix.schema import REQUEST_METRICS_COLUMNS

    assert df.columns == [*REQUEST_METRICS_COLUMNS, "event_day"]


def test_qualifiers_inside_string_literals_and_comments_are_left_alone() -> None:
    sql = "SELECT 'raw.request_facts' AS s -- gravix.raw.x\nFROM gravix.raw.request_facts"
    assert (
        rewrite_names(sql) == "SELECT 'raw.request_facts' AS s -- gravix.raw.x\nFROM request_facts"
    )
    assert rewrite_names("select * from raw . service_events") == "select * from service_events"


def test_only_tables_read_are_found_not_aliases_or_literals() -> None:
    found = referenced_tables(
        "WITH x AS (SELECT * FROM request_facts) SELECT 'service_events' AS service_events_daily "
        'FROM x JOIN facts2 ON true, "request_metrics_minute" -- FROM service_events'
    )
    assert found == {"request_facts", "request_metrics_minute"}


def test_sql_functions_with_from_are_not_taken_for_tables(root: Path) -> None:
    df = run_sql(
        root,
        "SELECT EXTRACT(hour FROM bucket_start) AS h, sum(request_count) AS n "
        "FROM request_metrics_minute GROUP BY h ORDER BY h",
    )
    theirs = (
        duck()
        .execute(
            "SELECT hour(bucket_start) AS h, sum(request_count) FROM "
            f"{duck_sources(root)['request_metrics_minute']} GROUP BY h ORDER BY h"
        )
        .fetchall()
    )
    assert df.rows() == theirs


def test_file_reading_functions_are_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.parquet"
    pl.DataFrame({"secret": [1]}).write_parquet(outside)
    with pytest.raises(QueryError) as err:
        run_sql(root, f"SELECT * FROM read_parquet('{outside}')")
    assert "read_parquet" in err.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT service, count(*) AS n, sum(latency_ms) AS total, min(event_time) AS first "
        "FROM raw.request_facts GROUP BY service ORDER BY service",
        "SELECT service, path_template, sum(request_count) AS n, sum(error_count) AS e, "
        "max(latency_max_ms) AS worst FROM gravix.raw.request_metrics_minute "
        "WHERE event_day = '2026-02-16' "
        "GROUP BY service, path_template ORDER BY service, path_template",
        "SELECT bucket_start, service, method, path_template, request_count, lat_idx, lat_cnt "
        "FROM request_metrics_minute WHERE service = 'frontend' "
        "ORDER BY bucket_start, method, path_template LIMIT 50",
        "SELECT event_type, event_count, first_event_time FROM service_events_daily "
        "ORDER BY event_type",
        "SELECT event_id, entity_id, message FROM service_events ORDER BY event_time",
    ],
)
def test_sql_answers_equal_duckdb_on_the_same_files(root: Path, sql: str) -> None:
    ours = run_sql(root, sql).rows()
    theirs_sql = sql
    for name, source in duck_sources(root).items():
        for prefix in ("gravix.raw.", "raw.", ""):
            theirs_sql = theirs_sql.replace(f"FROM {prefix}{name} ", f"FROM {source} ")
            theirs_sql = theirs_sql.replace(f"FROM {prefix}{name}\n", f"FROM {source}\n")
    theirs_sql = theirs_sql.replace("event_day = '2026-02-16'", "event_day = DATE '2026-02-16'")
    theirs = duck().execute(theirs_sql).fetchall()
    same_rows(ours, [tuple(list(v) if isinstance(v, list) else v for v in r) for r in theirs])


@pytest.fixture(scope="module")
def three_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """Three days of raw and warehouse data; every file of the first and last day then
    damaged, so that a query which opened any of them would fail. Returns the root and
    DuckDB's counts (taken before the damage) of the queries the tests run."""
    root = tmp_path_factory.mktemp("three-days") / "data"
    for day in range(3):
        facts = make_facts(start=START + timedelta(days=day), minutes=90, seed=day)
        write_raw(root, schema.REQUEST_FACTS, facts, seed=day)
    build_warehouse(root)
    source = duck_sources(root)["request_metrics_minute"]
    con = duck()
    counts = {
        name: con.execute(f"SELECT sum(request_count) FROM {source} WHERE {where}").fetchone()[0]
        for name, where in {
            "day": "event_day = DATE '2026-02-17'",
            "range": "bucket_start >= TIMESTAMPTZ '2026-02-17 08:30:00+00' "
            "AND bucket_start < TIMESTAMPTZ '2026-02-17 09:10:00+00' AND service = 'frontend'",
            "minute": "bucket_start = TIMESTAMPTZ '2026-02-17 09:00:00+00'",
        }.items()
    }
    counts["raw"] = con.execute(
        f"SELECT count(*) FROM {duck_sources(root)['request_facts']} "
        "WHERE event_time >= TIMESTAMPTZ '2026-02-17 08:59:30+00' "
        "AND event_time < TIMESTAMPTZ '2026-02-17 09:00:30+00'"
    ).fetchone()[0]
    for day in (date(2026, 2, 16), date(2026, 2, 18)):
        for path in layout.warehouse_day_dir(root, "request_metrics_minute", day).iterdir():
            path.write_bytes(b"not parquet at all")
        for hour_dir in layout.raw_day_dir(root, "request_facts", day).iterdir():
            for path in hour_dir.iterdir():
                path.write_bytes(b'{"event_id": oops\n')
    return root, counts


def test_event_day_filter_never_opens_other_days_files(
    three_days: tuple[Path, dict[str, int]],
) -> None:
    root, counts = three_days
    sql = "SELECT sum(request_count) AS n FROM request_metrics_minute WHERE event_day = '{}'"
    assert run_sql(root, sql.format("2026-02-17"))["n"][0] == counts["day"] == 90 * 12
    with pytest.raises(QueryError):  # the damage is real: reading those days fails
        run_sql(root, "SELECT sum(request_count) FROM request_metrics_minute")


def test_bucket_start_filter_never_opens_other_hours_files(
    three_days: tuple[Path, dict[str, int]],
) -> None:
    root, counts = three_days
    ranged = run_sql(
        root,
        "SELECT sum(request_count) AS n FROM gravix.raw.request_metrics_minute "
        "WHERE service = 'frontend' AND bucket_start >= '2026-02-17 08:30:00' "
        "AND bucket_start < '2026-02-17 09:10:00'",
    )
    assert ranged["n"][0] == counts["range"] > 0
    minute = run_sql(
        root,
        "SELECT sum(request_count) AS n FROM request_metrics_minute "
        "WHERE bucket_start = '2026-02-17 09:00:00'",
    )
    assert minute["n"][0] == counts["minute"] > 0
    plan = prepare_sql(
        root,
        "SELECT * FROM request_metrics_minute WHERE bucket_start >= '2026-02-17 09:00:00' "
        "AND bucket_start < '2026-02-17 09:30:00'",
    ).explain()
    assert "part-09.parquet" in plan and "other sources" not in plan


def test_raw_event_time_filter_never_opens_other_hours_files(
    three_days: tuple[Path, dict[str, int]],
) -> None:
    root, counts = three_days
    found = run_sql(
        root,
        "SELECT count(*) AS n FROM raw.request_facts WHERE event_time >= '2026-02-17 08:59:30' "
        "AND event_time < '2026-02-17 09:00:30'",
    )
    assert found["n"][0] == counts["raw"] > 0
    narrow = answer_sql(
        root,
        "SELECT count(*) FROM raw.request_facts WHERE event_time >= '2026-02-17 08:59:30' "
        "AND event_time < '2026-02-17 09:00:30'",
    )
    assert narrow.skipped_lines == {}
    # the damage is real: reading those hours skips (and counts) their damaged lines
    damaged = sum(
        len(list(hour_dir.iterdir()))
        for day in (date(2026, 2, 16), date(2026, 2, 18))
        for hour_dir in layout.raw_day_dir(root, "request_facts", day).iterdir()
    )
    everything = answer_sql(root, "SELECT count(service) FROM request_facts")
    assert everything.skipped_lines == {"request_facts": damaged} and damaged > 0


def test_a_bucket_start_filter_under_or_reads_everything(
    three_days: tuple[Path, dict[str, int]],
) -> None:
    root, _ = three_days
    # rows of any hour may match the other side of the OR: no file may be skipped
    with pytest.raises(QueryError):
        run_sql(
            root,
            "SELECT count(*) FROM request_metrics_minute "
            "WHERE bucket_start >= '2026-02-17 09:00:00' OR service = 'api'",
        )


def test_bucket_start_pruning_gives_duckdb_answers(root: Path) -> None:
    source = duck_sources(root)["request_metrics_minute"]
    for where in (
        "bucket_start > '2026-02-16 09:59:00' AND bucket_start <= '2026-02-16 10:01:00'",
        "bucket_start BETWEEN '2026-02-16 08:00:00' AND '2026-02-16 08:00:00'",
        "bucket_start < '2026-02-16 08:00:00'",
        "bucket_start >= '2030-01-01 00:00:00'",
        "NOT (bucket_start < '2026-02-16 10:00:00')",
    ):
        ours = run_sql(root, f"SELECT count(*) AS n FROM request_metrics_minute WHERE {where}")
        duck_where = where.replace("'2", "TIMESTAMPTZ '2").replace(":00'", ":00+00'")
        theirs = duck().execute(f"SELECT count(*) FROM {source} WHERE {duck_where}").fetchone()
        assert ours["n"][0] == theirs[0], where


def test_bad_sql_is_one_line_naming_the_problem(root: Path) -> None:
    with pytest.raises(QueryError) as err:
        run_sql(root, "SELEC * FROM request_facts")
    assert "\n" not in err.value.message
    assert "SELEC" in err.value.message


def test_unknown_column_names_the_column(root: Path) -> None:
    with pytest.raises(QueryError) as err:
        run_sql(root, "SELECT no_such_column FROM request_facts")
    assert "no_such_column" in err.value.message and "\n" not in err.value.message


def test_unknown_table_lists_the_tables(root: Path) -> None:
    with pytest.raises(QueryError) as err:
        run_sql(root, "SELECT * FROM gravix.raw.request_metrics_hourly")
    assert "request_metrics_hourly" in err.value.message
    assert all(t in (err.value.hint or "") for t in TABLES)


def test_a_table_with_no_files_answers_zero_rows_with_its_columns(tmp_path: Path) -> None:
    root = tmp_path / "data"
    populate(root, minutes=5)
    assert run_sql(root, "SELECT count(*) AS n FROM request_facts")["n"][0] > 0
    # a column alias spelling a warehouse table does not make the query read it
    alias = run_sql(root, "SELECT count(*) AS request_metrics_minute FROM request_facts")
    assert alias["request_metrics_minute"][0] > 0
    answer = answer_sql(root, "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10")
    assert answer.frame.height == 0
    assert answer.frame.columns[: len(REQUEST_METRICS_COLUMNS)] == list(REQUEST_METRICS_COLUMNS)
    assert any("gravix rollup" in note for note in answer.notes)
    assert run_sql(root, "SELECT count(*) AS n FROM service_events_daily")["n"][0] == 0


NOW = datetime(2026, 2, 16, 12, 30, 45, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("90m", NOW - timedelta(minutes=90)),
        ("7d", NOW - timedelta(days=7)),
        ("30s", NOW - timedelta(seconds=30)),
        ("now", NOW),
        ("2026-02-16T10:00:00Z", datetime(2026, 2, 16, 10, tzinfo=UTC)),
        ("2026-02-16T11:00:00.5+01:00", datetime(2026, 2, 16, 10, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_times_are_relative_or_rfc3339(text: str, expected: datetime) -> None:
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-02-16T10:00:00", "-5h", "5 parsecs"])
def test_times_without_a_zone_or_unit_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_time(text, now=NOW)


def test_window_is_whole_minutes_and_must_not_be_empty() -> None:
    start, end = resolve_window("1h", None, now=NOW)
    assert (start, end) == (
        datetime(2026, 2, 16, 11, 30, tzinfo=UTC),
        datetime(2026, 2, 16, 12, 31, tzinfo=UTC),
    )
    with pytest.raises(ConfigError):
        resolve_window("2026-02-16T10:00:00Z", "2026-02-16T09:00:00Z", now=NOW)


def test_default_step_keeps_a_window_within_a_hundred_rows() -> None:
    for minutes in (1, 59, 100, 101, 1440, 7 * 1440, 90 * 1440):
        start = NOW - timedelta(minutes=minutes)
        step = default_step(start, NOW)
        assert math.ceil(minutes / step) <= 100


def test_symlinks_leading_out_of_the_data_root_are_refused_not_read(tmp_path: Path) -> None:
    root = tmp_path / "data"
    populate(root, minutes=10)
    build_warehouse(root)
    before = run_sql(root, "SELECT count(*) AS n FROM request_metrics_minute")["n"][0]
    raw_before = run_sql(root, "SELECT count(*) AS n FROM request_facts")["n"][0]
    outside = tmp_path / "outside"
    day = layout.warehouse_day_dir(root, "request_metrics_minute", date(2026, 2, 16))
    shutil.copytree(day, outside / "wh")
    shutil.copytree(
        next(layout.raw_hours(root, "request_facts").values().__iter__()), outside / "raw"
    )
    (day.parent / "event_day=2030-01-01").symlink_to(outside / "wh")
    raw_day = layout.raw_day_dir(root, "request_facts", date(2030, 1, 1))
    raw_day.mkdir(parents=True)
    (raw_day / "hour=00").symlink_to(outside / "raw")
    # Refused, naming the link, rather than skipped silently (storage.layout.refuse_links).
    for table in ("request_metrics_minute", "request_facts"):
        with pytest.raises(UnsafePath, match="is a symlink to"):
            run_sql(root, f"SELECT count(*) AS n FROM {table}")
    assert before and raw_before
