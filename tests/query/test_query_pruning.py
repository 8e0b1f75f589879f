"""Partition pruning from the parsed WHERE: a filtered query lists only the files of the
hours (or days) its filters can match, and answers what DuckDB answers on all the files."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gravix import schema
from gravix.query import prepare_sql, run_sql, scan_table, tables
from gravix.query.prune import Span, table_spans
from gravix.query.sql import check_statement
from gravix.storage import layout
from gravix.storage.layout import Hour
from test_query_support import START, build_warehouse, duck, duck_sources, make_facts, write_raw

METRICS = schema.REQUEST_METRICS_MINUTE
DAYS = (date(2026, 2, 16), date(2026, 2, 17), date(2026, 2, 18))
TIME_COLUMNS = {name: info.time_column for name, info in tables.TABLES.items()}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days of facts (08:00–09:29 each day), rolled up by the real rollup: two hour
    files a day."""
    data = tmp_path_factory.mktemp("pruning") / "data"
    for day in range(3):
        facts = make_facts(start=START + timedelta(days=day), minutes=90, seed=day)
        write_raw(data, schema.REQUEST_FACTS, facts, seed=day)
    build_warehouse(data)
    return data


@pytest.fixture()
def listed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every file the scans are handed, recorded at the function that lists them."""
    seen: list[str] = []
    real = tables.matching_files

    def recording(*args: Any, **kwargs: Any) -> list[str]:
        files = real(*args, **kwargs)
        seen.extend(files)
        return files

    monkeypatch.setattr(tables, "matching_files", recording)
    yield seen


def hour_files(root: Path, *hours: Hour) -> set[str]:
    return {str(layout.warehouse_hour_file(root, METRICS, h)) for h in hours}


def duck_count(root: Path, where: str) -> int:
    source = duck_sources(root)[METRICS]
    row = duck().execute(f"SELECT sum(request_count) FROM {source} WHERE {where}").fetchone()
    return int(row[0] or 0)


def test_the_three_days_hold_six_hour_files(root: Path) -> None:
    every = {Hour(d, h) for d in DAYS for h in (8, 9)}
    assert set(tables.table_files(root, METRICS)) == hour_files(root, *every)


@pytest.mark.parametrize(
    ("where", "duck_where", "hours"),
    [
        (
            "bucket_start >= TIMESTAMP '2026-02-18 09:00:00'",
            "bucket_start >= TIMESTAMPTZ '2026-02-18 09:00:00+00'",
            [Hour(DAYS[2], 9)],
        ),
        (
            "bucket_start >= TIMESTAMP '2026-02-17 09:15:00' "
            "AND bucket_start < TIMESTAMP '2026-02-18 08:30:00'",
            "bucket_start >= TIMESTAMPTZ '2026-02-17 09:15:00+00' "
            "AND bucket_start < TIMESTAMPTZ '2026-02-18 08:30:00+00'",
            [Hour(DAYS[1], 9), Hour(DAYS[2], 8)],
        ),
        (
            "bucket_start BETWEEN '2026-02-16 08:59:00' AND '2026-02-16 09:00:00'",
            "bucket_start BETWEEN TIMESTAMPTZ '2026-02-16 08:59:00+00' "
            "AND TIMESTAMPTZ '2026-02-16 09:00:00+00'",
            [Hour(DAYS[0], 8), Hour(DAYS[0], 9)],
        ),
        (
            "TIMESTAMP '2026-02-16 09:00:00' > bucket_start",
            "TIMESTAMPTZ '2026-02-16 09:00:00+00' > bucket_start",
            [Hour(DAYS[0], 8)],
        ),
        (
            "event_day = DATE '2026-02-17' AND service = 'frontend'",
            "event_day = DATE '2026-02-17' AND service = 'frontend'",
            [Hour(DAYS[1], 8), Hour(DAYS[1], 9)],
        ),
        (
            "event_day > '2026-02-16' AND (bucket_start < '2026-02-17T10:00:00+01:00')",
            "event_day > DATE '2026-02-16' AND bucket_start < TIMESTAMPTZ '2026-02-17 09:00:00+00'",
            [Hour(DAYS[1], 8)],
        ),
        (
            "bucket_start = '2026-02-18 08:30:00'",
            "bucket_start = TIMESTAMPTZ '2026-02-18 08:30:00+00'",
            [Hour(DAYS[2], 8)],
        ),
    ],
)
def test_a_filtered_query_opens_only_the_matching_files_and_answers_as_duckdb(
    root: Path, listed: list[str], where: str, duck_where: str, hours: list[Hour]
) -> None:
    ours = run_sql(
        root, f"SELECT sum(request_count) AS n FROM request_metrics_minute WHERE {where}"
    )
    assert set(listed) == hour_files(root, *hours)
    assert (ours["n"][0] or 0) == duck_count(root, duck_where) > 0


@pytest.mark.parametrize(
    "where",
    [
        "bucket_start >= '2026-02-17 09:00:00' OR service = 'api'",
        "NOT (bucket_start < '2026-02-17 09:00:00')",
        "bucket_start + INTERVAL '1 hour' >= '2026-02-17 09:00:00'",
        "service = 'frontend'",
    ],
)
def test_filters_not_understood_prune_nothing(root: Path, listed: list[str], where: str) -> None:
    run_sql(root, f"SELECT count(*) FROM request_metrics_minute WHERE {where}")
    assert set(listed) == set(tables.table_files(root, METRICS))


def test_now_minus_an_interval_prunes_and_compares_as_utc(root: Path, listed: list[str]) -> None:
    now = datetime(2026, 2, 18, 10, 30, tzinfo=UTC)
    sql = (
        "SELECT sum(request_count) AS n FROM request_metrics_minute "
        "WHERE bucket_start >= now() - INTERVAL '2 hours'"
    )
    ours = prepare_sql(root, sql, now=now).collect()
    assert set(listed) == hour_files(root, Hour(DAYS[2], 8), Hour(DAYS[2], 9))
    assert ours["n"][0] == duck_count(root, "bucket_start >= TIMESTAMPTZ '2026-02-18 08:30:00+00'")


def test_a_self_join_reads_what_either_side_needs(root: Path, listed: list[str]) -> None:
    sql = (
        "SELECT count(*) AS n FROM request_metrics_minute a JOIN request_metrics_minute b "
        "ON a.service = b.service AND a.path_template = b.path_template "
        "AND a.method = b.method AND a.bucket_start = b.bucket_start "
        "WHERE a.event_day = '2026-02-16' AND b.bucket_start >= '2026-02-18 09:00:00'"
    )
    assert run_sql(root, sql)["n"][0] == 0
    assert set(listed) == hour_files(root, Hour(DAYS[0], 8), Hour(DAYS[0], 9), Hour(DAYS[2], 9))


def test_raw_event_time_filter_lists_only_that_hours_files(root: Path, listed: list[str]) -> None:
    found = run_sql(
        root,
        "SELECT count(*) AS n FROM raw.request_facts "
        "WHERE event_time >= TIMESTAMP '2026-02-17 09:10:00' "
        "AND event_time < TIMESTAMP '2026-02-17 10:00:00'",
    )
    hour_dir = layout.raw_hour_dir(root, schema.REQUEST_FACTS, Hour(DAYS[1], 9))
    assert set(listed) == {str(p) for p in layout.raw_files(hour_dir)}
    theirs = (
        duck()
        .execute(
            f"SELECT count(*) FROM {duck_sources(root)['request_facts']} "
            "WHERE event_time >= TIMESTAMPTZ '2026-02-17 09:10:00+00' "
            "AND event_time < TIMESTAMPTZ '2026-02-17 10:00:00+00'"
        )
        .fetchone()[0]
    )
    assert found["n"][0] == theirs > 0


def test_presets_scan_only_the_files_of_their_window(root: Path, listed: list[str]) -> None:
    start = datetime(2026, 2, 17, 9, 30, tzinfo=UTC)
    scan_table(root, METRICS, start=start, end=start + timedelta(hours=23))
    assert set(listed) == hour_files(root, Hour(DAYS[1], 9), Hour(DAYS[2], 8))


def test_a_window_with_no_files_is_empty_not_an_error(root: Path) -> None:
    frame = scan_table(root, METRICS, start=datetime(2030, 1, 1, tzinfo=UTC)).collect()
    assert frame.height == 0 and "bucket_start" in frame.columns


@pytest.mark.parametrize(
    ("sql", "span"),
    [
        (
            "SELECT * FROM request_metrics_minute m WHERE m.bucket_start < '2026-02-17 09:00:00'",
            Span(None, datetime(2026, 2, 17, 9, tzinfo=UTC)),
        ),
        (
            "SELECT * FROM request_metrics_minute m JOIN service_events_daily d ON true "
            "WHERE bucket_start >= '2026-02-17 09:00:00'",  # unqualified in a join: unknown
            Span(),
        ),
        (
            "SELECT * FROM (SELECT * FROM request_metrics_minute WHERE event_day <= '2026-02-17') "
            "AS s UNION ALL SELECT * FROM request_metrics_minute",
            Span(),
        ),
        (
            "WITH w AS (SELECT * FROM request_metrics_minute "
            "WHERE event_day BETWEEN '2026-02-16' AND '2026-02-17') SELECT * FROM w",
            Span(datetime(2026, 2, 16, tzinfo=UTC), datetime(2026, 2, 18, tzinfo=UTC)),
        ),
    ],
)
def test_bounds_are_read_from_the_select_that_reads_the_table(sql: str, span: Span) -> None:
    statement = check_statement(sql, tables.TABLES)
    now = datetime(2026, 2, 18, tzinfo=UTC)
    assert table_spans(statement, TIME_COLUMNS, now=now)[METRICS] == [span]


def test_each_read_of_a_table_keeps_its_own_span() -> None:
    statement = check_statement(
        "SELECT * FROM (SELECT * FROM request_metrics_minute WHERE event_day <= '2026-02-16') s "
        "UNION ALL SELECT * FROM request_metrics_minute WHERE event_day >= '2026-02-18'",
        tables.TABLES,
    )
    spans = table_spans(statement, TIME_COLUMNS, now=datetime(2026, 2, 18, tzinfo=UTC))
    assert len(spans[METRICS]) == 2
    assert Span(None, datetime(2026, 2, 17, tzinfo=UTC)) in spans[METRICS]
    assert Span(datetime(2026, 2, 18, tzinfo=UTC), None) in spans[METRICS]
