"""Readers over whole hours of ``request_metrics_hour``: the presets' and the data API's
answers are the answers the minute table alone gives, and DuckDB's over the raw facts.

Each data root is compared with a copy whose hour table is removed: there every reader
falls back to the minute rows, as it does for an hour the hour table does not hold yet.
Windows start and end inside hours, so every answer mixes hour rows and edge minutes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dashboard_support import END, START, duck, facts_sql, incident_night, ts
from gravix import schema
from gravix.dashboard.api import Data
from gravix.dashboard.params import parse_query
from gravix.query import run_preset
from gravix.query.merge import Steps, metrics
from gravix.storage import layout
from gravix.storage.layout import Hour

HOURS = schema.REQUEST_METRICS_HOUR
MINUTES = schema.REQUEST_METRICS_MINUTE
# Not on hours: 22:17 → 01:43 holds the whole hours 23:00 and 00:00, and minutes at both ends.
SINCE = START + timedelta(minutes=17)
UNTIL = END - timedelta(minutes=17)
NOW = END + timedelta(minutes=5)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The incident night rolled up, and a copy of it without the hour table."""
    root = incident_night(tmp_path_factory.mktemp("night") / "data")
    minutes_only = tmp_path_factory.mktemp("minutes") / "data"
    shutil.copytree(root, minutes_only)
    shutil.rmtree(layout.warehouse_table_dir(minutes_only, HOURS))
    yield root, minutes_only


def raw_counts(root: Path, start: datetime, end: datetime, step: timedelta) -> dict[Any, int]:
    """Requests per step from ``start``, as DuckDB counts the raw facts."""
    seconds = int(step.total_seconds())
    rows = (
        duck()
        .execute(f"""
        SELECT e - (e - {int(start.timestamp())}) % {seconds} AS t, count(*)
        FROM (SELECT floor(epoch(event_time))::BIGINT AS e FROM {facts_sql(root)}
              WHERE event_time >= {ts(start)} AND event_time < {ts(end)})
        GROUP BY ALL
    """)
        .fetchall()
    )
    return {int(t): int(n) for t, n in rows}


def test_rows_of_a_window_are_hour_rows_inside_and_minute_rows_at_the_edges(
    roots: tuple[Path, Path],
) -> None:
    root, _ = roots
    got = metrics(root, [(SINCE, UNTIL)], steps=Steps()).collect()
    con = duck()
    hour_glob = layout.warehouse_glob(root, HOURS)
    minute_glob = layout.warehouse_glob(root, MINUTES)
    whole = (START + timedelta(hours=1), END - timedelta(hours=1))
    expected = con.execute(f"""
        SELECT (SELECT count(*) FROM read_parquet('{hour_glob}')
                WHERE bucket_start >= {ts(whole[0])} AND bucket_start < {ts(whole[1])})
             + (SELECT count(*) FROM read_parquet('{minute_glob}')
                WHERE (bucket_start >= {ts(SINCE)} AND bucket_start < {ts(whole[0])})
                   OR (bucket_start >= {ts(whole[1])} AND bucket_start < {ts(UNTIL)}))
    """).fetchone()
    assert expected is not None and got.height == expected[0]
    minute_rows = metrics(root, [(SINCE, UNTIL)]).collect()  # no steps: minutes only
    assert minute_rows.height > got.height
    assert got["request_count"].sum() == minute_rows["request_count"].sum()


@pytest.mark.parametrize(
    ("since", "step_minutes"),
    [(START, 60), (SINCE, 120), (SINCE, 60), (SINCE, 15)],
)
def test_health_through_hour_rows_is_the_minute_only_answer(
    roots: tuple[Path, Path], since: datetime, step_minutes: int
) -> None:
    root, minutes_only = roots
    answers = [
        run_preset(
            root=r,
            preset="health",
            since=since,
            until=UNTIL,
            step_minutes=step_minutes,
            now=NOW,
        ).frame
        for r in (root, minutes_only)
    ]
    assert answers[0].equals(answers[1])
    step = timedelta(minutes=step_minutes)
    counts = raw_counts(root, since, UNTIL, step)
    got = {int(t.timestamp()): n for t, n in answers[0].select("bucket_start", "requests").rows()}
    assert {t: n for t, n in got.items() if n} == counts


@pytest.mark.parametrize("preset", ["top-endpoints", "apdex"])
def test_window_presets_through_hour_rows_are_the_minute_only_answer(
    roots: tuple[Path, Path], preset: str
) -> None:
    root, minutes_only = roots
    frames = [
        run_preset(
            root=r, preset=preset, since=SINCE, until=UNTIL, threshold_ms=50.0, limit=50, now=NOW
        ).frame
        for r in (root, minutes_only)
    ]
    assert frames[0].equals(frames[1])
    total = (
        duck()
        .execute(
            f"SELECT count(*) FROM {facts_sql(root)} "
            f"WHERE event_time >= {ts(SINCE)} AND event_time < {ts(UNTIL)}"
        )
        .fetchone()
    )
    assert total is not None and frames[0]["requests"].sum() == total[0]


def _query(step: int | None, **extra: str) -> Any:
    params = {"from": SINCE.isoformat(), "to": UNTIL.isoformat(), **extra}
    if step is not None:
        params["step"] = str(step)
    return parse_query(params, now=NOW)


@pytest.mark.parametrize("cache_size", [0, 64])
def test_data_api_through_hour_rows_is_the_minute_only_answer(
    roots: tuple[Path, Path], cache_size: int
) -> None:
    root, minutes_only = roots
    apis = [Data(r, cache_size=cache_size) for r in (root, minutes_only)]
    for _ in range(2):  # cold, then from the pieces kept
        for step in (3600, 7200, 900, None):
            query = _query(step, apdex_t_ms="50")
            series = [api.series(query) for api in apis]
            assert series[0] == series[1]
            heat = [api.heatmap(query) for api in apis]
            assert heat[0] == heat[1]
        for sort in ("errors", "p95_ms", "requests"):
            query = _query(None, sort=sort, limit="50")
            rows = [api.endpoints(query)["rows"] for api in apis]
            assert rows[0] == rows[1]
    hourly = apis[0].series(_query(3600))
    origin = datetime.fromisoformat(hourly["from"].replace("Z", "+00:00"))
    assert origin == SINCE.replace(minute=0)  # aligned to the step: whole hours
    counts = raw_counts(root, origin, UNTIL, timedelta(hours=1))
    got = {
        int(datetime.fromisoformat(p["t"].replace("Z", "+00:00")).timestamp()): p["requests"]
        for p in hourly["points"]
    }
    assert {t: n for t, n in got.items() if n} == counts  # points from `from` aligned down


def test_an_hour_the_hour_table_lacks_is_read_from_the_minutes(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    root, minutes_only = roots
    partial = tmp_path / "data"
    shutil.copytree(root, partial)
    layout.warehouse_hour_file(partial, HOURS, Hour.of(START + timedelta(hours=1))).unlink()
    frames = [
        run_preset(root=r, preset="top-endpoints", since=START, until=END, limit=50, now=NOW).frame
        for r in (partial, minutes_only)
    ]
    assert frames[0].equals(frames[1])
    assert (
        frames[0]["requests"].sum()
        == pl.concat([metrics(minutes_only, [(START, END)]).collect()])["request_count"].sum()
    )
