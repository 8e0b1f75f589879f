"""The table registry: lazy scans of the warehouse and raw layouts, and SQL over them.

Tables are registered only when a statement names them, so a query over raw facts works
before the first rollup and an empty warehouse is reported as such rather than as an
engine error. Warehouse scans are Hive-partitioned on ``event_day``: a filter on it never
opens the other days' files. Files that each hold one hour are also pruned by a filter on
the time column (``bucket_start``, raw ``event_time``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from gravix import schema
from gravix.errors import QueryError
from gravix.schema import RAW_COLUMNS, REQUEST_METRICS_COLUMNS, SERVICE_EVENTS_DAILY_COLUMNS
from gravix.storage import layout

PARTITION_COLUMN = "event_day"


@dataclass(frozen=True)
class TableInfo:
    name: str
    kind: str  # "warehouse" | "raw"
    columns: dict[str, str]  # logical types as in gravix.schema
    partitions: tuple[str, ...]  # Hive partition columns, in directory order


TABLES: dict[str, TableInfo] = {
    schema.REQUEST_METRICS_MINUTE: TableInfo(
        schema.REQUEST_METRICS_MINUTE, "warehouse", REQUEST_METRICS_COLUMNS, (PARTITION_COLUMN,)
    ),
    schema.SERVICE_EVENTS_DAILY: TableInfo(
        schema.SERVICE_EVENTS_DAILY, "warehouse", SERVICE_EVENTS_DAILY_COLUMNS, (PARTITION_COLUMN,)
    ),
    schema.REQUEST_FACTS: TableInfo(
        schema.REQUEST_FACTS, "raw", RAW_COLUMNS[schema.REQUEST_FACTS], (PARTITION_COLUMN, "hour")
    ),
    schema.SERVICE_EVENTS: TableInfo(
        schema.SERVICE_EVENTS, "raw", RAW_COLUMNS[schema.SERVICE_EVENTS], (PARTITION_COLUMN, "hour")
    ),
}


def table_names() -> list[str]:
    return list(TABLES)


def polars_type(logical: str) -> pl.DataType:
    """The polars type of a logical column type of gravix.schema. A raw ``properties`` map
    stays JSON text: its keys differ from event to event."""
    simple: dict[str, pl.DataType] = {
        "string": pl.String(),
        "int8": pl.Int8(),
        "int32": pl.Int32(),
        "int64": pl.Int64(),
        "double": pl.Float64(),
        "timestamp[ms, UTC]": pl.Datetime("ms", "UTC"),
        "map<string,string>": pl.String(),
    }
    if logical in simple:
        return simple[logical]
    m = re.fullmatch(r"list<(.+)>", logical)
    if m:
        return pl.List(polars_type(m.group(1)))
    raise ValueError(f"no polars type for {logical!r}")


def table_files(root: Path, table: str) -> list[str]:
    """The complete data files of a table. Temporaries (hidden) never match, and no symlink
    is followed, so a query never reads outside the data root."""
    info = _info(table)
    if info.kind == "raw":
        hours = layout.raw_hours(root, table)
        return [str(p) for hour_dir in hours.values() for p in layout.raw_files(hour_dir)]
    files: list[str] = []
    for day_dir in layout.warehouse_days(root, table).values():
        files.extend(
            entry.path
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


def scan_table(root: Path, table: str) -> pl.LazyFrame:
    """A lazy scan of one table; raises QueryError (with what to run) when it has no files."""
    info = _info(table)
    files = table_files(root, table)
    if info.kind == "warehouse":
        if not files:
            raise QueryError(
                f"the warehouse has no {table} data yet (no Parquet files under "
                f"{layout.warehouse_table_dir(root, table)})",
                hint="run `gravix rollup` to build the warehouse from the raw facts",
            )
        return _scan_files(table, files)
    if not files:
        raise QueryError(
            f"there are no raw {table} files yet (none under {layout.raw_topic_dir(root, table)})",
            hint="send events to `gravix ingest-server`, or run `gravix recover` to move "
            "buffered files into raw",
        )
    return _scan_files(table, files)


# --- SQL ------------------------------------------------------------------------------------------

# String literals and comments are masked before names are looked for, so that a literal such
# as 'raw.request_facts' is never rewritten.
_LITERALS = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)
_QUALIFIER = re.compile(
    r'(?<![\w."])(?:(?:"gravix"|gravix)\s*\.\s*)?(?:"raw"|raw)\s*\.\s*(?=["\w])', re.IGNORECASE
)
# A relation follows FROM, JOIN or a comma in a FROM list (a column named like a table would
# also match after a comma, but no column is).
_RELATION = re.compile(r'(?:\bFROM|\bJOIN|,)\s*(?:"(\w+)"|([A-Za-z_]\w*))', re.IGNORECASE)
# Table functions read any path; queries stay inside the data root's tables.
_FILE_FUNCTION = re.compile(r"\b(read_\w+|scan_\w+)\s*\(", re.IGNORECASE)
_NOT_FOUND = re.compile(r"relation '([^']*)' was not found")


_TABLES_HINT = f"the tables are: {', '.join(TABLES)} (bare, raw.<t> or gravix.raw.<t>)"


def _mask(sql: str) -> str:
    return _LITERALS.sub(lambda m: " " * len(m.group(0)), sql)


def rewrite_names(sql: str) -> str:
    """Drop the Trino-style ``gravix.raw.`` / ``raw.`` qualifiers from table names."""
    masked = _mask(sql)
    out: list[str] = []
    last = 0
    for m in _QUALIFIER.finditer(masked):
        out.append(sql[last : m.start()])
        last = m.end()
    out.append(sql[last:])
    return "".join(out)


def referenced_tables(sql: str) -> set[str]:
    """The known tables a statement reads (outside literals and comments): only those are
    scanned, so an alias or a literal that happens to spell a table's name costs nothing."""
    names = {(m.group(1) or m.group(2)).lower() for m in _RELATION.finditer(_mask(sql))}
    return {t for t in TABLES if t in names}


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


def prepare_sql(root: Path, sql: str) -> pl.LazyFrame:
    """Compile SQL over the tables into a lazy query (nothing is read yet)."""
    if not sql.strip():
        raise QueryError("the SQL statement is empty", hint='e.g. gravix query "SELECT 1"')
    text = rewrite_names(sql).strip().rstrip(";")
    reader = _FILE_FUNCTION.search(_mask(text))
    if reader:
        raise QueryError(
            f"{reader.group(1)}() is not available: queries read the Gravix tables only",
            hint=_TABLES_HINT,
        )
    frames = {name: scan_table(root, name) for name in sorted(referenced_tables(text))}
    lazy = _compile(text, frames)
    narrowed = False
    for table in [t for t in frames if t in _HOURLY]:
        files = _files_for_time_filter(root, table, lazy)
        if files is not None:
            frames[table] = _scan_files(table, files)
            narrowed = True
    return _compile(text, frames) if narrowed else lazy


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


# Tables whose files each hold one hour: the time column, and how a file's path names its hour.
_HOURLY: dict[str, tuple[str, re.Pattern[str]]] = {
    schema.REQUEST_METRICS_MINUTE: (
        "bucket_start",
        re.compile(r"event_day=(\d{4}-\d{2}-\d{2})/part-(\d{2})\.parquet$"),
    ),
    **{
        topic: (
            "event_time",
            re.compile(r"event_day=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+\.jsonl$"),
        )
        for topic in schema.TOPICS
    },
}
_BOUND = re.compile(
    r'^col\("(\w+)"\) (>=|>|<=|<|==) '
    r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC$"
)


def _conjuncts(expr: str) -> list[str]:
    """Split a printed predicate at its top-level ``&``; quotes and brackets are respected."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(expr):
        if ch == '"' and (i == 0 or expr[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        elif not quoted and depth == 0 and expr.startswith(" & ", i):
            parts.append(expr[start:i])
            start = i + 3
    parts.append(expr[start:])
    out: list[str] = []
    for part in parts:
        part = part.strip()
        while part.startswith("(") and part.endswith(")") and _balanced(part[1:-1]):
            part = part[1:-1].strip()
        nested = _conjuncts(part) if len(parts) > 1 or part != expr.strip() else [part]
        out.extend(nested)
    return out


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def _files_for_time_filter(root: Path, table: str, lazy: pl.LazyFrame) -> list[str] | None:
    """The files of an hourly table that a filter on its time column (``bucket_start``,
    ``event_time``) can match, when every scan of the table in the optimised plan carries
    such a filter as a top-level conjunct; else None.

    Polars pushes the filter into the scan, but can use it at best on each file's statistics,
    so every file would still be opened; the path (``event_day=D/part-HH``,
    ``event_day=D/hour=HH/``) already tells which hour a file holds, so files outside the
    bounds are not handed to the scan at all.
    """
    column, hour_of = _HOURLY[table]
    info = TABLES[table]
    table_dir = str(
        layout.warehouse_table_dir(root, table)
        if info.kind == "warehouse"
        else layout.raw_topic_dir(root, table)
    )
    try:
        plan = lazy.explain()
    except pl.exceptions.PolarsError:
        return None
    lines = plan.splitlines()
    scans = [i for i, line in enumerate(lines) if "SCAN [" in line and table_dir in line]
    if not scans:
        return None
    per_scan: list[tuple[datetime | None, datetime | None]] = []
    for i in scans:
        selection = next(
            (
                ln.strip()[len("SELECTION: ") :]
                for ln in lines[i + 1 : i + 4]
                if ln.strip().startswith("SELECTION: ")
            ),
            None,
        )
        if selection is None:
            return None
        lo: datetime | None = None
        hi: datetime | None = None
        for part in _conjuncts(selection):
            m = _BOUND.match(part)
            if not m or m.group(1) != column:
                continue
            moment = datetime.fromisoformat(m.group(3)).replace(tzinfo=UTC)
            if m.group(2) in (">=", ">", "=="):
                lo = moment if lo is None else max(lo, moment)
            if m.group(2) in ("<=", "<", "=="):
                hi = moment if hi is None else min(hi, moment)
        if lo is None and hi is None:
            return None
        per_scan.append((lo, hi))
    # several scans (a self-join): keep what any of them may need
    low = None if any(lo is None for lo, _ in per_scan) else min(lo for lo, _ in per_scan if lo)
    high = None if any(hi is None for _, hi in per_scan) else max(hi for _, hi in per_scan if hi)
    kept = []
    for path in table_files(root, table):
        m = hour_of.search(path)
        if not m:
            return None  # a file that is not one hour: cannot tell what it holds
        start = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}:00:00+00:00")
        if (high is None or start <= high) and (low is None or start + timedelta(hours=1) > low):
            kept.append(path)
    return kept


def _scan_files(table: str, files: list[str]) -> pl.LazyFrame:
    info = TABLES[table]
    schema = {c: polars_type(t) for c, t in info.columns.items()}
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
