"""Every preset against a reference DuckDB computes from the raw facts (de-duplicated by
event_id, as the rollup counts them): counts and rates exact, merged percentiles within the
histogram bound, Apdex inside the stated range."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gravix.errors import ConfigError, QueryError
from gravix.query import apdex, deploy_compare, endpoint_drilldown, service_health, top_endpoints
from gravix.report import to_json
from gravix.schema import sketch
from test_query_support import (
    DEPLOY_COMPLETED,
    DEPLOY_STARTED,
    build_warehouse,
    deduped_facts,
    duck,
    populate,
)

SINCE = datetime(2026, 2, 16, 8, 30, tzinfo=UTC)
UNTIL = datetime(2026, 2, 16, 11, 0, tzinfo=UTC)
NOW = datetime(2026, 2, 16, 12, 0, tzinfo=UTC)
BOUND = sketch.RELATIVE_ERROR


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("presets") / "data"
    populate(data, minutes=180)
    build_warehouse(data)
    return data


def ts(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{moment.isoformat()}'"


def rank_value(q: float) -> str:
    """The exact value at the rank the sketch's rule reads: the ⌈q·n⌉-th smallest."""
    return f"list_sort(list(latency_ms))[greatest(1, ceil({q} * count(*))::BIGINT)]"


def reference(root: Path, keys: str, where: str, group: str | None = None) -> dict[Any, Any]:
    group = group or keys
    sql = (
        f"SELECT {keys}, count(*) AS requests, "
        "count(*) FILTER (WHERE status_code >= 500) AS errors, "
        "count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) AS client_errors, "
        f"{rank_value(0.5)} AS p50, {rank_value(0.95)} AS p95, {rank_value(0.99)} AS p99 "
        f"FROM {deduped_facts(root)} WHERE {where} GROUP BY {group}"
    )
    rows = duck().execute(sql).fetchall()
    width = len(rows[0]) - 6 if rows else 0
    return {r[:width] if width > 1 else r[0]: r[width:] for r in rows}


def within_bound(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= BOUND * exact + 1e-9


def check_percentiles(row: dict[str, Any], exact: tuple[Any, ...]) -> None:
    for name, value in zip(("p50_ms", "p95_ms", "p99_ms"), exact[3:], strict=True):
        assert within_bound(row[name], value), (name, row[name], value)


@pytest.mark.parametrize("step", [1, 7, 10, 60])
def test_service_health_counts_exact_and_percentiles_within_the_bound(
    root: Path, step: int
) -> None:
    result = service_health(
        root=root, service="frontend", since=SINCE, until=UNTIL, step_minutes=step, now=NOW
    )
    origin = int(SINCE.timestamp())
    bucket = (
        f"to_timestamp({origin} + floor((epoch(event_time) - {origin}) / {step * 60})"
        f" * {step * 60})"
    )
    exact = reference(
        root,
        f"{bucket} AS b",
        f"service = 'frontend' AND event_time >= {ts(SINCE)} AND event_time < {ts(UNTIL)}",
        group="b",
    )
    rows = result.frame.to_dicts()
    assert len(rows) == math.ceil((UNTIL - SINCE).total_seconds() / 60 / step)
    assert rows[0]["bucket_start"] == SINCE and rows[-1]["bucket_end"] == UNTIL
    for row in rows:
        ref = exact.pop(row["bucket_start"])
        seconds = (row["bucket_end"] - row["bucket_start"]).total_seconds()
        assert (row["requests"], row["errors"], row["client_errors"]) == ref[:3]
        assert row["request_rate_per_s"] == pytest.approx(ref[0] / seconds)
        assert row["error_rate"] == pytest.approx(ref[1] / ref[0])
        check_percentiles(row, ref)
    assert not exact  # every reference bucket was answered
    assert result.relative_error == BOUND


def test_service_health_fills_quiet_steps_with_zero_requests(root: Path) -> None:
    result = service_health(
        root=root,
        service="api",
        since="2026-02-16T10:50:00Z",
        until="2026-02-16T11:20:00Z",
        step_minutes=5,
        now=NOW,
    )
    rows = result.frame.to_dicts()
    assert [r["requests"] for r in rows][-4:] == [0, 0, 0, 0]  # the facts end at 11:00
    assert all(r["p99_ms"] is None for r in rows[-4:])


def test_relative_since_and_until_are_taken_from_now(root: Path) -> None:
    result = service_health(
        root=root, service="frontend", since="3h", until="1h", now=NOW, step_minutes=30
    )
    assert (result.since, result.until) == (NOW - timedelta(hours=3), NOW - timedelta(hours=1))
    total = (
        duck()
        .execute(
            f"SELECT count(*) FROM {deduped_facts(root)} WHERE service = 'frontend' "
            f"AND event_time >= {ts(NOW - timedelta(hours=3))} "
            f"AND event_time < {ts(NOW - timedelta(hours=1))}"
        )
        .fetchone()[0]
    )
    assert result.frame["requests"].sum() == total


def test_top_endpoints_ranks_by_errors_with_exact_counts(root: Path) -> None:
    since = datetime(2026, 2, 16, 10, 0, tzinfo=UTC)
    result = top_endpoints(root=root, since=since, until=UNTIL, limit=4, now=NOW)
    exact = reference(
        root,
        "service, method, path_template",
        f"event_time >= {ts(since)} AND event_time < {ts(UNTIL)}",
    )
    ranked = sorted(
        exact.items(), key=lambda kv: (-kv[1][1], -kv[1][1] / kv[1][0], -kv[1][0], kv[0])
    )[:4]
    rows = result.frame.to_dicts()
    assert [(r["service"], r["method"], r["path_template"]) for r in rows] == [k for k, _ in ranked]
    assert rows[0]["path_template"] == "/checkout"  # the incident's endpoint comes first
    for row, (_, ref) in zip(rows, ranked, strict=True):
        assert (row["requests"], row["errors"], row["client_errors"]) == ref[:3]
        check_percentiles(row, ref)


def test_endpoint_drilldown_splits_one_endpoint_by_method_and_step(root: Path) -> None:
    result = endpoint_drilldown(
        root=root,
        service="frontend",
        path_template="/checkout",
        since=SINCE,
        until=UNTIL,
        step_minutes=15,
        now=NOW,
    )
    origin = int(SINCE.timestamp())
    exact = reference(
        root,
        f"to_timestamp({origin} + floor((epoch(event_time) - {origin}) / 900) * 900) AS b, method",
        f"service = 'frontend' AND path_template = '/checkout' AND event_time >= {ts(SINCE)} "
        f"AND event_time < {ts(UNTIL)}",
        group="b, method",
    )
    for row in result.frame.to_dicts():
        ref = exact.pop((row["bucket_start"], row["method"]))
        assert (row["requests"], row["errors"]) == ref[:2]
        check_percentiles(row, ref)
    assert not exact


@pytest.mark.parametrize("threshold", [20.0, 50.0, 64.0, 120.5])
def test_apdex_exact_value_lies_in_the_stated_range(root: Path, threshold: float) -> None:
    result = apdex(
        root=root, threshold_ms=threshold, since=SINCE, until=UNTIL, now=NOW, by_endpoint=True
    )
    exact = dict(
        ((r[0], r[1], r[2]), r[3:])
        for r in duck()
        .execute(
            "SELECT service, method, path_template, count(*), "
            f"(count(*) FILTER (WHERE latency_ms <= {threshold}) + "
            f"count(*) FILTER (WHERE latency_ms <= {4 * threshold})) / (2 * count(*)) "
            f"FROM {deduped_facts(root)} WHERE event_time >= {ts(SINCE)} "
            f"AND event_time < {ts(UNTIL)} GROUP BY ALL"
        )
        .fetchall()
    )
    rows = result.frame.to_dicts()
    assert len(rows) == len(exact)
    for row in rows:
        n, value = exact[(row["service"], row["method"], row["path_template"])]
        assert row["requests"] == n
        assert row["apdex_low"] - 1e-12 <= value <= row["apdex_high"] + 1e-12
        assert row["apdex_low"] - 1e-12 <= row["apdex"] <= row["apdex_high"] + 1e-12
        # only requests within one bucket of T or 4T are uncertain: a small fraction here
        assert row["apdex_high"] - row["apdex_low"] < 0.05


def test_apdex_at_a_bucket_boundary_is_exact(root: Path) -> None:
    # 64 ms is a bucket's upper bound: no bucket straddles it (and 256 ms, its 4×, too)
    result = apdex(root=root, threshold_ms=64.0, since=SINCE, until=UNTIL, now=NOW)
    for row in result.frame.to_dicts():
        assert row["apdex_low"] == pytest.approx(row["apdex_high"])


def test_apdex_refuses_a_threshold_that_is_not_positive(root: Path) -> None:
    with pytest.raises(ConfigError):
        apdex(root=root, threshold_ms=0, since=SINCE, until=UNTIL, now=NOW)


def test_deploy_compare_uses_the_latest_deploy_and_shows_the_failing_endpoint(root: Path) -> None:
    result = deploy_compare(
        root=root,
        service="frontend",
        window_minutes=30,
        since="2026-02-16T00:00:00Z",
        until=UNTIL,
        now=NOW,
    )
    assert result.entity_id == "v42" and result.message == "release v42"
    assert result.started == DEPLOY_STARTED and result.completed == DEPLOY_COMPLETED
    before = (datetime(2026, 2, 16, 9, 30, tzinfo=UTC), datetime(2026, 2, 16, 10, 0, tzinfo=UTC))
    after = (datetime(2026, 2, 16, 10, 3, tzinfo=UTC), datetime(2026, 2, 16, 10, 33, tzinfo=UTC))
    assert (result.before, result.after) == (before, after)
    summary = {r["window"]: r for r in result.summary.to_dicts()}
    for name, (lo, hi) in (("before", before), ("after", after)):
        ref = reference(
            root,
            "service",
            f"service = 'frontend' AND event_time >= {ts(lo)} AND event_time < {ts(hi)}",
        )["frontend"]
        row = summary[name]
        assert (row["requests"], row["errors"], row["client_errors"]) == ref[:3]
        check_percentiles(row, ref)
    top = result.endpoints.row(0, named=True)
    assert (top["method"], top["path_template"]) == ("POST", "/checkout")
    assert top["error_rate_after"] > 0.3 > top["error_rate_before"]


def test_deploy_compare_by_entity_id_picks_that_deploy(root: Path) -> None:
    result = deploy_compare(
        root=root,
        service="frontend",
        deploy="v41",
        since="2026-02-16T00:00:00Z",
        until=UNTIL,
        now=NOW,
        window_minutes=20,
    )
    assert result.entity_id == "v41"
    assert result.completed == datetime(2026, 2, 16, 8, 31, 12, tzinfo=UTC)
    assert result.after[0] == datetime(2026, 2, 16, 8, 32, tzinfo=UTC)


def test_deploy_compare_without_a_deploy_says_so(root: Path) -> None:
    with pytest.raises(QueryError) as err:
        deploy_compare(root=root, service="api", since="2026-02-16T00:00:00Z", until=UNTIL, now=NOW)
    assert "no deploy" in err.value.message and "deploy_started" in (err.value.hint or "")


def test_a_window_without_requests_says_so(root: Path) -> None:
    result = service_health(root=root, service="frontnd", since=SINCE, until=UNTIL, now=NOW)
    assert result.frame["requests"].sum() == 0
    assert any("no requests for service 'frontnd'" in note for note in result.notes)


def test_preset_json_documents_keep_their_keys(root: Path) -> None:
    """The --json documents (read by users and the demo) come from gravix.report.to_json."""
    health = to_json(service_health(root=root, since=SINCE, until=UNTIL, step_minutes=60, now=NOW))
    assert list(health) == [
        "preset",
        "title",
        "since",
        "until",
        "step_minutes",
        "percentile_relative_error",
        "notes",
        "rows",
    ]
    assert health["since"] == "2026-02-16T08:30:00Z" and health["step_minutes"] == 60
    assert [r["bucket_start"] for r in health["rows"]][:2] == [
        "2026-02-16T08:30:00Z",
        "2026-02-16T09:30:00Z",
    ]
    deploy = to_json(
        deploy_compare(root=root, service="frontend", since="2026-02-16T00:00:00Z", now=NOW)
    )
    assert list(deploy) == [
        "preset",
        "service",
        "deploy",
        "before",
        "after",
        "percentile_relative_error",
        "notes",
        "summary",
        "endpoints",
    ]
    assert deploy["preset"] == "deploy" and deploy["deploy"]["entity_id"] == "v42"
    assert list(deploy["deploy"]) == ["event_id", "entity_id", "message", "started", "completed"]
    assert deploy["before"] == {"since": "2026-02-16T09:30:00Z", "until": "2026-02-16T10:00:00Z"}
    assert deploy["summary"][0]["window"] == "before"
    assert deploy["endpoints"][0]["path_template"] == "/checkout"
