"""Before and after a deploy taken from ``service_events``: the service's totals in each
window and the endpoints whose error rate changed most."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from gravix import schema
from gravix.errors import QueryError
from gravix.query.merge import (
    MS,
    QUANTILE_NAMES,
    Steps,
    error_rate,
    merged,
    metrics,
    percentile_note,
)
from gravix.query.merge import with_quantiles as quantiles
from gravix.query.source import Root
from gravix.query.tables import READ_ERRORS, read_failure, scan_table, warehouse_files
from gravix.query.times import MINUTE, check_step, resolve_window
from gravix.schema import sketch
from gravix.units import ceil_to, floor_to

DEPLOY_STARTED = "deploy_started"
DEPLOY_COMPLETED = "deploy_completed"
Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class DeployEvent:
    """A deploy as ``service_events`` tell it: its start and, if seen, its completion."""

    event_id: str
    entity_id: str | None
    message: str | None
    started: datetime
    completed: datetime | None


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime


@dataclass(frozen=True)
class DeployComparison:
    """Before/after a deploy: the service's totals in each window and the endpoints whose
    error rate changed most. Rendered as JSON by :func:`gravix.report.to_json`."""

    preset: str = field(default="deploy", init=False)
    service: str
    deploy: DeployEvent
    before_period: Period = field(init=False, metadata={"json": "before"})
    after_period: Period = field(init=False, metadata={"json": "after"})
    before: Window = field(metadata={"json": False})
    after: Window = field(metadata={"json": False})
    summary: pl.DataFrame = field(metadata={"json": False})
    endpoints: pl.DataFrame = field(metadata={"json": False})
    relative_error: float = field(
        default=sketch.RELATIVE_ERROR, metadata={"json": "percentile_relative_error"}
    )
    notes: tuple[str, ...] = ()
    summary_rows: list[dict[str, Any]] = field(init=False, metadata={"json": "summary"})
    endpoint_rows: list[dict[str, Any]] = field(init=False, metadata={"json": "endpoints"})

    def __post_init__(self) -> None:
        # the JSON document's shape: windows as {since, until}, frames as rows
        object.__setattr__(self, "before_period", Period(*self.before))
        object.__setattr__(self, "after_period", Period(*self.after))
        object.__setattr__(self, "summary_rows", self.summary.to_dicts())
        object.__setattr__(self, "endpoint_rows", self.endpoints.to_dicts())

    @property
    def deploy_event_id(self) -> str:
        return self.deploy.event_id

    @property
    def entity_id(self) -> str | None:
        return self.deploy.entity_id

    @property
    def message(self) -> str | None:
        return self.deploy.message

    @property
    def started(self) -> datetime:
        return self.deploy.started

    @property
    def completed(self) -> datetime | None:
        return self.deploy.completed


def find_deploy(
    root: Root, service: str, start: datetime, end: datetime, deploy: str | None = None
) -> DeployEvent:
    """The latest deploy of ``service`` in ``[start, end)`` (or the one whose event or entity
    id is ``deploy``) from the raw service_events: its start and, if found, its completion."""
    events = (
        scan_table(root, schema.SERVICE_EVENTS, start=start, end=end)
        .filter(
            pl.col("service") == service,
            pl.col("event_type").is_in([DEPLOY_STARTED, DEPLOY_COMPLETED]),
            pl.col("event_time") >= pl.lit(start).cast(MS),
            pl.col("event_time") < pl.lit(end).cast(MS),
        )
        .select("event_id", "event_time", "event_type", "entity_id", "message")
        .unique("event_id", keep="first")
        .sort("event_time", "event_id")
        .collect()
    )
    if deploy is not None:
        events = _of_one_deploy(events, service, start, end, deploy)
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
    return DeployEvent(
        first["event_id"], first["entity_id"], first["message"], first["event_time"], done
    )


def _of_one_deploy(
    events: pl.DataFrame, service: str, start: datetime, end: datetime, deploy: str
) -> pl.DataFrame:
    """The events of the deploy whose event or entity id is ``deploy``."""
    wanted = events.filter((pl.col("event_id") == deploy) | (pl.col("entity_id") == deploy))
    if wanted.height == 0:
        raise QueryError(
            f"no deploy event of {service} with event or entity id {deploy!r} between "
            f"{start.isoformat()} and {end.isoformat()}",
            hint="widen --since, or leave out --deploy to take the latest deploy",
        )
    entity = wanted["entity_id"][0]
    return events.filter(pl.col("entity_id") == entity) if entity else wanted


def deploy_compare(
    *,
    root: Root,
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
    now = now or datetime.now(UTC)
    start, end = resolve_window(since, until, now=now, default_since="7d")
    found = find_deploy(root, service, start, end, deploy)
    began = floor_to(found.started, MINUTE)
    before = (began - window, began)
    after_start = ceil_to(found.completed or found.started, MINUTE)
    after = (after_start, max(after_start, min(after_start + window, ceil_to(now, MINUTE))))
    label = (
        pl.when(pl.col("bucket_start") < pl.lit(before[1]).cast(MS))
        .then(pl.lit("before"))
        .otherwise(pl.lit("after"))
        .alias("window")
    )
    windows = [w for w in (before, after) if w[1] > w[0]]
    lf = metrics(root, windows, service=service, steps=Steps()).with_columns(label)
    try:
        frames = pl.collect_all(
            [merged(lf, ["window"]), merged(lf, ["window", "method", "path_template"])]
        )
    except READ_ERRORS as exc:
        raise read_failure(exc, warehouse_files(root)) from None
    totals, per_endpoint = (quantiles(f) for f in frames)
    notes = [percentile_note()]
    if found.completed is None:
        notes.append(
            "no deploy_completed event was found: the after window starts at the deploy's start"
        )
    return DeployComparison(
        service=service,
        deploy=found,
        before=before,
        after=after,
        summary=_summary(totals, before, after),
        endpoints=_endpoint_changes(per_endpoint, limit),
        notes=tuple(notes),
    )


def _summary(totals: pl.DataFrame, before: Window, after: Window) -> pl.DataFrame:
    """One row per window: its span, traffic, errors and merged percentiles."""
    spans = pl.DataFrame(
        {
            "window": ["before", "after"],
            "since": [before[0], after[0]],
            "until": [before[1], after[1]],
        },
        schema={"window": pl.String, "since": MS, "until": MS},
    )
    seconds = (pl.col("until") - pl.col("since")).dt.total_milliseconds() / 1000
    return (
        spans.join(totals, on="window", how="left")
        .with_columns(pl.col("requests", "errors", "client_errors").fill_null(0))
        .select(
            "window",
            "since",
            "until",
            "requests",
            pl.when(seconds > 0).then(pl.col("requests") / seconds).alias("request_rate_per_s"),
            "errors",
            error_rate(),
            "client_errors",
            *QUANTILE_NAMES,
        )
    )


def _endpoint_changes(per_endpoint: pl.DataFrame, limit: int) -> pl.DataFrame:
    """Endpoints side by side before and after, the largest rise in error rate first."""
    ep = per_endpoint.with_columns(error_rate()).select(
        "window", "method", "path_template", "requests", "errors", "error_rate", "p99_ms"
    )
    keys = ["method", "path_template"]
    b = ep.filter(pl.col("window") == "before").drop("window")
    a = ep.filter(pl.col("window") == "after").drop("window")
    counts = ["requests_before", "errors_before", "requests_after", "errors_after"]
    return (
        b.join(a, on=keys, how="full", coalesce=True, suffix="_after")
        .rename({c: f"{c}_before" for c in ("requests", "errors", "error_rate", "p99_ms")})
        .with_columns(pl.col(counts).fill_null(0))
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
