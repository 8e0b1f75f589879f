"""Rollup: raw facts → the warehouse tables of DESIGN §6, under the semantics of §7.

The unit of work is one hour of event time for one table. An hour's input is every raw
file of its partition; facts are de-duplicated by ``event_id`` within the hour (an event's
hour is fixed by its ``event_time``, so every copy of it lands in the same hour).

``request_metrics_minute`` has one Parquet file per hour (``part-HH.parquet``), written to
a temporary sibling and renamed over the old one: a reader sees the hour's old rows or its
new rows, never none and never both.

``service_events_daily`` has one row per (event_day, service, event_type), so it has one
file per day (``part-day.parquet``). When any hour of a day needs work, the whole day is
recomputed: each raw hour of the day is read, de-duplicated and aggregated on its own, and
only those small per-hour aggregates are combined into the day's rows, so memory stays
bounded by the largest hour. The day file is replaced atomically as above.

After an hour's output is durable its manifest (``state/rollup/<table>/…/hour=HH.json``)
records the raw files (names and sizes) it was built from. A crash between output and
manifest only leaves the hour planned again, and recomputing from the same files gives
the same rows. With no window, :func:`run_rollup` is incremental: it rebuilds exactly the
hours whose raw file set differs from their manifest.

An hour whose raw files are all gone (raw retention is shorter than the warehouse's) is
planned as ``removed``: its warehouse rows are kept, and its manifest is rewritten with an
empty file set so it is not planned again. (A later rebuild of a ``service_events_daily``
day can only count the hours of that day whose raw files remain.)

One rollup runs at a time per data root (``FileLock(lock_path(root, LOCK_NAME))``); the
lock is held by :func:`run_rollup` and :func:`rebuild_hours`.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gravix import durable, layout, schema, sketch
from gravix.errors import ConfigError, StorageError
from gravix.layout import Hour

if TYPE_CHECKING:
    import polars as pl

LOCK_NAME = "rollup"
MANIFEST_VERSION = 1
RUNS_KEPT = 200
QUANTILES = (0.5, 0.95, 0.99)
# Hours of request_metrics_minute built at the same time.
HOUR_WORKERS = max(1, min(2, os.cpu_count() or 1))

Progress = Callable[[str, int, int], None]

NEW, CHANGED, REMOVED, MISSING, REQUESTED = "new", "changed", "removed", "missing", "requested"


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class PlannedHour:
    """One hour of one table that needs work, and why."""

    table: str
    hour: Hour
    reason: str  # new | changed | removed | missing | requested

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "hour": str(self.hour), "reason": self.reason}


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "hour": str(self.hour),
            "reason": self.reason,
            "files": self.files,
            "bytes": self.bytes,
            "lines": self.lines,
            "bad_lines": self.bad_lines,
            "duplicates": self.duplicates,
            "facts": self.facts,
            "rows": self.rows,
            "output": str(self.output) if self.output else None,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class RollupSummary:
    """The outcome of one rollup run (``gravix rollup`` renders it)."""

    mode: str  # incremental | window | rebuild
    tables: list[str]
    start: datetime | None = None
    end: datetime | None = None
    requested_start: datetime | None = None
    requested_end: datetime | None = None
    hours: list[HourResult] = field(default_factory=list)
    hours_without_raw: int = 0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0

    @property
    def widened(self) -> bool:
        return (self.requested_start, self.requested_end) != (self.start, self.end)

    @property
    def widened_note(self) -> str | None:
        if not self.widened or self.start is None or self.end is None:
            return None
        return (
            f"window widened to whole hours: {_stamp(self.start)} – {_stamp(self.end)} "
            f"(end exclusive)"
        )

    @property
    def nothing_to_do(self) -> bool:
        return not self.hours

    def total(self, name: str) -> int:
        return sum(int(getattr(h, name)) for h in self.hours)

    @property
    def bad_lines(self) -> int:
        return self.total("bad_lines")

    @property
    def message(self) -> str:
        if self.nothing_to_do:
            if self.mode == "incremental":
                return "Nothing to do: every raw hour is already rolled up."
            return "Nothing to do: no raw data in the window."
        hours = len({(h.table, h.hour) for h in self.hours})
        text = (
            f"Rolled up {hours} hour(s): {self.total('facts'):,} facts → "
            f"{self.total('rows'):,} rows"
        )
        if self.total("duplicates"):
            text += f", {self.total('duplicates'):,} duplicate(s) dropped"
        if self.bad_lines:
            text += f", {self.bad_lines:,} bad line(s) skipped"
        return text + f" in {self.seconds:.1f}s."

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "tables": self.tables,
            "start": _stamp(self.start) if self.start else None,
            "end": _stamp(self.end) if self.end else None,
            "requested_start": _stamp(self.requested_start) if self.requested_start else None,
            "requested_end": _stamp(self.requested_end) if self.requested_end else None,
            "widened": self.widened,
            "notes": [n for n in (self.widened_note,) if n],
            "nothing_to_do": self.nothing_to_do,
            "message": self.message,
            "hours_built": len({(h.table, h.hour) for h in self.hours}),
            "hours_without_raw": self.hours_without_raw,
            "files": self.total("files"),
            "bytes": self.total("bytes"),
            "lines": self.total("lines"),
            "bad_lines": self.bad_lines,
            "duplicates": self.total("duplicates"),
            "facts": self.total("facts"),
            "rows": self.total("rows"),
            "started_at": _stamp(self.started_at),
            "seconds": round(self.seconds, 3),
            "hours": [h.to_dict() for h in self.hours],
        }


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- manifests and planning ------------------------------------------------------------------


def _current_files(root: Path, table: str, hour: Hour) -> dict[str, int]:
    """Names and sizes of the hour's raw files: the files :func:`layout.raw_files` lists,
    read with one ``scandir`` (planning stats every raw file of the retention)."""
    hour_dir = layout.raw_hour_dir(root, layout.TABLE_SOURCE[table], hour)
    out: dict[str, int] = {}
    try:
        entries = os.scandir(hour_dir)
    except (FileNotFoundError, NotADirectoryError):
        return out
    with entries:
        for entry in entries:
            name = entry.name
            if not name.endswith(layout.JSONL) or name.startswith("."):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    out[name] = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return out


def read_manifest(root: Path, table: str, hour: Hour) -> dict[str, Any] | None:
    """The record of what ``hour`` of ``table`` was built from, or None (never built or
    unreadable, which both mean "build it")."""
    path = layout.rollup_manifest_path(root, table, hour)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def _output_path(root: Path, table: str, hour: Hour) -> Path:
    if table == layout.SERVICE_EVENTS_DAILY:
        return layout.warehouse_day_file(root, table, hour.day)
    return layout.warehouse_hour_file(root, table, hour)


def _manifest_hours(root: Path, table: str) -> dict[Hour, Path]:
    out: dict[Hour, Path] = {}
    base = layout.rollup_state_dir(root, table)
    if not base.is_dir():
        return out
    for day_entry in os.scandir(base):
        day = layout.parse_day_dir(day_entry.name)
        if day is None or not day_entry.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(day_entry.path):
            stem = entry.name.removesuffix(".json")
            value = layout.parse_hour_dir(stem) if entry.name.endswith(".json") else None
            if value is not None:
                out[Hour(day, value)] = Path(entry.path)
    return out


def _plan_table(root: Path, table: str, only: set[Hour] | None = None) -> list[PlannedHour]:
    raw = layout.raw_hours(root, layout.TABLE_SOURCE[table])
    hours = set(raw) | set(_manifest_hours(root, table))
    if only is not None:
        hours &= only
    plan: list[PlannedHour] = []
    for hour in sorted(hours):
        files = _current_files(root, table, hour) if hour in raw else {}
        manifest = read_manifest(root, table, hour)
        if manifest is None:
            if files:
                plan.append(PlannedHour(table, hour, NEW))
        elif manifest["files"] != files:
            plan.append(PlannedHour(table, hour, CHANGED if files else REMOVED))
        elif int(manifest.get("facts", 0)) > 0 and not _output_path(root, table, hour).exists():
            plan.append(PlannedHour(table, hour, MISSING))
    return plan


def _tables(tables: Iterable[str] | str | None) -> list[str]:
    if tables is None:
        return list(layout.TABLES)
    if isinstance(tables, str):
        tables = [tables]
    chosen: list[str] = []
    for name in tables:
        if name == "all":
            return list(layout.TABLES)
        if name not in layout.TABLES:
            raise ConfigError(
                f"unknown table {name!r}", hint=f"use one of {', '.join(layout.TABLES)} or all"
            )
        chosen.append(name)
    return chosen


def plan_hours(root: Path, table: str | None = None) -> list[PlannedHour]:
    """Hours whose raw file set differs from what they were built from (``new``,
    ``changed``, ``removed``), or whose output file has gone (``missing``)."""
    return [p for t in _tables(table) for p in _plan_table(root, t)]


# --- reading raw hours ------------------------------------------------------------------------


class _LooseFact(msgspec.Struct):
    event_id: str | None = None
    event_time: str | None = None
    service: str | None = None
    method: str | None = None
    path_template: str | None = None
    status_code: int | None = None
    latency_ms: float | None = None


class _LooseEvent(msgspec.Struct):
    event_id: str | None = None
    event_time: str | None = None
    service: str | None = None
    event_type: str | None = None


_LOOSE: dict[str, type[msgspec.Struct]] = {
    layout.REQUEST_FACTS: _LooseFact,
    layout.SERVICE_EVENTS: _LooseEvent,
}


def _raw_schema(topic: str) -> dict[str, Any]:
    import polars as pl

    if topic == layout.REQUEST_FACTS:
        return {
            "event_id": pl.String,
            "event_time": pl.String,
            "service": pl.String,
            "method": pl.String,
            "path_template": pl.String,
            "status_code": pl.Int64,
            "latency_ms": pl.Float64,
        }
    return {
        "event_id": pl.String,
        "event_time": pl.String,
        "service": pl.String,
        "event_type": pl.String,
    }


def _read_files(paths: Sequence[Path]) -> tuple[bytes, dict[str, int]]:
    """The hour's raw bytes (each file newline-terminated) and the names and sizes read."""
    chunks: list[bytes] = []
    files: dict[str, int] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # removed since listing (retention): not part of this build
        except OSError as exc:
            raise StorageError(
                f"cannot read raw file {path}: {exc.strerror}",
                hint="check permissions and the disk; `gravix doctor` helps",
                errno=exc.errno,
            ) from None
        files[path.name] = len(data)
        chunks.append(data)
        if data and not data.endswith(b"\n"):
            chunks.append(b"\n")
    return b"".join(chunks), files


def _loose_frame(topic: str, data: bytes) -> tuple[pl.DataFrame, int]:
    """Line by line, for an hour with damaged lines: the lines that decode, and how many
    did not (torn tails, zero fill, wrong types)."""
    import polars as pl

    decoder = msgspec.json.Decoder(_LOOSE[topic])
    schema_ = _raw_schema(topic)
    columns: dict[str, list[Any]] = {name: [] for name in schema_}
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError):
            bad += 1
            continue
        for name, values in columns.items():
            values.append(getattr(row, name))
    return pl.DataFrame(columns, schema=schema_), bad


def _parse(topic: str, data: bytes) -> tuple[pl.DataFrame, int]:
    """All non-blank lines as rows of the topic's columns (null where a field is missing or
    mistyped), plus the number of lines that are not JSON objects at all."""
    import polars as pl

    if not data or data.isspace():
        return pl.DataFrame(schema=_raw_schema(topic)), 0
    try:
        return pl.read_ndjson(io.BytesIO(data), schema=_raw_schema(topic), ignore_errors=True), 0
    except pl.exceptions.PolarsError:
        return _loose_frame(topic, data)


def _event_times(frame: pl.DataFrame, hour: Hour) -> pl.DataFrame:
    """``event_time`` as a UTC millisecond timestamp (null where unparseable).

    Stored times are canonical (``YYYY-MM-DDTHH:MM:SS.mmmZ``) and share the hour's prefix,
    so the common case is read off fixed positions; anything else is parsed in full.
    """
    import polars as pl

    text = pl.col("event_time")
    prefix = re.escape(hour.start.strftime("%Y-%m-%dT%H:"))
    canonical = text.str.contains(f"^{prefix}[0-5][0-9]:[0-5][0-9]\\.[0-9]{{3}}Z$").fill_null(False)
    start_ms = int(hour.start.timestamp()) * 1000

    def part(offset: int, length: int) -> pl.Expr:
        return text.str.slice(offset, length).cast(pl.Int64)

    fast = (
        (start_ms + part(14, 2) * 60_000 + part(17, 2) * 1000 + part(20, 3))
        .cast(pl.Datetime("ms", "UTC"))
        .alias("event_time")
    )
    flags = frame.select(canonical).to_series()
    if flags.all():  # the common case: no row needs the full parser, and nothing is copied
        return frame.with_columns(fast)
    slow = text.str.to_datetime(time_unit="ms", time_zone="UTC", strict=False)
    return pl.concat(
        [frame.filter(flags).with_columns(fast), frame.filter(~flags).with_columns(slow)]
    )


def _valid_rows(topic: str, frame: pl.DataFrame, hour: Hour) -> tuple[pl.DataFrame, pl.Expr]:
    """The rows with event_time parsed, and the predicate of those that keep the data
    contract and belong to ``hour``."""
    import polars as pl

    start = hour.start
    end = start + timedelta(hours=1)
    parsed = _event_times(frame, hour)
    ok = pl.all_horizontal([pl.col(c).is_not_null() for c in frame.columns])
    ok = ok & pl.col("event_time").is_between(start, end, closed="left")
    if topic == layout.REQUEST_FACTS:
        ok = (
            ok
            & pl.col("status_code").is_between(100, 599)
            & pl.col("latency_ms").is_finite()
            & (pl.col("latency_ms") >= 0)
        )
    return parsed, ok


@dataclass
class _HourInput:
    frame: pl.DataFrame  # valid, de-duplicated rows
    files: dict[str, int]
    lines: int
    bad: int
    duplicates: int


def _load_hour(root: Path, topic: str, hour: Hour) -> _HourInput:
    import polars as pl

    paths = layout.raw_files(layout.raw_hour_dir(root, topic, hour))
    for path in paths:
        layout.ensure_inside(root, path)
    data, files = _read_files(paths)
    frame, undecodable = _parse(topic, data)
    del data
    parsed, ok = _valid_rows(topic, frame, hour)
    valid = parsed.filter(ok)
    # The first line of each event_id, in file order (so a rebuild aggregates the same
    # rows in the same order); eager, which measured four times faster than a lazy unique().
    unique = valid.filter(pl.col("event_id").is_first_distinct())
    return _HourInput(
        frame=unique,
        files=files,
        lines=frame.height + undecodable,
        bad=undecodable + frame.height - valid.height,
        duplicates=valid.height - unique.height,
    )


# --- aggregation ----------------------------------------------------------------------------


def _request_metrics(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per (minute, service, method, path_template) with the columns of DESIGN §6."""
    import polars as pl

    keys = ["service", "bucket_start", "method", "path_template"]
    lat = pl.col("latency_ms")
    status = pl.col("status_code")
    facts = frame.lazy().select(
        pl.col("event_time").dt.truncate("1m").alias("bucket_start"),
        "service",
        "method",
        "path_template",
        "status_code",
        "latency_ms",
        sketch.bucket_index_expr(lat).alias("idx"),
    )
    # One group-by computes everything. Sorted by latency, every group meets its bucket
    # indexes in ascending order (the index grows with the latency), so its histogram is
    # its distinct indexes in order of appearance with their counts: two cheap per-group
    # passes, where a sort and a run-length encoding per group cost 15% more, and a second
    # group-by on (keys, idx) plus a join more still.
    facts = facts.sort("latency_ms")
    idx = pl.col("idx").drop_nulls()
    metrics = facts.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("request_count"),
        (status >= 500).sum().cast(pl.Int64).alias("error_count"),
        status.is_between(400, 499).sum().cast(pl.Int64).alias("client_error_count"),
        lat.sum().alias("latency_sum_ms"),
        lat.min().alias("latency_min_ms"),
        lat.max().alias("latency_max_ms"),
        *(
            lat.quantile(q, interpolation="linear").alias(f"p{round(q * 100)}_latency_ms")
            for q in QUANTILES
        ),
        (lat == 0).sum().cast(pl.Int64).alias("lat_zero_count"),
        idx.unique(maintain_order=True).alias("lat_idx"),
        idx.unique_counts().alias("lat_cnt"),
    )
    out = (
        metrics.with_columns(
            (pl.col("error_count") / pl.col("request_count")).alias("error_rate"),
            pl.lit(sketch.SCALE, dtype=pl.Int8).alias("lat_scale"),
        )
        .sort(keys)
        .select(_request_columns())
    )
    return out.collect()


def _polars_type(name: str) -> Any:
    import polars as pl

    types: dict[str, Any] = {
        "timestamp[ms, UTC]": pl.Datetime("ms", "UTC"),
        "string": pl.String,
        "int64": pl.Int64,
        "int32": pl.Int32,
        "int8": pl.Int8,
        "double": pl.Float64,
        "list<int32>": pl.List(pl.Int32),
        "list<int64>": pl.List(pl.Int64),
    }
    return types[name]


def _request_columns() -> list[pl.Expr]:
    import polars as pl

    return [
        pl.col(name).cast(_polars_type(kind))
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
        pl.col(name).cast(_polars_type(kind))
        for name, kind in schema.SERVICE_EVENTS_DAILY_COLUMNS.items()
    ]
    if not partials:
        return pl.DataFrame(
            schema={n: _polars_type(k) for n, k in schema.SERVICE_EVENTS_DAILY_COLUMNS.items()}
        )
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


def _write_parquet(root: Path, frame: pl.DataFrame, path: Path) -> None:
    import polars as pl

    layout.ensure_inside(root, path.parent if path.parent.exists() else root)
    hint = "check free space and permissions under the data root"
    try:
        with durable.atomic_output(path) as tmp:
            frame.write_parquet(tmp, compression="zstd", statistics=True)
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc.strerror or exc}", hint=hint, errno=exc.errno
        ) from None
    except pl.exceptions.PolarsError as exc:  # the writer reports I/O failures its own way
        raise StorageError(f"cannot write {path}: {exc}", hint=hint) from None


def _remove_output(path: Path) -> None:
    try:
        durable.unlink(path)
    except OSError as exc:
        raise StorageError(
            f"cannot remove {path}: {exc.strerror or exc}", errno=exc.errno
        ) from None


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
        "built_at": _stamp(datetime.now(UTC)),
        **(extra or {}),
    }
    path = layout.rollup_manifest_path(root, table, hour)
    try:
        durable.atomic_write(path, (json.dumps(document, indent=1) + "\n").encode())
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}", errno=exc.errno) from None


def _keep_removed(root: Path, planned: PlannedHour) -> HourResult:
    """Raw input gone (retention): keep the rows, record that nothing is left to build from."""
    old = read_manifest(root, planned.table, planned.hour) or {}
    result = HourResult(
        planned.table,
        planned.hour,
        REMOVED,
        facts=int(old.get("facts", 0)),
        rows=int(old.get("rows", 0)),
    )
    output = _output_path(root, planned.table, planned.hour)
    result.output = output if output.exists() else None
    _write_manifest(root, planned.table, planned.hour, {}, result, {"raw_removed": True})
    result.facts = result.rows = 0  # nothing was rolled up in this run
    return result


def _build_request_hour(root: Path, planned: PlannedHour) -> HourResult:
    started = time.perf_counter()
    table, hour = planned.table, planned.hour
    loaded = _load_hour(root, layout.REQUEST_FACTS, hour)
    metrics = _request_metrics(loaded.frame)
    output = layout.warehouse_hour_file(root, table, hour)
    if metrics.height:
        _write_parquet(root, metrics, output)
    else:
        _remove_output(output)
    result = HourResult(
        table,
        hour,
        planned.reason,
        files=len(loaded.files),
        bytes=sum(loaded.files.values()),
        lines=loaded.lines,
        bad_lines=loaded.bad,
        duplicates=loaded.duplicates,
        facts=loaded.frame.height,
        rows=metrics.height,
        output=output if metrics.height else None,
    )
    _write_manifest(root, table, hour, loaded.files, result)
    result.seconds = time.perf_counter() - started
    return result


def _build_event_day(
    root: Path, day: date, planned: dict[Hour, PlannedHour], report: Callable[[], None]
) -> list[HourResult]:
    """Recompute one day of ``service_events_daily`` from every raw hour of that day."""
    table = layout.SERVICE_EVENTS_DAILY
    raw = layout.raw_hours(root, layout.SERVICE_EVENTS)
    hours = sorted({h for h in raw if h.day == day} | {h for h in planned if h.day == day})
    partials: list[pl.DataFrame] = []
    results: list[tuple[HourResult, dict[str, int]]] = []
    for hour in hours:
        started = time.perf_counter()
        loaded = _load_hour(root, layout.SERVICE_EVENTS, hour)
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


def _execute(root: Path, plan: list[PlannedHour], progress: Progress | None) -> list[HourResult]:
    results: list[HourResult] = []
    total = len(plan)
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(label, done, total)

    if progress is not None:
        progress("rollup", 0, total)
    daily: dict[date, dict[Hour, PlannedHour]] = {}
    hourly: list[PlannedHour] = []
    for planned in plan:
        if planned.reason == REMOVED:
            results.append(_keep_removed(root, planned))
            tick(f"{planned.table} {planned.hour}")
        elif planned.table == layout.REQUEST_METRICS_MINUTE:
            hourly.append(planned)
        else:
            daily.setdefault(planned.hour.day, {})[planned.hour] = planned
    # Two hours in flight keep both cores busy through the parts of an hour that run on
    # one thread; memory stays bounded by two hours, whatever the window.
    with ThreadPoolExecutor(max_workers=HOUR_WORKERS, thread_name_prefix="rollup") as pool:
        for result in pool.map(partial(_build_request_hour, root), hourly):
            results.append(result)
            tick(f"{result.table} {result.hour}")
    for day, hours in sorted(daily.items()):
        label = f"{layout.SERVICE_EVENTS_DAILY} {day.isoformat()}"
        results.extend(_build_event_day(root, day, hours, partial(tick, label)))
    return results


# --- runs log -------------------------------------------------------------------------------


def recent_runs(root: Path, limit: int = 10) -> list[dict[str, Any]]:
    """The newest ``limit`` run summaries, newest first (bad-line counts for doctor)."""
    try:
        text = layout.rollup_runs_path(root).read_text(errors="replace")
    except OSError:
        return []
    runs: list[dict[str, Any]] = []
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            runs.append(value)
        if len(runs) >= limit:
            break
    return runs


def _record_run(root: Path, summary: RollupSummary) -> None:
    document = summary.to_dict()
    document.pop("hours")
    document["bad_lines_by_hour"] = {
        f"{h.table} {h.hour}": h.bad_lines for h in summary.hours if h.bad_lines
    }
    kept = list(reversed(recent_runs(root, RUNS_KEPT - 1)))
    lines = [json.dumps(r, separators=(",", ":")) for r in [*kept, document]]
    durable.atomic_write(layout.rollup_runs_path(root), ("\n".join(lines) + "\n").encode())


# --- entry points ---------------------------------------------------------------------------


def _sweep_temporaries(root: Path, tables: Iterable[str]) -> None:
    """Temporaries left by a killed run (we hold the lock, so none is in use)."""
    for table in tables:
        for base in (layout.warehouse_table_dir(root, table), layout.rollup_state_dir(root, table)):
            if not base.is_dir():
                continue
            for dirpath, _dirs, names in os.walk(base):
                for name in names:
                    path = Path(dirpath) / name
                    if layout.is_tmp(path):
                        durable.unlink(path)


def _parse_moment(value: datetime | str | None, flag: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{flag} needs a zone", hint="e.g. 2026-02-16T10:00:00Z")
        return value.astimezone(UTC)
    try:
        seconds, _ = schema.parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise ConfigError(
            f"{flag} {value!r} is not an RFC 3339 time: {exc}",
            hint="e.g. --start-time 2026-02-16T10:00:00Z",
        ) from None
    return datetime.fromtimestamp(seconds, UTC)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _lock(root: Path, purpose: str) -> durable.FileLock:
    if not root.is_dir():
        raise ConfigError(
            f"data root {root} does not exist", hint="pass --data-dir or set GRAVIX_DATA_DIR"
        )
    return durable.FileLock(layout.lock_path(root, LOCK_NAME), purpose).acquire()


def _window_plan(
    root: Path,
    tables: list[str],
    start: datetime | None,
    end: datetime | None,
    summary: RollupSummary,
) -> list[PlannedHour]:
    plan: list[PlannedHour] = []
    for table in tables:
        topic = layout.TABLE_SOURCE[table]
        raw = layout.raw_hours(root, topic)
        known = set(raw) | set(_manifest_hours(root, table))
        for hour in sorted(known):
            if (start is not None and hour.start < start) or (
                end is not None and hour.start >= end
            ):
                continue
            files = _current_files(root, table, hour) if hour in raw else {}
            if files:
                plan.append(PlannedHour(table, hour, REQUESTED))
            else:
                summary.hours_without_raw += 1
                manifest = read_manifest(root, table, hour)
                if manifest is not None and manifest["files"]:
                    plan.append(PlannedHour(table, hour, REMOVED))
    return plan


def run_rollup(
    *,
    root: Path,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    tables: Iterable[str] | str | None = None,
    progress: Progress | None = None,
) -> RollupSummary:
    """``gravix rollup``: with a window, rebuild every hour it touches (widened to whole
    hours); without one, rebuild exactly the hours whose raw file set changed."""
    chosen = _tables(tables)
    requested_start = _parse_moment(start, "--start-time")
    requested_end = _parse_moment(end, "--end-time")
    if requested_start and requested_end and requested_start >= requested_end:
        raise ConfigError("--start-time must be before --end-time (the end is exclusive)")
    windowed = requested_start is not None or requested_end is not None
    summary = RollupSummary(
        mode="window" if windowed else "incremental",
        tables=chosen,
        requested_start=requested_start,
        requested_end=requested_end,
        start=_floor_hour(requested_start) if requested_start else None,
        end=_ceil_hour(requested_end) if requested_end else None,
    )
    started = time.perf_counter()
    lock = _lock(root, "gravix rollup")
    try:
        _sweep_temporaries(root, chosen)
        if windowed:
            plan = _window_plan(root, chosen, summary.start, summary.end, summary)
        else:
            plan = [p for t in chosen for p in _plan_table(root, t)]
        summary.hours = _execute(root, plan, progress)
        summary.seconds = time.perf_counter() - started
        _record_run(root, summary)
    finally:
        lock.release()
    return summary


def rebuild_hours(
    root: Path,
    table: str,
    hours: list[Hour],
    progress: Progress | None = None,
) -> RollupSummary:
    """Rebuild the given hours of ``table`` from raw (e.g. after recovery quarantined a
    corrupt Parquet file). Takes the rollup lock."""
    (table,) = _tables(table)
    summary = RollupSummary(mode="rebuild", tables=[table])
    started = time.perf_counter()
    lock = _lock(root, "rebuild hours")
    try:
        _sweep_temporaries(root, [table])
        plan = [PlannedHour(table, h, REQUESTED) for h in sorted(set(hours))]
        summary.hours = _execute(root, plan, progress)
        summary.seconds = time.perf_counter() - started
        _record_run(root, summary)
    finally:
        lock.release()
    return summary


__all__ = [
    "LOCK_NAME",
    "HourResult",
    "PlannedHour",
    "RollupSummary",
    "plan_hours",
    "read_manifest",
    "rebuild_hours",
    "recent_runs",
    "run_rollup",
]
