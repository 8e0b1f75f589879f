"""Reading one raw hour: every line of its files, decoded leniently; the rows that keep the
data contract and belong to the hour, de-duplicated by ``event_id``; and how many lines
were bad or duplicates."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gravix import schema
from gravix.errors import StorageError
from gravix.storage import layout
from gravix.storage.layout import Hour

if TYPE_CHECKING:
    import polars as pl


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
    schema.REQUEST_FACTS: _LooseFact,
    schema.SERVICE_EVENTS: _LooseEvent,
}


def _raw_schema(topic: str) -> dict[str, Any]:
    import polars as pl

    if topic == schema.REQUEST_FACTS:
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
    if topic == schema.REQUEST_FACTS:
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


def load_hour(root: Path, topic: str, hour: Hour) -> _HourInput:
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
