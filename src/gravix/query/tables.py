"""The table registry: lazy scans of the warehouse and raw layouts, and SQL over them.

Tables are registered only when a statement names them, so a query over raw facts works
before the first rollup and an empty warehouse is reported as such rather than as an
engine error. A statement passes the guard of :mod:`gravix.query.sql` first; each table
it reads is then scanned over only the files (one per hour, or per day) that its filters on
``event_day`` and the time column can match (:mod:`gravix.query.prune` reads them from SQL).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from gravix import schema
from gravix.errors import QueryError
from gravix.query.source import Root, StoreRoot, day_prefixes, owner
from gravix.query.span import HOUR, PARTITION_COLUMN, Span
from gravix.schema import RAW_COLUMNS, REQUEST_METRICS_COLUMNS, SERVICE_EVENTS_DAILY_COLUMNS
from gravix.schema.columns import polars_schema
from gravix.storage import layout, objects, raw
from gravix.storage import listing as disk


@dataclass(frozen=True)
class TableInfo:
    name: str
    kind: str  # "warehouse" | "raw"
    columns: dict[str, str]  # logical types as in gravix.schema
    partitions: tuple[str, ...]  # Hive partition columns, in directory order
    time_column: str | None = None  # the event-time column whose hour names a file


# The files of a table, each with the hours its name says it holds (one hour, or a day's).
Listing = list[tuple[str, tuple[layout.Hour, ...]]]

TABLES: dict[str, TableInfo] = {
    schema.REQUEST_METRICS_MINUTE: TableInfo(
        schema.REQUEST_METRICS_MINUTE,
        "warehouse",
        REQUEST_METRICS_COLUMNS,
        (PARTITION_COLUMN,),
        "bucket_start",
    ),
    schema.REQUEST_METRICS_HOUR: TableInfo(
        schema.REQUEST_METRICS_HOUR,
        "warehouse",
        REQUEST_METRICS_COLUMNS,
        (PARTITION_COLUMN,),
        "bucket_start",
    ),
    schema.SERVICE_EVENTS_DAILY: TableInfo(
        schema.SERVICE_EVENTS_DAILY, "warehouse", SERVICE_EVENTS_DAILY_COLUMNS, (PARTITION_COLUMN,)
    ),
    schema.REQUEST_FACTS: TableInfo(
        schema.REQUEST_FACTS,
        "raw",
        RAW_COLUMNS[schema.REQUEST_FACTS],
        (PARTITION_COLUMN, "hour"),
        "event_time",
    ),
    schema.SERVICE_EVENTS: TableInfo(
        schema.SERVICE_EVENTS,
        "raw",
        RAW_COLUMNS[schema.SERVICE_EVENTS],
        (PARTITION_COLUMN, "hour"),
        "event_time",
    ),
}


def table_names() -> list[str]:
    return list(TABLES)


def table_files(
    root: Root, table: str, *, start: datetime | None = None, end: datetime | None = None
) -> list[str]:
    """The complete data files of a table that may hold event time in ``[start, end)``
    (None: unbounded), judged by the hour or day each file's path names. Temporaries
    (hidden) never match, and no symlink is followed, so a query never reads outside the
    data root."""
    spans = [Span(start, end)]
    return matching_files(_listed(root, table, spans)[0], spans)


def matching_files(listing: Listing, spans: list[Span]) -> list[str]:
    """The files of ``listing`` that may hold a moment of any of ``spans`` (a file's hours
    are one hour, or a whole day: contiguous, so its first and last hour bound it)."""
    return [
        path
        for path, hours in listing
        if not hours or any(span.holds(hours[0].start, hours[-1].start + HOUR) for span in spans)
    ]


def _listed(root: Root, table: str, spans: list[Span]) -> tuple[Listing, bool]:
    """The files of ``table`` with their hours (at least those of the partitions that
    ``spans`` need: a store lists no others), and whether the table has any file at all."""
    if isinstance(root, StoreRoot):
        return _store_listing(root, table, spans)
    every = _listing(root, table)
    return every, bool(every)


def _store_listing(root: StoreRoot, table: str, spans: list[Span]) -> tuple[Listing, bool]:
    """The objects of ``table`` in the partitions ``spans`` need, named by URL, judged by
    their names as the local listing judges files."""
    is_raw = _info(table).kind == "raw"
    prefixes, any_day = day_prefixes(root, table, spans, raw=is_raw)
    urls = root.urls(prefixes)
    if is_raw:
        hours = [(url, objects.raw_hour_of(table, root.key(url))) for url in urls]
        return [(url, (hour,)) for url, hour in hours if hour is not None], any_day
    by_day: dict[str, list[str]] = {}
    for url in urls:
        if objects.warehouse_day_of(table, root.key(url)) is not None:
            directory, _, name = url.rpartition("/")
            by_day.setdefault(directory, []).append(name)
    files: Listing = []
    for directory, names in by_day.items():
        for name in layout.readable_files(table, names):
            url = f"{directory}/{name}"
            files.append((url, tuple(layout.parse_warehouse_file(table, root.key(url)))))
    return files, any_day


def held_hours(root: Root, table: str, spans: list[Span]) -> set[layout.Hour]:
    """The hours that the files of ``table`` hold, judged by their names (at least those of
    the partitions ``spans`` need)."""
    return {hour for _, hours in _listed(root, table, spans)[0] for hour in hours}


def _listing(root: Path, table: str) -> Listing:
    """Every complete data file of ``table`` with the hours its path says it holds."""
    if _info(table).kind == "raw":
        return [(path, (hour,)) for path, hour in disk.raw_files(root, table)]
    return disk.warehouse_files(root, table)


def _info(table: str) -> TableInfo:
    try:
        return TABLES[table]
    except KeyError:
        raise QueryError(
            f"unknown table {table!r}", hint=f"the tables are: {', '.join(TABLES)}"
        ) from None


def scan_table(
    root: Root, table: str, *, start: datetime | None = None, end: datetime | None = None
) -> pl.LazyFrame:
    """A lazy scan of one table over the files that may hold event time in ``[start, end)``
    (the rows are not filtered here); raises QueryError (with what to run) when the table
    has no files at all."""
    return scan_spans(root, table, [Span(start, end)])


def scan_spans(root: Root, table: str, spans: list[Span]) -> pl.LazyFrame:
    """A lazy scan of one table over the files that may hold event time in any of ``spans``;
    raises QueryError (with what to run) when the table has no files at all."""
    scan = scan_for_sql(root, table, spans)
    if scan.empty:
        raise QueryError(scan.empty, hint=_EMPTY_HINT[_info(table).kind])
    return scan.frame


@dataclass(frozen=True)
class Scan:
    """One table as a statement reads it: the frame, the files it reads, how many raw lines
    were skipped as damaged, and why it is empty when the table has no files at all."""

    frame: pl.LazyFrame
    files: tuple[str, ...]
    skipped: int = 0
    empty: str = ""


_EMPTY_HINT = {
    "warehouse": "run `gravix rollup` to build the warehouse from the raw facts",
    "raw": "send events to `gravix ingest-server`, or run `gravix recover` to move "
    "buffered files into raw",
}


def scan_for_sql(root: Root, table: str, spans: list[Span]) -> Scan:
    """One table over the files that may hold event time in any of ``spans``; a table with
    no files at all is an empty frame with its columns (and says so in ``empty``)."""
    info = _info(table)
    every, any_file = _listed(root, table, spans)
    wanted = sorted(matching_files(every, spans))
    listing = dict(every)
    empty = ""
    if not any_file:
        what = "no Parquet files" if info.kind == "warehouse" else "no raw files"
        empty = f"{table} has no data yet ({what} under {_where(root, table)})"
    if info.kind == "raw":
        hours = {path: listing[path] for path in wanted if path in listing}
        frame, skipped = _read_raw(root, table, hours)
        return Scan(frame, tuple(wanted), skipped, empty)
    return Scan(_scan_parquet(root, table, wanted), tuple(wanted), 0, empty)


def _where(root: Root, table: str) -> str:
    is_raw = _info(table).kind == "raw"
    if isinstance(root, StoreRoot):
        return root.where(table, raw=is_raw)
    directory = layout.raw_topic_dir if is_raw else layout.warehouse_table_dir
    return str(directory(root, table))


def _read_raw(
    root: Root, table: str, files: dict[str, tuple[layout.Hour, ...]]
) -> tuple[pl.LazyFrame, int]:
    """The good lines of the raw files, hour by hour, judged as the rollup judges them
    (:mod:`gravix.storage.raw`), and how many lines were skipped. A store's objects are
    fetched side by side first (each is a request)."""
    info = TABLES[table]
    by_hour: dict[layout.Hour, list[str]] = {}
    for name, hours in files.items():
        by_hour.setdefault(hours[0], []).append(name)
    fetched: dict[str, bytes | None] = {}
    if isinstance(root, StoreRoot):
        fetched = dict(root.read(list(files)))
    frames: list[pl.DataFrame] = []
    skipped = 0
    for hour, names in sorted(by_hour.items()):
        if isinstance(root, StoreRoot):
            got = [(name, data) for name in names if (data := fetched[name]) is not None]
            read = raw.read_hour_objects(table, hour, got, list(info.columns))
        else:
            read = raw.read_hour_files(table, hour, [Path(n) for n in names], list(info.columns))
        frames.append(read.frame.select(list(info.columns)))
        skipped += read.bad
    if not frames:
        return pl.LazyFrame(schema=polars_schema(info.columns)), 0
    return pl.concat(frames, how="vertical").lazy(), skipped


def _scan_parquet(root: Root, table: str, files: list[str]) -> pl.LazyFrame:
    schema = polars_schema(TABLES[table].columns)
    if not files:
        return pl.LazyFrame(schema={**schema, PARTITION_COLUMN: pl.Date()})
    return pl.scan_parquet(
        files,
        hive_partitioning=True,
        hive_schema={PARTITION_COLUMN: pl.Date()},
        schema=schema,
        missing_columns="insert",
        storage_options=_options(root),
    )


def scan_files(root: Root, files: list[str]) -> pl.LazyFrame:
    """A lazy scan of warehouse files listed by :func:`table_files`, as they are."""
    return pl.scan_parquet(files, storage_options=_options(root))


def _options(root: Root) -> dict[str, str] | None:
    """How polars' own S3 reader reaches a store's objects (None: local files)."""
    return root.store.scan_options() if isinstance(root, StoreRoot) else None


# --- reading -------------------------------------------------------------------------------------


def first_line(text: str) -> str:
    """The first useful line of an engine's message, without polars' generic prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "the SQL engine gave no reason"
    message = lines[0]
    for prefix in ("sql parser error:", "SQL parser error:"):
        if message.startswith(prefix):
            message = message[len(prefix) :].strip()
    return message[:300]


def damaged_parquet(files: list[str]) -> list[tuple[str, str]]:
    """The files of ``files`` that do not read in full (every page), with why."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found: list[tuple[str, str]] = []
    for name in files:
        store = owner(name)
        try:
            data = store.read([name])[0][1] if store is not None else None
            if store is not None and data is None:
                continue  # removed since it was listed
            with pq.ParquetFile(name if data is None else pa.BufferReader(data)) as pf:
                for group in range(pf.num_row_groups):
                    pf.read_row_group(group)
        except FileNotFoundError:
            continue  # replaced or removed since: not damage
        except (pa.ArrowException, OSError, ValueError, IndexError, EOFError) as exc:
            found.append((name, first_line(f"{type(exc).__name__}: {exc}")[:200]))
    return found


def damage_error(files: list[str]) -> QueryError | None:
    """The error naming a damaged Parquet file among ``files``, or None when all read."""
    damaged = damaged_parquet([f for f in files if f.endswith(layout.PARQUET)])
    if not damaged:
        return None
    name, why = damaged[0]
    more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
    return QueryError(
        f"a warehouse file is damaged and cannot be read: {name}{more}: {why}",
        hint="run `gravix recover --deep`: it quarantines damaged Parquet files and "
        "rebuilds their hours from raw",
    )


def read_failure(exc: BaseException, files: list[str]) -> QueryError:
    """The error a failed read of ``files`` is reported as: the damaged file by name when
    one is found, never the engine's traceback."""
    return damage_error(files) or QueryError(
        f"the query failed: {first_line(str(exc))}",
        hint="`gravix doctor` checks the raw and warehouse files; `gravix recover --deep` "
        "quarantines damaged Parquet files and rebuilds them from raw",
    )


def warehouse_files(root: Root) -> list[str]:
    """Every warehouse data file: where to look when a read of the warehouse fails."""
    warehouse = [name for name, info in TABLES.items() if info.kind == "warehouse"]
    return [path for name in warehouse for path in table_files(root, name)]


# A rollup replaces an hour's file by renaming a new one over it. A scan that opens a
# file twice (once for the footer, once for the data) can straddle that rename and fail
# (polars panics, DuckDB reports invalid data); planning again reads a consistent file.
_REPLACED_RETRIES = 3
# What a damaged page can surface as (besides a panic): decoding errors, and lengths that
# disagree when a page decodes to the wrong number of values.
READ_ERRORS = (
    pl.exceptions.ComputeError,
    pl.exceptions.ShapeError,
    pl.exceptions.PanicException,
    OSError,
)


def collect_stable(
    plan: Callable[[], pl.LazyFrame], *, suspects: Callable[[], list[str]] = list
) -> pl.DataFrame:
    """Collect ``plan()``, planning again when a file was replaced while it was read; a
    read that keeps failing is a QueryError naming the damaged file among ``suspects()``."""
    for attempt in range(_REPLACED_RETRIES + 1):
        lazy = plan()
        try:
            return lazy.collect()
        except READ_ERRORS as exc:
            # a damaged file fails every attempt (and a panic prints each time): name it now
            damage = damage_error(suspects())
            if damage is not None:
                raise damage from None
            if attempt == _REPLACED_RETRIES:
                raise read_failure(exc, []) from None
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")
