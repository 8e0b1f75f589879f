"""The table registry: lazy scans of the warehouse and raw layouts, and SQL over them.

Tables are registered only when a statement names them, so a query over raw facts works
before the first rollup and an empty warehouse is reported as such rather than as an
engine error. A statement passes the guard of :mod:`gravix.query.sql` first; each table
it reads is then scanned over only the files (one per hour, or per day) that its filters on
``event_day`` and the time column can match (:mod:`gravix.query.prune`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from gravix import schema
from gravix.errors import QueryError
from gravix.query import literals, prune
from gravix.query import sql as sql_guard
from gravix.schema import RAW_COLUMNS, REQUEST_METRICS_COLUMNS, SERVICE_EVENTS_DAILY_COLUMNS
from gravix.schema.columns import polars_schema
from gravix.storage import layout

PARTITION_COLUMN = prune.PARTITION_COLUMN


@dataclass(frozen=True)
class TableInfo:
    name: str
    kind: str  # "warehouse" | "raw"
    columns: dict[str, str]  # logical types as in gravix.schema
    partitions: tuple[str, ...]  # Hive partition columns, in directory order
    time_column: str | None = None  # the event-time column whose hour names a file


TABLES: dict[str, TableInfo] = {
    schema.REQUEST_METRICS_MINUTE: TableInfo(
        schema.REQUEST_METRICS_MINUTE,
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
    root: Path, table: str, *, start: datetime | None = None, end: datetime | None = None
) -> list[str]:
    """The complete data files of a table that may hold event time in ``[start, end)``
    (None: unbounded), judged by the hour or day each file's path names. Temporaries
    (hidden) never match, and no symlink is followed, so a query never reads outside the
    data root."""
    span = prune.Span(start, end)
    return [
        path
        for path, hours in _listing(root, table)
        if not hours or any(span.holds_hour(hour.start) for hour in hours)
    ]


def _listing(root: Path, table: str) -> list[tuple[str, list[layout.Hour]]]:
    """Every complete data file of ``table`` with the hours its path says it holds."""
    info = _info(table)
    if info.kind == "raw":
        return [
            (str(p), [hour])
            for hour, hour_dir in layout.raw_hours(root, table).items()
            for p in layout.raw_files(hour_dir)
        ]
    files: list[tuple[str, list[layout.Hour]]] = []
    for day_dir in layout.warehouse_days(root, table).values():
        files.extend(
            (entry.path, layout.parse_warehouse_file(table, Path(entry.path)))
            for entry in sorted(os.scandir(day_dir), key=lambda e: e.name)
            if entry.name.endswith(layout.PARQUET)
            and not entry.name.startswith(".")
            and entry.is_file(follow_symlinks=False)
        )
    return files


def _info(table: str) -> TableInfo:
    try:
        return TABLES[table]
    except KeyError:
        raise QueryError(
            f"unknown table {table!r}", hint=f"the tables are: {', '.join(TABLES)}"
        ) from None


def scan_table(
    root: Path, table: str, *, start: datetime | None = None, end: datetime | None = None
) -> pl.LazyFrame:
    """A lazy scan of one table over the files that may hold event time in ``[start, end)``
    (the rows are not filtered here); raises QueryError (with what to run) when the table
    has no files at all."""
    return scan_spans(root, table, [prune.Span(start, end)])


def scan_spans(root: Path, table: str, spans: list[prune.Span]) -> pl.LazyFrame:
    """A lazy scan of one table over the files that may hold event time in any of ``spans``."""
    info = _info(table)
    wanted = {
        path for span in spans for path in table_files(root, table, start=span.start, end=span.end)
    }
    if wanted or _listing(root, table):
        return _scan_files(table, sorted(wanted))
    if info.kind == "warehouse":
        raise QueryError(
            f"the warehouse has no {table} data yet (no Parquet files under "
            f"{layout.warehouse_table_dir(root, table)})",
            hint="run `gravix rollup` to build the warehouse from the raw facts",
        )
    raise QueryError(
        f"there are no raw {table} files yet (none under {layout.raw_topic_dir(root, table)})",
        hint="send events to `gravix ingest-server`, or run `gravix recover` to move "
        "buffered files into raw",
    )


# --- SQL ------------------------------------------------------------------------------------------

_NOT_FOUND = re.compile(r"relation '([^']*)' was not found")
_TABLES_HINT = sql_guard.hint(TABLES)
# Columns a constant time is compared with as the UTC string it stands for.
_TIME_COLUMNS = {
    column
    for info in TABLES.values()
    for column, logical in info.columns.items()
    if logical.startswith("timestamp")
}


def rewrite_names(sql: str) -> str:
    """Drop the Trino-style ``gravix.raw.`` / ``raw.`` qualifiers from table names."""
    return sql_guard.rewrite_names(sql, TABLES)


def referenced_tables(sql: str) -> set[str]:
    """The known tables a statement reads (outside literals and comments): only those are
    scanned, so an alias or a literal that happens to spell a table's name costs nothing."""
    return sql_guard.referenced_tables(sql, TABLES)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "the SQL engine gave no reason"
    message = lines[0]
    # polars puts the useful part after a generic prefix on the first line
    for prefix in ("sql parser error:", "SQL parser error:"):
        if message.startswith(prefix):
            message = message[len(prefix) :].strip()
    return message[:300]


def prepare_sql(root: Path, sql: str, *, now: datetime | None = None) -> pl.LazyFrame:
    """Compile SQL over the tables into a lazy query (nothing is read yet). Only a read of
    the Gravix tables is accepted, and each table is scanned over the files of the hours
    its filters can match."""
    if not sql.strip():
        raise QueryError("the SQL statement is empty", hint='e.g. gravix query "SELECT 1"')
    text = sql.strip().rstrip(";")
    moment = now or datetime.now(UTC)
    statement = sql_guard.check_statement(text, TABLES)
    statement = statement.with_edits(literals.time_edits(statement, _TIME_COLUMNS, now=moment))
    time_columns = {name: info.time_column for name, info in TABLES.items()}
    spans = prune.table_spans(statement, time_columns, now=moment)
    frames = {name: scan_spans(root, name, found) for name, found in sorted(spans.items())}
    return _compile(statement.text, frames)


def _compile(text: str, frames: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    context: pl.SQLContext[pl.LazyFrame] = pl.SQLContext(frames=frames)
    try:
        return context.execute(text, eager=False)
    except pl.exceptions.SQLInterfaceError as exc:
        missing = _NOT_FOUND.search(str(exc))
        if missing:
            raise QueryError(f"unknown table {missing.group(1)!r}", hint=_TABLES_HINT) from None
        raise QueryError(f"bad SQL: {_first_line(str(exc))}") from None
    except pl.exceptions.SQLSyntaxError as exc:
        raise QueryError(f"bad SQL: {_first_line(str(exc))}") from None
    except pl.exceptions.PolarsError as exc:
        raise QueryError(f"bad SQL: {_first_line(str(exc))}") from None


def _scan_files(table: str, files: list[str]) -> pl.LazyFrame:
    info = TABLES[table]
    schema = polars_schema(info.columns)
    if info.kind == "raw":
        return pl.scan_ndjson(files, schema=schema) if files else pl.LazyFrame(schema=schema)
    if not files:
        return pl.LazyFrame(schema={**schema, PARTITION_COLUMN: pl.Date()})
    return pl.scan_parquet(
        files,
        hive_partitioning=True,
        hive_schema={PARTITION_COLUMN: pl.Date()},
        schema=schema,
        missing_columns="insert",
    )


# A rollup replaces an hour's file by renaming a new one over it. A scan that opens a
# file twice (once for the footer, once for the data) can straddle that rename and fail
# (polars panics, DuckDB reports invalid data); planning again reads a consistent file.
_REPLACED_RETRIES = 3


def collect_stable(plan: Callable[[], pl.LazyFrame]) -> pl.DataFrame:
    """Collect ``plan()``, planning again when a file was replaced while it was read."""
    for attempt in range(_REPLACED_RETRIES + 1):
        lazy = plan()
        try:
            return lazy.collect()
        except (pl.exceptions.ComputeError, pl.exceptions.PanicException, OSError) as exc:
            if attempt == _REPLACED_RETRIES:
                if isinstance(exc, pl.exceptions.PanicException):
                    raise QueryError(
                        f"reading a data file failed: {_first_line(str(exc))}",
                        hint="`gravix doctor` checks the raw and warehouse files and names the fix",
                    ) from None
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def run_sql(root: Path, sql: str) -> pl.DataFrame:
    """Run one SQL statement over the tables (names bare, ``raw.x`` or ``gravix.raw.x``)."""
    try:
        return collect_stable(lambda: prepare_sql(root, sql))
    except pl.exceptions.ColumnNotFoundError as exc:
        raise QueryError(
            f"unknown column: {_first_line(str(exc))}",
            hint='list a table\'s columns with: gravix query "SELECT * FROM <table> LIMIT 1"',
        ) from None
    except pl.exceptions.PolarsError as exc:
        missing = _NOT_FOUND.search(str(exc))
        if missing:
            raise QueryError(f"unknown table {missing.group(1)!r}", hint=_TABLES_HINT) from None
        message = _first_line(str(exc))
        hint = None
        if "parsing line" in message or "parquet" in message.lower():
            hint = (
                "a data file is damaged; `gravix doctor` checks the raw and warehouse files "
                "and names the fix"
            )
        raise QueryError(f"the query failed: {message}", hint=hint) from None
