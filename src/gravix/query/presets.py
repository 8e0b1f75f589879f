"""Presets for the incident questions, answered from the warehouse's minute rows.

Percentiles are merged, not averaged: the rows' latency histograms are exploded and summed
by bucket index in polars, and the rank rule of :mod:`gravix.schema.sketch` reads each merged
histogram, so every percentile is within ``sketch.RELATIVE_ERROR`` of the exact value over
the same facts. Every window is ``[since, until)`` in whole minutes; steps are aligned to
``since``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from gravix import schema
from gravix.errors import ConfigError, QueryError
from gravix.query.tables import PARTITION_COLUMN, collect_stable, scan_table
from gravix.query.times import (
    ceil_minute,
    check_step,
    default_step,
    floor_minute,
    resolve_window,
    utc_now,
)
from gravix.schema import sketch

QUANTILES: tuple[tuple[str, float], ...] = (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99))
DEPLOY_STARTED = "deploy_started"
DEPLOY_COMPLETED = "deploy_completed"
_MS = pl.Datetime("ms", "UTC")


def percentile_note() -> str:
    return (
        f"percentiles are merged from latency histograms: each is within "
        f"±{sketch.RELATIVE_ERROR:.2%} of the exact value"
    )


@dataclass(frozen=True)
class PresetResult:
    """One preset's answer: a frame plus the window it covers and how to read it."""

    preset: str
    title: str
    frame: pl.DataFrame
    since: datetime
    until: datetime
    step_minutes: int | None = None
    relative_error: float = sketch.RELATIVE_ERROR
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "title": self.title,
            "since": self.since,
            "until": self.until,
            "step_minutes": self.step_minutes,
            "percentile_relative_error": self.relative_error,
            "notes": list(self.notes),
            "rows": self.frame.to_dicts(),
        }


# --- the shared pieces ------------------------------------------------------------------------


def _metrics(
    root: Path,
    windows: list[tuple[datetime, datetime]],
    *,
    service: str | None = None,
    method: str | None = None,
    path_template: str | None = None,
) -> pl.LazyFrame:
    """Minute rows inside any of ``windows``; the event_day filter prunes whole partitions."""
    lf = scan_table(root, schema.REQUEST_METRICS_MINUTE)
    first_day = min(start for start, _ in windows).date()
    last_day = (max(end for _, end in windows) - timedelta(milliseconds=1)).date()
    in_window = pl.lit(False)
    for start, end in windows:
        in_window = in_window | (
            (pl.col("bucket_start") >= pl.lit(start).cast(_MS))
            & (pl.col("bucket_start") < pl.lit(end).cast(_MS))
        )
    lf = lf.filter(pl.col(PARTITION_COLUMN).is_between(first_day, last_day), in_window)
    if service is not None:
        lf = lf.filter(pl.col("service") == service)
    if method is not None:
        lf = lf.filter(pl.col("method") == method.upper())
    if path_template is not None:
        lf = lf.filter(pl.col("path_template") == path_template)
    return lf


def _merged(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Per group: exact sums and the merged histogram (``idx``/``cnt`` sorted by index)."""
    totals = lf.group_by(keys).agg(
        requests=pl.col("request_count").sum(),
        errors=pl.col("error_count").sum(),
        client_errors=pl.col("client_error_count").sum(),
        latency_min_ms=pl.col("latency_min_ms").min(),
        latency_max_ms=pl.col("latency_max_ms").max(),
        zero_count=pl.col("lat_zero_count").sum(),
    )
    hist = (
        lf.select(*keys, "lat_idx", "lat_cnt")
        .explode(["lat_idx", "lat_cnt"])
        .drop_nulls("lat_idx")
        .group_by(*keys, "lat_idx")
        .agg(pl.col("lat_cnt").sum())
        .group_by(keys)
        .agg(idx=pl.col("lat_idx").sort(), cnt=pl.col("lat_cnt").sort_by("lat_idx"))
    )
    return totals.join(hist, on=keys, how="left", nulls_equal=True)


def _quantiles(frame: pl.DataFrame) -> pl.DataFrame:
    """Add p50/p95/p99 read from each row's merged histogram by the sketch's rank rule."""
    values: dict[str, list[float | None]] = {name: [] for name, _ in QUANTILES}
    for zero, idx, cnt, lo, hi in frame.select(
        "zero_count", "idx", "cnt", "latency_min_ms", "latency_max_ms"
    ).iter_rows():
        for name, q in QUANTILES:
            if not zero and not idx:
                values[name].append(None)
            else:
                values[name].append(
                    sketch.quantile_from_arrays(zero or 0, idx or [], cnt or [], q, lo, hi)
                )
    return frame.with_columns(pl.Series(n, v, dtype=pl.Float64) for n, v in values.items())


def _empty_note(frame: pl.DataFrame, service: str | None) -> tuple[str, ...]:
    if frame.height and frame["requests"].sum() > 0:
        return ()
    who = f" for service {service!r}" if service else ""
    return (f"no requests{who} in this window: check the name and --since/--until",)


def _error_rate() -> pl.Expr:
    return (
        pl.when(pl.col("requests") > 0)
        .then(pl.col("errors") / pl.col("requests"))
        .otherwise(None)
        .alias("error_rate")
    )


def _step_start(start: datetime, step: int) -> pl.Expr:
    step_ms = step * 60_000
    origin = int(start.timestamp() * 1000)
    offset = (pl.col("bucket_start").dt.epoch("ms") - origin) // step_ms * step_ms
    return (pl.lit(origin, dtype=pl.Int64) + offset).cast(_MS)


def _series(
    root: Path,
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
        lf = _metrics(
            root, [(start, end)], service=service, method=method, path_template=path_template
        )
        return _merged(lf.with_columns(_step_start(start, step).alias("bucket_start")), keys)

    merged = _quantiles(collect_stable(plan))
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
        methods = merged.select("method").unique().sort("method")
        if methods.height == 0:
            methods = pl.DataFrame(
                {"method": [method.upper() if method else None]}, schema={"method": pl.String}
            )
        grid = grid.join(methods, how="cross")
    end_ms = pl.lit(end).cast(_MS)
    out = grid.join(merged, on=keys, how="left", nulls_equal=True).with_columns(
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
        _error_rate(),
        "client_errors",
        *(name for name, _ in QUANTILES),
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
    root: Path,
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
            *_empty_note(frame, service),
        ),
    )


def top_endpoints(
    *,
    root: Path,
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
    merged = _quantiles(
        collect_stable(lambda: _merged(_metrics(root, [(start, end)], service=service), keys))
    )
    frame = (
        merged.select(
            *keys,
            "requests",
            "errors",
            _error_rate(),
            "client_errors",
            *(name for name, _ in QUANTILES),
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
        notes=(percentile_note(), *_empty_note(frame, service)),
    )


def endpoint_drilldown(
    *,
    root: Path,
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
        notes=(percentile_note(), *_empty_note(frame, service)),
    )


def _apdex_bounds(threshold: float) -> tuple[int, int]:
    """(first bucket index not surely ≤ threshold, last bucket index possibly ≤ threshold)."""
    k = sketch.bucket_index(threshold)
    surely_below = k + 1 if sketch.lower_bound(k + 1) <= threshold else k
    return surely_below, k


def apdex(
    *,
    root: Path,
    threshold_ms: float,
    service: str | None = None,
    path_template: str | None = None,
    method: str | None = None,
    by_endpoint: bool = False,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    now: datetime | None = None,
) -> PresetResult:
    """Apdex for threshold T: (satisfied ≤ T + tolerating ≤ 4T / 2) / n, from the histograms.

    A histogram bucket that straddles T (or 4T) cannot be split, so beside the estimate
    (``sketch.apdex_from_arrays``) the answer gives the exact range the true value lies in:
    ``apdex_low`` counts that bucket's requests as above T, ``apdex_high`` as within it.
    """
    if not (threshold_ms > 0 and math.isfinite(threshold_ms)):
        raise ConfigError(
            f"the Apdex threshold must be a positive number of ms, got {threshold_ms}"
        )
    start, end = resolve_window(since, until, now=now)
    keys = ["service", *(["method", "path_template"] if by_endpoint else [])]
    merged = collect_stable(
        lambda: _merged(
            _metrics(
                root, [(start, end)], service=service, method=method, path_template=path_template
            ),
            keys,
        )
    )
    t_sure, t_maybe = _apdex_bounds(threshold_ms)
    f_sure, f_maybe = _apdex_bounds(4 * threshold_ms)
    idx, cnt = pl.col("idx"), pl.col("cnt")
    counts = (
        merged.select(*keys, "idx", "cnt")
        .explode(["idx", "cnt"])
        .group_by(keys)
        .agg(
            t_sure=cnt.filter(idx < t_sure).sum(),
            t_maybe=cnt.filter(idx <= t_maybe).sum(),
            f_sure=cnt.filter(idx < f_sure).sum(),
            f_maybe=cnt.filter(idx <= f_maybe).sum(),
        )
    )
    frame = merged.join(counts, on=keys, how="left", nulls_equal=True)
    zero, total = pl.col("zero_count"), pl.col("requests")

    def within(sure: str, maybe: str, limit_ms: float) -> tuple[pl.Expr, pl.Expr]:
        # the exact extremes settle a straddling bucket when they lie on one side of the limit
        low = pl.when(pl.col("latency_max_ms") <= limit_ms).then(total)
        high = pl.when(pl.col("latency_min_ms") > limit_ms).then(0)
        return (
            low.otherwise(zero + pl.col(sure).fill_null(0)),
            high.otherwise(zero + pl.col(maybe).fill_null(0)),
        )

    t_low, t_high = within("t_sure", "t_maybe", threshold_ms)
    f_low, f_high = within("f_sure", "f_maybe", 4 * threshold_ms)
    frame = frame.with_columns(
        apdex_low=(t_low + f_low) / (2 * total),
        apdex_high=(t_high + f_high) / (2 * total),
    )
    estimates = [
        sketch.apdex_from_arrays(z or 0, i or [], c or [], threshold_ms, lo, hi)
        for z, i, c, lo, hi in frame.select(
            "zero_count", "idx", "cnt", "latency_min_ms", "latency_max_ms"
        ).iter_rows()
    ]
    frame = (
        frame.with_columns(pl.Series("apdex", estimates, dtype=pl.Float64))
        .select(*keys, "requests", "apdex", "apdex_low", "apdex_high")
        .sort(["apdex", *keys])
    )
    return PresetResult(
        "apdex",
        f"Apdex for T = {threshold_ms:g} ms (tolerating up to {4 * threshold_ms:g} ms)",
        frame,
        start,
        end,
        notes=(
            "histogram buckets are ±1.08% wide, so requests within ~2% of T or 4T cannot be "
            "classified exactly: the true Apdex lies in [apdex_low, apdex_high]",
        ),
    )


@dataclass(frozen=True)
class DeployComparison:
    """Before/after a deploy: the service's totals in each window and the endpoints whose
    error rate changed most."""

    service: str
    deploy_event_id: str
    entity_id: str | None
    message: str | None
    started: datetime
    completed: datetime | None
    before: tuple[datetime, datetime]
    after: tuple[datetime, datetime]
    summary: pl.DataFrame
    endpoints: pl.DataFrame
    relative_error: float = sketch.RELATIVE_ERROR
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "preset": "deploy",
            "service": self.service,
            "deploy": {
                "event_id": self.deploy_event_id,
                "entity_id": self.entity_id,
                "message": self.message,
                "started": self.started,
                "completed": self.completed,
            },
            "before": {"since": self.before[0], "until": self.before[1]},
            "after": {"since": self.after[0], "until": self.after[1]},
            "percentile_relative_error": self.relative_error,
            "notes": list(self.notes),
            "summary": self.summary.to_dicts(),
            "endpoints": self.endpoints.to_dicts(),
        }


def find_deploy(
    root: Path, service: str, start: datetime, end: datetime, deploy: str | None = None
) -> dict[str, Any]:
    """The latest deploy of ``service`` in ``[start, end)`` (or the one whose event or entity
    id is ``deploy``) from the raw service_events: its start and, if found, its completion."""
    events = (
        scan_table(root, schema.SERVICE_EVENTS)
        .filter(
            pl.col("service") == service,
            pl.col("event_type").is_in([DEPLOY_STARTED, DEPLOY_COMPLETED]),
            pl.col("event_time") >= pl.lit(start).cast(_MS),
            pl.col("event_time") < pl.lit(end).cast(_MS),
        )
        .select("event_id", "event_time", "event_type", "entity_id", "message")
        .unique("event_id", keep="first")
        .sort("event_time", "event_id")
        .collect()
    )
    if deploy is not None:
        wanted = events.filter((pl.col("event_id") == deploy) | (pl.col("entity_id") == deploy))
        if wanted.height == 0:
            raise QueryError(
                f"no deploy event of {service} with event or entity id {deploy!r} between "
                f"{start.isoformat()} and {end.isoformat()}",
                hint="widen --since, or leave out --deploy to take the latest deploy",
            )
        entity = wanted["entity_id"][0]
        events = events.filter(pl.col("entity_id") == entity) if entity else wanted
    started = events.filter(pl.col("event_type") == DEPLOY_STARTED)
    completed = events.filter(pl.col("event_type") == DEPLOY_COMPLETED)
    if started.height == 0 and completed.height == 0:
        raise QueryError(
            f"no deploy of {service} between {start.isoformat()} and {end.isoformat()}",
            hint="deploys are service_events with event_type deploy_started / deploy_completed; "
            "widen --since or check the service name",
        )
    if started.height:
        first = started.row(started.height - 1, named=True)
        later = completed.filter(pl.col("event_time") >= first["event_time"])
        if first["entity_id"] is not None:
            same = later.filter(pl.col("entity_id") == first["entity_id"])
            later = same if same.height else later
        done = later["event_time"][0] if later.height else None
    else:
        first = completed.row(completed.height - 1, named=True)
        done = first["event_time"]
    return {
        "event_id": first["event_id"],
        "entity_id": first["entity_id"],
        "message": first["message"],
        "started": first["event_time"],
        "completed": done,
    }


def deploy_compare(
    *,
    root: Path,
    service: str,
    deploy: str | None = None,
    window_minutes: int = 30,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    limit: int = 10,
    now: datetime | None = None,
) -> DeployComparison:
    """The ``window_minutes`` before the deploy started against those after it completed."""
    window = timedelta(minutes=check_step(window_minutes))
    now = now or utc_now()
    start, end = resolve_window(since, until, now=now, default_since="7d")
    found = find_deploy(root, service, start, end, deploy)
    began: datetime = found["started"]
    finished: datetime | None = found["completed"]
    before = (floor_minute(began) - window, floor_minute(began))
    after_start = ceil_minute(finished or began)
    after = (after_start, max(after_start, min(after_start + window, ceil_minute(now))))
    windows = [w for w in (before, after) if w[1] > w[0]]
    label = (
        pl.when(pl.col("bucket_start") < pl.lit(before[1]).cast(_MS))
        .then(pl.lit("before"))
        .otherwise(pl.lit("after"))
        .alias("window")
    )
    lf = _metrics(root, windows, service=service).with_columns(label)
    frames = pl.collect_all(
        [_merged(lf, ["window"]), _merged(lf, ["window", "method", "path_template"])]
    )
    totals, per_endpoint = (_quantiles(f) for f in frames)
    spans = pl.DataFrame(
        {
            "window": ["before", "after"],
            "since": [before[0], after[0]],
            "until": [before[1], after[1]],
        },
        schema={"window": pl.String, "since": _MS, "until": _MS},
    )
    seconds = (pl.col("until") - pl.col("since")).dt.total_milliseconds() / 1000
    summary = (
        spans.join(totals, on="window", how="left")
        .with_columns(pl.col("requests", "errors", "client_errors").fill_null(0))
        .select(
            "window",
            "since",
            "until",
            "requests",
            pl.when(seconds > 0).then(pl.col("requests") / seconds).alias("request_rate_per_s"),
            "errors",
            _error_rate(),
            "client_errors",
            *(name for name, _ in QUANTILES),
        )
    )
    ep = per_endpoint.with_columns(_error_rate()).select(
        "window", "method", "path_template", "requests", "errors", "error_rate", "p99_ms"
    )
    keys = ["method", "path_template"]
    b = ep.filter(pl.col("window") == "before").drop("window")
    a = ep.filter(pl.col("window") == "after").drop("window")
    endpoints = (
        b.join(a, on=keys, how="full", coalesce=True, suffix="_after")
        .rename(
            {
                "requests": "requests_before",
                "errors": "errors_before",
                "error_rate": "error_rate_before",
                "p99_ms": "p99_ms_before",
            }
        )
        .with_columns(
            pl.col("requests_before", "errors_before", "requests_after", "errors_after").fill_null(
                0
            )
        )
        .with_columns(
            error_rate_change=pl.col("error_rate_after").fill_null(0)
            - pl.col("error_rate_before").fill_null(0)
        )
        .sort(
            ["error_rate_change", "errors_after", *keys],
            descending=[True, True, False, False],
            nulls_last=True,
        )
        .head(limit)
    )
    notes = [percentile_note()]
    if finished is None:
        notes.append(
            "no deploy_completed event was found: the after window starts at the deploy's start"
        )
    return DeployComparison(
        service=service,
        deploy_event_id=found["event_id"],
        entity_id=found["entity_id"],
        message=found["message"],
        started=began,
        completed=finished,
        before=before,
        after=after,
        summary=summary,
        endpoints=endpoints,
        notes=tuple(notes),
    )


PRESETS: tuple[str, ...] = ("health", "top-endpoints", "endpoint", "apdex", "deploy")


def run_preset(
    *,
    root: Path,
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

    def need(**values: object) -> None:
        missing = [
            f"--{k.replace('_ms', '').replace('_', '-')}" for k, v in values.items() if v is None
        ]
        if missing:
            raise ConfigError(f"the {preset} preset needs {', '.join(missing)}")

    if preset == "health":
        return service_health(
            root=root, service=service, step_minutes=step_minutes, since=since, until=until, now=now
        )
    if preset == "top-endpoints":
        return top_endpoints(
            root=root, service=service, limit=limit, since=since, until=until, now=now
        )
    if preset == "endpoint":
        need(service=service, endpoint=endpoint)
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
        need(threshold_ms=threshold_ms)
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
        need(service=service)
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
