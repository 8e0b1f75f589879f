"""Building one hour of one table: raw rows → aggregated rows → ZSTD Parquet replaced
atomically, then the manifest that records which raw files it was built from."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gravix import schema
from gravix.errors import StorageError
from gravix.rollup import hourly
from gravix.rollup.compact import replace_hour
from gravix.rollup.files import remove_output as _remove_output
from gravix.rollup.files import write_parquet as _write_parquet
from gravix.rollup.plan import MISSING, REMOVED, PlannedHour, read_manifest
from gravix.rollup.read import HourInput, load_hour
from gravix.schema import sketch
from gravix.schema.columns import polars_schema, polars_type
from gravix.storage import durable, layout
from gravix.storage.layout import Hour
from gravix.units import utc_stamp

if TYPE_CHECKING:
    import polars as pl

MANIFEST_VERSION = 1
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class HourResult:
    """What rolling up one hour of one table did."""

    table: str
    hour: Hour
    reason: str
    files: int = 0
    bytes: int = 0
    lines: int = 0
    bad_lines: int = 0
    duplicates: int = 0
    facts: int = 0
    rows: int = 0
    output: Path | None = None
    seconds: float = 0.0


def _quantile(lat: pl.Expr, q: float) -> pl.Expr:
    """The ``q`` quantile of a group whose rows are in ascending latency, with linear
    interpolation between the closest ranks (DuckDB's ``quantile_cont``): two gathers per
    group where ``quantile`` sorts each group again."""
    import polars as pl

    pos = (pl.len() - 1).cast(pl.Float64) * q
    below = pos.floor()
    low = lat.get(below.cast(pl.Int64))
    high = lat.get(pos.ceil().cast(pl.Int64))
    return low + (high - low) * (pos - below)


def _request_metrics(
    frame: pl.DataFrame, *, minutes: bool = True
) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """Rows of ``request_metrics_minute`` and of ``request_metrics_hour`` with the columns of
    DESIGN §6: one row per (minute or hour, service, method, path_template), both from the
    same facts sorted once. Without ``minutes``, only the hour's rows (None for the
    minutes)."""
    import polars as pl

    facts = frame.lazy().select(
        pl.col("event_time").dt.truncate("1m").alias("bucket_start"),
        "service",
        "method",
        "path_template",
        "status_code",
        "latency_ms",
        sketch.bucket_index_expr(pl.col("latency_ms")).alias("idx"),
    )
    # One group-by per table computes everything. Sorted by latency, every group meets its
    # rows in ascending latency (a group keeps the order of the rows), so a quantile is read
    # off its closest ranks, and its histogram is its distinct bucket indexes in order of
    # appearance with their counts (the index grows with the latency): cheap per-group
    # passes, where a sort per group, a run-length encoding, or a second group-by on
    # (keys, idx) plus a join cost more. The hour's rows are grouped from the same sorted
    # facts, so their percentiles are exact for the hour, not merged from the minutes.
    # The sorted facts are made once; the two group-bys run one after the other, so the
    # hour's rows cost little more memory than the minutes' alone.
    facts = facts.sort("latency_ms").collect().lazy()
    minute = _grouped(facts).collect() if minutes else None
    hour = _grouped(facts.with_columns(pl.col("bucket_start").dt.truncate("1h"))).collect()
    return minute, hour


def _grouped(facts: pl.LazyFrame) -> pl.LazyFrame:
    import polars as pl

    keys = ["service", "bucket_start", "method", "path_template"]
    lat = pl.col("latency_ms")
    status = pl.col("status_code")
    idx = pl.col("idx").drop_nulls()
    metrics = facts.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("request_count"),
        (status >= 500).sum().cast(pl.Int64).alias("error_count"),
        status.is_between(400, 499).sum().cast(pl.Int64).alias("client_error_count"),
        lat.sum().alias("latency_sum_ms"),
        lat.first().alias("latency_min_ms"),
        lat.last().alias("latency_max_ms"),
        *(_quantile(lat, q).alias(f"p{round(q * 100)}_latency_ms") for q in QUANTILES),
        (lat == 0).sum().cast(pl.Int64).alias("lat_zero_count"),
        idx.unique(maintain_order=True).alias("lat_idx"),
        idx.unique_counts().alias("lat_cnt"),
    )
    return (
        metrics.with_columns(
            (pl.col("error_count") / pl.col("request_count")).alias("error_rate"),
            pl.lit(sketch.SCALE, dtype=pl.Int8).alias("lat_scale"),
        )
        .sort(keys)
        .select(_request_columns())
    )


def _request_columns() -> list[pl.Expr]:
    import polars as pl

    return [
        pl.col(name).cast(polars_type(kind))
        for name, kind in schema.REQUEST_METRICS_COLUMNS.items()
    ]


def _event_partials(frame: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    return frame.group_by(["service", "event_type"]).agg(
        pl.len().cast(pl.Int64).alias("event_count"),
        pl.col("event_time").min().alias("first_event_time"),
        pl.col("event_time").max().alias("last_event_time"),
    )


def _events_daily(partials: list[pl.DataFrame]) -> pl.DataFrame:
    import polars as pl

    columns = [
        pl.col(name).cast(polars_type(kind))
        for name, kind in schema.SERVICE_EVENTS_DAILY_COLUMNS.items()
    ]
    if not partials:
        return pl.DataFrame(schema=polars_schema(schema.SERVICE_EVENTS_DAILY_COLUMNS))
    return (
        pl.concat(partials)
        .group_by(["service", "event_type"])
        .agg(
            pl.col("event_count").sum(),
            pl.col("first_event_time").min(),
            pl.col("last_event_time").max(),
        )
        .sort(["service", "event_type"])
        .select(columns)
    )


# --- writing --------------------------------------------------------------------------------


def _write_manifest(
    root: Path,
    table: str,
    hour: Hour,
    files: dict[str, int],
    result: HourResult,
    extra: dict[str, Any] | None = None,
) -> None:
    document = {
        "version": MANIFEST_VERSION,
        "table": table,
        "hour": str(hour),
        "files": dict(sorted(files.items())),
        "lines": result.lines,
        "bad_lines": result.bad_lines,
        "duplicates": result.duplicates,
        "facts": result.facts,
        "rows": result.rows,
        "output": result.output.name if result.output else None,
        "built_at": utc_stamp(datetime.now(UTC)),
        **(extra or {}),
    }
    path = layout.rollup_manifest_path(root, table, hour)
    try:
        durable.atomic_write(path, (json.dumps(document, indent=1) + "\n").encode())
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}", errno=exc.errno) from None


def keep_removed(root: Path, planned: PlannedHour) -> HourResult:
    """Raw input gone (retention): keep the rows, record that nothing is left to build from."""
    old = read_manifest(root, planned.table, planned.hour) or {}
    result = HourResult(
        planned.table,
        planned.hour,
        REMOVED,
        facts=int(old.get("facts", 0)),
        rows=int(old.get("rows", 0)),
    )
    outputs = layout.table_outputs(root, planned.table, planned.hour)
    existing = [path for path in outputs if path.exists()]
    result.output = existing[-1] if existing else None
    _write_manifest(root, planned.table, planned.hour, {}, result, {"raw_removed": True})
    result.facts = result.rows = 0  # nothing was rolled up in this run
    return result


def build_request_hour(root: Path, planned: PlannedHour) -> HourResult:
    """Build one hour of ``request_metrics_minute`` and of ``request_metrics_hour`` (the
    minute table first: a task that stops between the two leaves the manifest as it was,
    so the next rollup builds both again); an hour whose minute rows are in place and
    whose hour rows are missing gets only those."""
    if planned.reason == MISSING and hourly.minute_rows_exist(root, planned.hour):
        return _build_hour_table(root, planned)
    started = time.perf_counter()
    table, hour = planned.table, planned.hour
    loaded = load_hour(root, schema.REQUEST_FACTS, hour)
    metrics, hour_rows = _request_metrics(loaded.frame)
    assert metrics is not None
    output = layout.warehouse_hour_file(root, table, hour)
    if replace_hour(root, table, hour, metrics):  # the day is compacted: into its file
        output = layout.warehouse_day_file(root, table, hour.day)
    elif metrics.height:
        _write_parquet(root, metrics, output)
    else:
        _remove_output(output)
    result = _result(planned, loaded, metrics.height, output if metrics.height else None)
    hourly.write_hour(root, hour, hour_rows)
    _write_manifest(root, table, hour, loaded.files, result)
    result.seconds = time.perf_counter() - started
    return result


def _result(planned: PlannedHour, loaded: HourInput, rows: int, output: Path | None) -> HourResult:
    """What building an hour did, from what its raw files gave (``loaded``)."""
    return HourResult(
        planned.table,
        planned.hour,
        planned.reason,
        files=len(loaded.files),
        bytes=sum(loaded.files.values()),
        lines=loaded.lines,
        bad_lines=loaded.bad,
        duplicates=loaded.duplicates,
        facts=loaded.frame.height,
        rows=rows,
        output=output,
    )


def _build_hour_table(root: Path, planned: PlannedHour) -> HourResult:
    """Only the hour table's rows of an hour whose minute rows are in place: from the raw
    facts the manifest records (exact percentiles), or, when retention has removed them,
    summed from the minute rows. The manifest stays as it is: the raw file set is the
    one it records."""
    started = time.perf_counter()
    hour = planned.hour
    loaded = load_hour(root, schema.REQUEST_FACTS, hour)
    if loaded.files:
        rows = _request_metrics(loaded.frame, minutes=False)[1]
    else:
        rows = hourly.from_minutes(hourly.read_minutes(root, hour))
    output = hourly.write_hour(root, hour, rows)
    result = _result(planned, loaded, rows.height, output)
    result.seconds = time.perf_counter() - started
    return result


def build_event_day(
    root: Path, day: date, planned: dict[Hour, PlannedHour], report: Callable[[], None]
) -> list[HourResult]:
    """Recompute one day of ``service_events_daily`` from every raw hour of that day."""
    table = schema.SERVICE_EVENTS_DAILY
    raw = layout.raw_hours(root, schema.SERVICE_EVENTS)
    hours = sorted({h for h in raw if h.day == day} | {h for h in planned if h.day == day})
    partials: list[pl.DataFrame] = []
    results: list[tuple[HourResult, dict[str, int]]] = []
    for hour in hours:
        started = time.perf_counter()
        loaded = load_hour(root, schema.SERVICE_EVENTS, hour)
        part = _event_partials(loaded.frame)
        partials.append(part)
        reason = planned[hour].reason if hour in planned else "same day"
        result = HourResult(
            table,
            hour,
            reason,
            files=len(loaded.files),
            bytes=sum(loaded.files.values()),
            lines=loaded.lines,
            bad_lines=loaded.bad,
            duplicates=loaded.duplicates,
            facts=loaded.frame.height,
            rows=part.height,
        )
        result.seconds = time.perf_counter() - started
        results.append((result, loaded.files))
        if hour in planned:
            report()
    daily = _events_daily(partials)
    output = layout.warehouse_day_file(root, table, day)
    if daily.height:
        _write_parquet(root, daily, output)
    else:
        _remove_output(output)
    for result, files in results:
        result.output = output if daily.height else None
        _write_manifest(root, table, result.hour, files, result, {"day_rows": daily.height})
    return [r for r, _ in results]
