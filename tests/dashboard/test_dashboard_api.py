"""The data API's numbers against DuckDB computing the same figures from the raw facts
(de-duplicated by event_id, as the rollup counts them): counts exact, merged percentiles
within the bound of DESIGN §6 of the exact rank value, on a night with a deploy, an error
spike, an hour and a day boundary, and a gap with no traffic at all."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard_support import (
    DEPLOY,
    END,
    GAP,
    LATE_FACT,
    START,
    duck,
    events_sql,
    facts_sql,
    incident_night,
    metrics_sql,
    parse_z,
    rank_value,
    ts,
    write_raw,
)
from gravix import schema
from gravix.dashboard import Data, running
from gravix.dashboard.params import MAX_POINTS, parse_query
from gravix.rollup import run_rollup
from gravix.schema import sketch
from gravix.settings import load_settings

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
BOUND = sketch.RELATIVE_ERROR
Z = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return incident_night(tmp_path_factory.mktemp("night") / "data")


@contextmanager
def serving(root: Path) -> Iterator[httpx.Client]:
    """A real dashboard on a free loopback port, its clock fixed at NOW."""
    settings = load_settings(data_dir=root, dashboard_port=0, environ={})
    with (
        running(settings=settings, now=lambda: NOW) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        yield http


@pytest.fixture(scope="module")
def client(root: Path) -> Iterator[httpx.Client]:
    with serving(root) as http:
        yield http


def get(client: httpx.Client, route: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/{route}", params={k: v for k, v in params.items() if v})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def within_bound(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= BOUND * exact + 1e-9


def reference_steps(
    root: Path, origin: datetime, end: datetime, step: int, where: str = "TRUE"
) -> dict[datetime, tuple[Any, ...]]:
    o = int(origin.timestamp())
    sql = (
        f"SELECT to_timestamp({o} + floor((epoch(event_time) - {o}) / {step}) * {step}) AS t, "
        "count(*), count(*) FILTER (WHERE status_code >= 500), "
        "count(*) FILTER (WHERE status_code BETWEEN 400 AND 499), "
        f"{rank_value(0.5)}, {rank_value(0.95)}, {rank_value(0.99)}, list(latency_ms) "
        f"FROM {facts_sql(root)} WHERE event_time >= {ts(origin)} AND event_time < {ts(end)} "
        f"AND {where} GROUP BY t"
    )
    return {row[0]: row[1:] for row in duck().execute(sql).fetchall()}


def check_point(point: dict[str, Any], ref: tuple[Any, ...] | None, apdex_t: float) -> None:
    if ref is None:
        assert (point["requests"], point["errors"], point["client_errors"]) == (0, 0, 0)
        assert point["p50_ms"] is point["p95_ms"] is point["p99_ms"] is None
        assert point["error_rate"] is None and point["apdex"] is None
        return
    requests, errors, client_errors, p50, p95, p99, latencies = ref
    assert (point["requests"], point["errors"], point["client_errors"]) == ref[:3]
    assert point["error_rate"] == pytest.approx(errors / requests)
    assert point["client_error_rate"] == pytest.approx(client_errors / requests)
    exact = sketch.Histogram.of(latencies)  # what merging the minute histograms must give
    for name, value, q in (("p50_ms", p50, 0.5), ("p95_ms", p95, 0.95), ("p99_ms", p99, 0.99)):
        assert within_bound(point[name], value), (point["t"], name, point[name], value)
        assert point[name] == pytest.approx(exact.quantile(q))
    assert point["apdex"] == pytest.approx(exact.apdex(apdex_t))


SERIES_CASES = [
    # (from, to, step, service, method, path)
    (START, END, "60", None, None, None),
    (START + timedelta(minutes=7), END, "300", "frontend", None, None),
    (START, END, "900", "frontend", "POST", "/checkout"),
    (START - timedelta(minutes=30), END + timedelta(minutes=30), "3600", "api", None, None),
    (START + timedelta(minutes=3), END - timedelta(minutes=1), None, None, None, None),
    (START, END, "420", None, "GET", None),
]


@pytest.mark.parametrize(("since", "until", "step", "service", "method", "path"), SERIES_CASES)
def test_series_counts_exact_and_percentiles_within_the_bound(
    root: Path,
    client: httpx.Client,
    since: datetime,
    until: datetime,
    step: str | None,
    service: str | None,
    method: str | None,
    path: str | None,
) -> None:
    answer = get(
        client,
        "series",
        **{"from": since.strftime(Z), "to": until.strftime(Z)},
        step=step,
        service=service,
        method=method,
        path=path,
        apdex_t_ms="120",
    )
    seconds = answer["step_seconds"]
    assert answer["error_bound"] == 0.0108
    if step is not None:
        assert seconds == int(step)
    origin = parse_z(answer["from"])
    # aligned down to the step (since the Unix epoch), ending at `to`
    assert origin.timestamp() % seconds == 0 and origin <= since < origin + timedelta(
        seconds=seconds
    )
    assert parse_z(answer["to"]) == until
    assert (
        len(answer["points"]) == math.ceil((until - origin).total_seconds() / seconds) <= MAX_POINTS
    )
    where = " AND ".join(
        [
            *([f"service = '{service}'"] if service else []),
            *([f"method = '{method}'"] if method else []),
            *([f"path_template = '{path}'"] if path else []),
        ]
    )
    refs = reference_steps(root, origin, until, seconds, where or "TRUE")
    for k, point in enumerate(answer["points"]):
        t = origin + timedelta(seconds=k * seconds)
        assert point["t"] == t.strftime(Z)
        check_point(point, refs.pop(t, None), 120.0)
    assert not refs, "every reference step is a point"


def test_the_gap_is_empty_steps_and_the_spike_shows_after_the_deploy(client: httpx.Client) -> None:
    answer = get(client, "series", **{"from": START.strftime(Z), "to": END.strftime(Z)}, step="300")
    by_t = {parse_z(p["t"]): p for p in answer["points"]}
    gap = [p for t, p in by_t.items() if GAP[0] <= t < GAP[1]]
    assert len(gap) == 3 and all(p["requests"] == 0 and p["p95_ms"] is None for p in gap)
    checkout = get(
        client,
        "series",
        **{"from": START.strftime(Z), "to": END.strftime(Z)},
        step="3600",
        service="frontend",
        path="/checkout",
        method="POST",
    )
    rates = [p["error_rate"] for p in checkout["points"]]
    assert rates[0] < 0.1 < 0.3 < rates[2] and rates[3] > 0.3  # 22:00 calm, 00:00 and 01:00 not
    assert DEPLOY.hour == 23


def test_summary_merges_the_whole_window(root: Path, client: httpx.Client) -> None:
    answer = get(client, "series", **{"from": START.strftime(Z), "to": END.strftime(Z)})
    (ref,) = reference_steps(root, START, END, int((END - START).total_seconds())).values()
    summary = answer["summary"]
    assert (summary["requests"], summary["errors"], summary["client_errors"]) == ref[:3]
    for name, value in zip(("p50_ms", "p95_ms", "p99_ms"), ref[3:6], strict=True):
        assert within_bound(summary[name], value)


@pytest.mark.parametrize("compare", ["1d", "7d"])
def test_compare_puts_the_previous_period_onto_this_one(client: httpx.Client, compare: str) -> None:
    shift = timedelta(days=1 if compare == "1d" else 7)
    window = {"from": START.strftime(Z), "to": END.strftime(Z)}
    later = {"from": (START + shift).strftime(Z), "to": (END + shift).strftime(Z)}
    then = get(client, "series", **window, step="600", apdex_t_ms="200")
    now = get(client, "series", **later, step="600", apdex_t_ms="200", compare=compare)
    assert now["compare"] == compare
    assert all(p["requests"] == 0 for p in now["points"])  # nothing was served a day later
    assert len(now["previous"]) == len(now["points"]) == len(then["points"])
    for previous, current, original in zip(
        now["previous"], now["points"], then["points"], strict=True
    ):
        assert previous["t"] == current["t"] == (parse_z(original["t"]) + shift).strftime(Z)
        assert {k: v for k, v in previous.items() if k != "t"} == {
            k: v for k, v in original.items() if k != "t"
        }


def test_default_step_keeps_any_window_within_300_points(client: httpx.Client) -> None:
    for hours in (0.25, 3, 24, 24 * 7, 24 * 30, 24 * 90):
        since = END - timedelta(hours=hours)
        answer = get(client, "series", **{"from": since.strftime(Z), "to": END.strftime(Z)})
        assert len(answer["points"]) <= MAX_POINTS == 300
        assert answer["step_seconds"] % 60 == 0
    steps = {}
    for hours in (1, 24, 48, 24 * 7, 24 * 30):  # the steps a user sees by default
        since = END - timedelta(hours=hours)
        answer = get(client, "series", **{"from": since.strftime(Z), "to": END.strftime(Z)})
        steps[hours] = answer["step_seconds"]
    assert steps == {1: 60, 24: 300, 48: 600, 24 * 7: 3600, 24 * 30: 10800}


def endpoint_reference(
    root: Path, since: datetime, until: datetime
) -> dict[tuple[str, str, str], Any]:
    sql = (
        "SELECT service, method, path_template, count(*), "
        "count(*) FILTER (WHERE status_code >= 500), "
        "count(*) FILTER (WHERE status_code BETWEEN 400 AND 499), "
        f"{rank_value(0.5)}, {rank_value(0.95)}, {rank_value(0.99)} FROM {facts_sql(root)} "
        f"WHERE event_time >= {ts(since)} AND event_time < {ts(until)} GROUP BY ALL"
    )
    return {row[:3]: row[3:] for row in duck().execute(sql).fetchall()}


def assert_endpoint_row(row: dict[str, Any], ref: dict[tuple[str, str, str], Any]) -> None:
    """Counts exactly the reference's, percentiles within the bound of its exact values."""
    requests, errors, client_errors, p50, p95, p99 = ref[
        row["service"], row["method"], row["path_template"]
    ]
    assert (row["requests"], row["errors"], row["client_errors"]) == (
        requests,
        errors,
        client_errors,
    )
    assert row["error_rate"] == pytest.approx(errors / requests)
    for name, value in (("p50_ms", p50), ("p95_ms", p95), ("p99_ms", p99)):
        assert within_bound(row[name], value)


def test_endpoints_counts_exact_and_percentiles_within_the_bound(
    root: Path, client: httpx.Client
) -> None:
    since, until = START + timedelta(minutes=40), END - timedelta(minutes=13)
    answer = get(
        client, "endpoints", **{"from": since.strftime(Z), "to": until.strftime(Z)}, limit="100"
    )
    ref = endpoint_reference(root, since, until)
    assert len(answer["rows"]) == len(ref) == 7
    for row in answer["rows"]:
        assert_endpoint_row(row, ref)
    # ranked by server errors, then requests, then name
    expected = sorted(ref, key=lambda k: (-ref[k][1], -ref[k][0], k))
    assert [(r["service"], r["method"], r["path_template"]) for r in answer["rows"]] == expected
    assert answer["rows"][0]["path_template"] == "/checkout"


@pytest.mark.parametrize(
    "sort",
    [
        "errors",
        "requests",
        "error_rate",
        "p95_ms",
        "client_errors",
        "p99_ms",
        "path_template",
        "service",
    ],
)
@pytest.mark.parametrize("order", ["", "asc", "desc"])
def test_endpoints_sort_by_each_column(client: httpx.Client, sort: str, order: str) -> None:
    window = {"from": START.strftime(Z), "to": END.strftime(Z)}
    rows = get(client, "endpoints", **window, sort=sort, order=order, limit="3")["rows"]
    every = get(client, "endpoints", **window, sort=sort, order=order, limit="100")["rows"]
    descending = order == "desc" or (not order and sort not in ("path_template", "service"))
    values = [r[sort] for r in every]
    assert values == sorted(values, reverse=descending)
    assert rows == every[:3]


@pytest.mark.parametrize("sort", ["errors", "requests", "error_rate", "client_errors"])
@pytest.mark.parametrize("cache_size", [0, 64])
def test_top_endpoints_by_a_count_are_the_references_first_rows(
    root: Path, sort: str, cache_size: int
) -> None:
    """Ranked by a count, only the shown rows' histograms are added: the first answer of a
    fresh process (one read of the window) and the answer from cached pieces are both the
    reference's first rows, percentiles included."""
    since, until = START + timedelta(minutes=40), END - timedelta(minutes=13)
    ref = endpoint_reference(root, since, until)
    column = {"requests": 0, "errors": 1, "client_errors": 2}

    def value(key: tuple[str, str, str]) -> float:
        counts = ref[key]
        return counts[1] / counts[0] if sort == "error_rate" else counts[column[sort]]

    expected = sorted(ref, key=lambda k: (-value(k), -ref[k][1], -ref[k][0], k))[:3]
    data = Data(root, cache_size=cache_size)
    params = {"from": since.strftime(Z), "to": until.strftime(Z), "sort": sort, "limit": "3"}
    for _ in range(2):  # the second answer reads the pieces the first one left
        rows = data.endpoints(parse_query(params, now=NOW))["rows"]
        assert [(r["service"], r["method"], r["path_template"]) for r in rows] == expected
        for row in rows:
            assert_endpoint_row(row, ref)
        data.pieces.wait_for_fill()


def test_endpoints_filters_by_service(client: httpx.Client) -> None:
    window = {"from": START.strftime(Z), "to": END.strftime(Z)}
    rows = get(client, "endpoints", **window, service="api")["rows"]
    assert {r["service"] for r in rows} == {"api"} and len(rows) == 3


@pytest.mark.parametrize("service", [None, "frontend", "api"])
def test_events_are_the_raw_service_events_with_exact_times(
    root: Path, client: httpx.Client, service: str | None
) -> None:
    since, until = START + timedelta(minutes=10), END
    answer = get(
        client, "events", **{"from": since.strftime(Z), "to": until.strftime(Z)}, service=service
    )
    where = f" AND service = '{service}'" if service else ""
    ref = (
        duck()
        .execute(
            "SELECT strftime(event_time, '%Y-%m-%dT%H:%M:%S.%gZ'), service, event_type, entity_id "
            f"FROM {events_sql(root)} WHERE event_time >= {ts(since)} AND event_time < {ts(until)}"
            f"{where} ORDER BY event_time"
        )
        .fetchall()
    )
    got = [(r["event_time"], r["service"], r["event_type"], r["entity_id"]) for r in answer["rows"]]
    assert got == [tuple(r) for r in ref]
    if service != "api":
        deploy = next(
            r
            for r in answer["rows"]
            if r["event_type"] == "deploy_completed" and r["service"] == "frontend"
        )
        assert deploy["event_time"] == "2026-03-01T23:50:00.250Z" and deploy["entity_id"] == "v7"


@pytest.mark.parametrize(("step", "service"), [("300", None), ("1800", "frontend"), ("60", "api")])
def test_heatmap_counts_equal_the_raw_latencies_bucketed(
    root: Path, client: httpx.Client, step: str, service: str | None
) -> None:
    answer = get(
        client,
        "heatmap",
        **{"from": START.strftime(Z), "to": END.strftime(Z)},
        step=step,
        service=service,
    )
    bounds = answer["bucket_bounds_ms"]
    assert bounds[0] == 0.0 and all(a < b for a, b in itertools.pairwise(bounds))
    low = round(2 * math.log2(bounds[1]))  # display buckets are √2 wide: bound k is 2^(j/2)
    assert all(b == pytest.approx(2 ** ((low + k) / 2)) for k, b in enumerate(bounds[1:]))
    seconds = int(step)
    o = int(START.timestamp())
    where = f" AND service = '{service}'" if service else ""
    rows = (
        duck()
        .execute(
            f"SELECT to_timestamp({o} + floor((epoch(event_time) - {o}) / {seconds}) * {seconds})"
            " AS t, "
            "CASE WHEN latency_ms = 0 THEN NULL "
            "ELSE floor((ceil(log2(latency_ms) * 32) - 1) / 16)::BIGINT END AS j, count(*) "
            f"FROM {facts_sql(root)} WHERE event_time >= {ts(START)} AND event_time < {ts(END)}"
            f"{where} GROUP BY ALL"
        )
        .fetchall()
    )
    expected: dict[str, list[int]] = defaultdict(lambda: [0] * (len(bounds) - 1))
    for t, j, n in rows:
        expected[t.strftime(Z)][0 if j is None else j - low + 1] += n
    assert len(answer["points"]) == (END - START).total_seconds() / seconds
    for point in answer["points"]:
        assert point["counts"] == expected.pop(point["t"], [0] * (len(bounds) - 1)), point["t"]
    assert not expected


def test_services_and_data_through_come_from_the_warehouse(
    root: Path, client: httpx.Client
) -> None:
    answer = get(client, "services")
    (last,) = duck().execute(f"SELECT max(bucket_start) FROM {metrics_sql(root)}").fetchone()
    names = (
        duck().execute(f"SELECT DISTINCT service FROM {metrics_sql(root)} ORDER BY 1").fetchall()
    )
    assert answer["services"] == [n for (n,) in names] == ["api", "frontend"]
    assert answer["data_through"] == (last + timedelta(minutes=1)).strftime(Z)
    series = get(client, "series", **{"from": START.strftime(Z), "to": END.strftime(Z)})
    assert series["data_through"] == answer["data_through"] == END.strftime(Z)


def test_an_empty_root_answers_empty_not_an_error(tmp_path: Path) -> None:
    with serving(tmp_path / "nothing") as client:
        check_empty(client)


def check_empty(client: httpx.Client) -> None:
    assert get(client, "services") == {"services": [], "data_through": None}
    series = get(client, "series")
    assert series["data_through"] is None and len(series["points"]) == 180
    assert all(p["requests"] == 0 for p in series["points"])
    assert get(client, "endpoints")["rows"] == []
    assert get(client, "events")["rows"] == []
    assert get(client, "heatmap")["bucket_bounds_ms"] == []


def test_default_window_is_the_last_three_hours(client: httpx.Client) -> None:
    answer = get(client, "series", step="60")
    assert parse_z(answer["to"]) == NOW and parse_z(answer["from"]) == NOW - timedelta(hours=3)


@pytest.mark.parametrize("step", ["3600", "420"])
def test_an_hour_rebuilt_with_a_late_fact_is_read_again(tmp_path: Path, step: str) -> None:
    """Answers are assembled from per-day and per-hour pieces kept in memory: a rollup that
    replaces an hour's file (here: one late fact) must show in the next answer, in the one
    step that holds it, also when steps straddle the pieces' hours (7 minutes)."""
    root = incident_night(tmp_path / "data")
    window = {"from": START.strftime(Z), "to": END.strftime(Z), "step": step}
    with serving(root) as client:
        before = {p["t"]: p["requests"] for p in get(client, "series", **window)["points"]}
        again = {p["t"]: p["requests"] for p in get(client, "series", **window)["points"]}
        assert again == before
        write_raw(root, schema.REQUEST_FACTS, [LATE_FACT])
        run_rollup(root=root)
        after = {p["t"]: p["requests"] for p in get(client, "series", **window)["points"]}
        changed = {t for t in after if after[t] != before[t]}
        moment = parse_z(LATE_FACT["event_time"])
        held = [
            t for t in after if parse_z(t) <= moment < parse_z(t) + timedelta(seconds=int(step))
        ]
        assert changed == set(held) and len(held) == 1
        assert after[held[0]] == before[held[0]] + 1
        rows = get(client, "endpoints", **{k: v for k, v in window.items() if k != "step"})
        assert sum(r["requests"] for r in rows["rows"]) == sum(after.values())
