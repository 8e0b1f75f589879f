"""Reading raw hours: the one decoding that decides which raw lines are good.

Rollup (which aggregates the good lines), the query's raw tables (which show them) and
``gravix recover`` (which moves the others to quarantine) all read through here, so they
skip and count the same lines (DESIGN §8). A line is good when it is a JSON object whose
required fields are present with their types, whose ``event_time`` parses and falls in the
hour its partition names, and (request facts) whose status code and latency are in range.
Optional fields of a wrong type read as null; they never make a line bad.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gravix import schema
from gravix.errors import StorageError
from gravix.schema.columns import polars_type
from gravix.storage import layout, links
from gravix.storage.layout import Hour

if TYPE_CHECKING:
    import polars as pl

# The fields every line of a topic must carry (the rest of RAW_COLUMNS is optional).
REQUIRED: dict[str, tuple[str, ...]] = {
    schema.REQUEST_FACTS: (
        "event_id",
        "event_time",
        "service",
        "method",
        "path_template",
        "status_code",
        "latency_ms",
    ),
    schema.SERVICE_EVENTS: ("event_id", "event_time", "service", "event_type"),
}


@dataclass
class RawHour:
    """The good lines of one raw hour (file order, ``event_time`` a UTC ms timestamp), the
    files read (name → size) and how many non-blank lines there were and were bad."""

    frame: pl.DataFrame
    files: dict[str, int]
    lines: int
    bad: int


def _columns(topic: str, columns: Sequence[str] | None) -> list[str]:
    """The required columns of ``topic`` plus the optional ones asked for, in catalogue order."""
    wanted = set(REQUIRED[topic]) | set(columns or ())
    return [name for name in schema.RAW_COLUMNS[topic] if name in wanted]


def _read_schema(topic: str, columns: Sequence[str]) -> dict[str, Any]:
    """Columns as decoded from the text: ``event_time`` stays a string until checked."""
    import polars as pl

    logical = schema.RAW_COLUMNS[topic]
    return {
        name: pl.String() if name == "event_time" else polars_type(logical[name])
        for name in columns
    }


def read_bytes(paths: Sequence[Path]) -> tuple[bytes, dict[str, int]]:
    """The files' bytes (each newline-terminated) and the names and sizes read; a file
    removed since it was listed (retention) is not part of the read."""
    chunks: list[bytes] = []
    files: dict[str, int] = {}
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StorageError(
                f"cannot read raw file {path}: {exc.strerror}",
                hint="check permissions and the disk; `gravix doctor` helps",
                errno=exc.errno,
            ) from None
        files[path.name] = len(data)
        chunks.append(data)
    return b"".join(_terminated(chunks)), files


def _terminated(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks, each followed by a newline when it does not end in one: a file's torn
    last line stays a line of its own, never joined to the next file's first."""
    for data in chunks:
        yield data
        if data and not data.endswith(b"\n"):
            yield b"\n"


def _coerce(value: Any, dtype: pl.DataType) -> Any:
    """One loosely decoded value as the fast decoder reads it (a mistype is null; a
    non-string in a string column is its JSON text)."""
    import polars as pl

    if value is None:
        return None
    if dtype == pl.String():
        return value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, bool):
        return None
    if dtype == pl.Int64():
        return value if isinstance(value, int) else None
    if dtype == pl.Float64():
        return float(value) if isinstance(value, int | float) else None
    return None


def _decode_loose(line: bytes) -> dict[str, Any] | None:
    """One line as a JSON object, or None when it is not one."""
    try:
        value = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def decode_lines(lines: Sequence[bytes], read_schema: dict[str, Any]) -> pl.DataFrame:
    """Non-blank ``lines`` one by one, a row each (all null where a line is not a JSON
    object): the slow path, for an hour with damaged lines, and for recovery."""
    import polars as pl

    columns: dict[str, list[Any]] = {name: [] for name in read_schema}
    for line in lines:
        record = _decode_loose(line) or {}
        for name, values in columns.items():
            values.append(_coerce(record.get(name), read_schema[name]))
    return pl.DataFrame(columns, schema=read_schema)


def _decode(data: bytes, read_schema: dict[str, Any]) -> pl.DataFrame:
    """Every non-blank line as a row: polars' reader at once, or line by line when a line
    is not JSON at all (torn tails, zero fill)."""
    import polars as pl

    if not data or data.isspace():
        return pl.DataFrame(schema=read_schema)
    try:
        return pl.read_ndjson(io.BytesIO(data), schema=read_schema, ignore_errors=True)
    except pl.exceptions.PolarsError:
        return decode_lines([ln for ln in data.split(b"\n") if ln.strip()], read_schema)


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
        return text.str.slice(offset, length).cast(pl.Int64, strict=False)

    fast = (
        (start_ms + part(14, 2) * 60_000 + part(17, 2) * 1000 + part(20, 3))
        .cast(pl.Datetime("ms", "UTC"))
        .alias("event_time")
    )
    flags = frame.select(canonical).to_series()
    if flags.all():  # the common case: no row needs the full parser, and nothing is copied
        return frame.with_columns(fast)
    slow = text.str.to_datetime(time_unit="ms", time_zone="UTC", strict=False)
    return frame.with_columns(pl.when(canonical).then(fast).otherwise(slow).alias("event_time"))


def good_rows(topic: str, hour: Hour) -> pl.Expr:
    """The predicate of a good line, over rows whose ``event_time`` is parsed."""
    import polars as pl

    start = hour.start
    ok = pl.all_horizontal([pl.col(c).is_not_null() for c in REQUIRED[topic]])
    ok = ok & pl.col("event_time").is_between(start, start + timedelta(hours=1), closed="left")
    if topic == schema.REQUEST_FACTS:
        ok = (
            ok
            & pl.col("status_code").is_between(100, 599)
            & pl.col("latency_ms").is_finite()
            & (pl.col("latency_ms") >= 0)
        )
    return ok


def read_hour_files(
    topic: str, hour: Hour, paths: Sequence[Path], columns: Sequence[str] | None = None
) -> RawHour:
    """The good lines of ``paths`` (files of ``hour``): the required columns and the
    optional ``columns`` asked for."""
    read_schema = _read_schema(topic, _columns(topic, columns))
    data, files = read_bytes(paths)
    frame = _decode(data, read_schema)
    del data
    return _judged(topic, hour, frame, files)


def read_hour_objects(
    topic: str,
    hour: Hour,
    objects: Sequence[tuple[str, bytes]],
    columns: Sequence[str] | None = None,
) -> RawHour:
    """The good lines of raw objects of ``hour`` already read from a store, as (name,
    bytes): judged exactly as :func:`read_hour_files` judges files."""
    data = b"".join(_terminated(chunk for _, chunk in objects))
    frame = _decode(data, _read_schema(topic, _columns(topic, columns)))
    return _judged(topic, hour, frame, {name: len(data) for name, data in objects})


def _judged(topic: str, hour: Hour, frame: pl.DataFrame, files: dict[str, int]) -> RawHour:
    good = _event_times(frame, hour).filter(good_rows(topic, hour))
    return RawHour(good, files, frame.height, frame.height - good.height)


def read_hour(root: Path, topic: str, hour: Hour, columns: Sequence[str] | None = None) -> RawHour:
    """The good lines of every raw file of ``hour`` (see :func:`read_hour_files`)."""
    paths = layout.raw_files(layout.raw_hour_dir(root, topic, hour))
    for path in paths:
        links.ensure_inside(root, path)
    return read_hour_files(topic, hour, paths, columns)


def bad_lines(topic: str, hour: Hour, data: bytes) -> tuple[list[bytes], list[bytes]]:
    """One raw file's lines split into (good, bad), in order, judged line by line exactly
    as :func:`read_hour_files` judges them; blank lines are in neither."""
    import polars as pl

    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    if not lines:
        return [], []
    read_schema = _read_schema(topic, list(REQUIRED[topic]))
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=read_schema, ignore_errors=True)
        if frame.height != len(lines):
            raise ValueError("line count differs")
    except (pl.exceptions.PolarsError, ValueError):
        frame = decode_lines(lines, read_schema)
    flags = _event_times(frame, hour).select(good_rows(topic, hour)).to_series().to_list()
    good = [ln for ln, ok in zip(lines, flags, strict=True) if ok]
    bad = [ln for ln, ok in zip(lines, flags, strict=True) if not ok]
    return good, bad
