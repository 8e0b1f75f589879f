"""Presets for the incident questions, answered from the warehouse's rows (whole hours from
``request_metrics_hour`` where a step holds them, the rest from the minutes): service
health over time, top failing endpoints, one endpoint's drill-down, and :func:`run_preset`,
which also reaches Apdex (:mod:`gravix.query.apdex`) and the deploy comparison
(:mod:`gravix.query.deploy`). Percentiles are merged from the histograms
(:mod:`gravix.query.merge`). Every window is ``[since, until)`` in whole minutes; steps are
aligned to ``since``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from gravix.errors import ConfigError
from gravix.query.apdex import apdex
from gravix.query.deploy import DeployComparison, deploy_compare
from gravix.query.merge import (
    MS,
    QUANTILE_NAMES,
    Steps,
    empty_note,
    error_rate,
    merged,
    metrics,
    percentile_note,
    with_quantiles,
)
from gravix.query.result import PresetResult
from gravix.query.source import Root
from gravix.query.tables import collect_stable, warehouse_files
from gravix.query.times import check_step, default_step, resolve_window

__all__ = [
    "PRESETS",
    "PresetResult",
    "endpoint_drilldown",
    "run_preset",
    "service_health",
    "top_endpoints",
]


def _step_start(start: datetime, step: int) -> pl.Expr:
    step_ms = step * 60_000
    origin = int(start.timestamp() * 1000)
    offset = (pl.col("bucket_start").dt.epoch("ms") - origin) // step_ms * step_ms
    return (pl.lit(origin, dtype=pl.Int64) + offset).cast(MS)


def _series(
    root: Root,
    start: datetime,
    end: datetime,
    step: int,
    *,
    service: str | None,
    method: str | None = None,
    path_template: str | None = None,
    by_method: bool = False,
) -> pl.DataFrame:
    keys = ["bucket_start", *(["method"] if by_method else [])]

    def plan() -> pl.LazyFrame:
        lf = metrics(
            root,
            [(start, end)],
            service=service,
            method=method,
            path_template=path_template,
            steps=Steps(int(start.timestamp() * 1000), step * 60_000),
        )
        return merged(lf.with_columns(_step_start(start, step).alias("bucket_start")), keys)

    groups = with_quantiles(collect_stable(plan, suspects=lambda: warehouse_files(root)))
    grid = pl.DataFrame(
        {
            "bucket_start": pl.datetime_range(
                start,
                end,
                timedelta(minutes=step),
                closed="left",
                time_unit="ms",
                time_zone="UTC",
                eager=True,
            )
        }
    )
    if by_method:
        methods = groups.select("method").unique().sort("method")
        if methods.height == 0:
            methods = pl.DataFrame(
                {"method": [method.upper() if method else None]}, schema={"method": pl.String}
            )
        grid = grid.join(methods, how="cross")
    end_ms = pl.lit(end).cast(MS)
    out = grid.join(groups, on=keys, how="left", nulls_equal=True).with_columns(
        pl.col("requests", "errors", "client_errors").fill_null(0),
        bucket_end=pl.min_horizontal(pl.col("bucket_start") + pl.duration(minutes=step), end_ms),
    )
    seconds = (pl.col("bucket_end") - pl.col("bucket_start")).dt.total_milliseconds() / 1000
    return out.select(
        "bucket_start",
        "bucket_end",
        *(["method"] if by_method else []),
        "requests",
        (pl.col("requests") / seconds).alias("request_rate_per_s"),
        "errors",
        error_rate(),
        "client_errors",
        *QUANTILE_NAMES,
    ).sort(keys)


def _window_and_step(
    since: str | datetime | None,
    until: str | datetime | None,
    step_minutes: int | None,
    now: datetime | None,
) -> tuple[datetime, datetime, int]:
    start, end = resolve_window(since, until, now=now)
    step = default_step(start, end) if step_minutes is None else check_step(step_minutes)
    return start, end, step


# --- presets ------------------------------------------------------------------------------------


def service_health(
    *,
    root: Root,
    service: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    step_minutes: int | None = None,
    now: datetime | None = None,
) -> PresetResult:
    """Request rate, error rate and merged p50/p95/p99 of one service (or all) per step."""
    start, end, step = _window_and_step(since, until, step_minutes, now)
    frame = _series(root, start, end, step, service=service)
    who = service or "all services"
    return PresetResult(
        "health",
        f"Health of {who}, {step}-minute steps",
        frame,
        start,
        end,
        step,
        notes=(
            percentile_note(),
            "error_rate counts status ≥ 500; client_errors are 4xx",
            *empty_note(frame, service),
        ),
    )


def top_endpoints(
    *,
    root: Root,
    service: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    limit: int = 10,
    now: datetime | None = None,
) -> PresetResult:
    """Endpoints ranked by server errors (then error rate, then traffic) over the window."""
    if limit < 1:
        raise ConfigError(f"--limit must be ≥ 1, got {limit}")
    start, end = resolve_window(since, until, now=now)
    keys = ["service", "method", "path_template"]
    groups = with_quantiles(
        collect_stable(
            lambda: merged(metrics(root, [(start, end)], service=service, steps=Steps()), keys),
            suspects=lambda: warehouse_files(root),
        )
    )
    frame = (
        groups.select(
            *keys,
            "requests",
            "errors",
            error_rate(),
            "client_errors",
            *QUANTILE_NAMES,
        )
        .sort(
            ["errors", "error_rate", "requests", *keys],
            descending=[True, True, True, False, False, False],
            nulls_last=True,
        )
        .head(limit)
    )
    who = service or "all services"
    return PresetResult(
        "top-endpoints",
        f"Top failing endpoints of {who}",
        frame,
        start,
        end,
        notes=(percentile_note(), *empty_note(frame, service)),
    )


def endpoint_drilldown(
    *,
    root: Root,
    service: str,
    path_template: str,
    method: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    step_minutes: int | None = None,
    now: datetime | None = None,
) -> PresetResult:
    """One endpoint per step and per method: traffic, errors and merged percentiles."""
    start, end, step = _window_and_step(since, until, step_minutes, now)
    frame = _series(
        root,
        start,
        end,
        step,
        service=service,
        method=method,
        path_template=path_template,
        by_method=True,
    )
    name = f"{method.upper() + ' ' if method else ''}{path_template}"
    return PresetResult(
        "endpoint",
        f"{service} {name}, {step}-minute steps",
        frame,
        start,
        end,
        step,
        notes=(percentile_note(), *empty_note(frame, service)),
    )


PRESETS: tuple[str, ...] = ("health", "top-endpoints", "endpoint", "apdex", "deploy")


def _need(preset: str, **values: object) -> None:
    missing = [
        f"--{k.replace('_ms', '').replace('_', '-')}" for k, v in values.items() if v is None
    ]
    if missing:
        raise ConfigError(f"the {preset} preset needs {', '.join(missing)}")


def run_preset(
    *,
    root: Root,
    preset: str,
    service: str | None = None,
    endpoint: str | None = None,
    method: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    step_minutes: int | None = None,
    threshold_ms: float | None = None,
    by_endpoint: bool = False,
    deploy: str | None = None,
    window_minutes: int = 30,
    limit: int = 10,
    now: datetime | None = None,
) -> PresetResult | DeployComparison:
    """One preset by name, with the options the command line gives (ConfigError when one
    it needs is missing)."""
    if preset == "health":
        return service_health(
            root=root, service=service, step_minutes=step_minutes, since=since, until=until, now=now
        )
    if preset == "top-endpoints":
        return top_endpoints(
            root=root, service=service, limit=limit, since=since, until=until, now=now
        )
    if preset == "endpoint":
        _need(preset, service=service, endpoint=endpoint)
        assert service is not None and endpoint is not None
        return endpoint_drilldown(
            root=root,
            service=service,
            path_template=endpoint,
            method=method,
            step_minutes=step_minutes,
            since=since,
            until=until,
            now=now,
        )
    if preset == "apdex":
        _need(preset, threshold_ms=threshold_ms)
        assert threshold_ms is not None
        return apdex(
            root=root,
            threshold_ms=threshold_ms,
            service=service,
            path_template=endpoint,
            method=method,
            by_endpoint=by_endpoint,
            since=since,
            until=until,
            now=now,
        )
    if preset == "deploy":
        _need(preset, service=service)
        assert service is not None
        return deploy_compare(
            root=root,
            service=service,
            deploy=deploy,
            window_minutes=window_minutes,
            limit=limit,
            since=since,
            until=until,
            now=now,
        )
    raise ConfigError(f"unknown preset {preset!r}", hint=f"use one of: {', '.join(PRESETS)}")
