"""SQL over the Gravix tables: the guard, the scans its filters need, the engine, and an
answer that carries what its reader must know — raw lines skipped as damaged (counted as
the rollup counts them), tables that have no data yet.

Two things are answered here rather than by the engine: ``SHOW TABLES`` (from the
registry), and the name of an unaliased ``count(*)``, which polars calls ``len`` and users
(and every other engine's habits) call ``count``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import polars as pl
from sqlglot import exp

from gravix.errors import QueryError
from gravix.query import literals, prune
from gravix.query import sql as sql_guard
from gravix.query.source import Root
from gravix.query.tables import TABLES, Scan, collect_stable, first_line, scan_for_sql

# Columns a constant time is compared with as the UTC string it stands for.
_TIME_COLUMNS = {
    column
    for info in TABLES.values()
    for column, logical in info.columns.items()
    if logical.startswith("timestamp")
}
TABLES_HINT = sql_guard.hint(TABLES)
_COUNT_NAME = "count"
_POLARS_COUNT_NAME = "len"


def rewrite_names(sql: str) -> str:
    """Drop the Trino-style ``gravix.raw.`` / ``raw.`` qualifiers from table names."""
    return sql_guard.rewrite_names(sql, TABLES)


def referenced_tables(sql: str) -> set[str]:
    """The known tables a statement reads (outside literals and comments): only those are
    scanned, so an alias or a literal that happens to spell a table's name costs nothing."""
    return sql_guard.referenced_tables(sql, TABLES)


@dataclass(frozen=True)
class SqlAnswer:
    """The rows of one statement, and what a reader must know beside them. Rendered as
    JSON by :func:`gravix.report.to_json` (the frame as ``columns`` and ``rows``)."""

    JSON_EXTRA: ClassVar[tuple[str, ...]] = ("columns", "rows", "row_count")

    frame: pl.DataFrame = field(metadata={"json": False})
    skipped_lines: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.frame.to_dicts()

    @property
    def row_count(self) -> int:
        return self.frame.height


def _lexed(sql: str) -> sql_guard.Lexed:
    """The statement without the blanks and final ``;`` around it, tokenized: the one
    tokenizing of a call, read by every check and by the parser."""
    return sql_guard.lex(sql.strip().rstrip(";"))


def _statement(lexed: sql_guard.Lexed, now: datetime) -> sql_guard.Statement:
    if not lexed.text:
        raise QueryError("the SQL statement is empty", hint='e.g. gravix query "SELECT 1"')
    statement = sql_guard.check_lexed(lexed, TABLES)
    return statement.with_edits(literals.time_edits(statement, _TIME_COLUMNS, now=now))


def _scans(root: Root, statement: sql_guard.Statement, now: datetime) -> dict[str, Scan]:
    time_columns = {name: info.time_column for name, info in TABLES.items()}
    spans = prune.table_spans(statement, time_columns, now=now)
    return {name: scan_for_sql(root, name, found) for name, found in sorted(spans.items())}


def _compile(text: str, frames: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    context: pl.SQLContext[pl.LazyFrame] = pl.SQLContext(frames=frames)
    try:
        return context.execute(text, eager=False)
    except pl.exceptions.PolarsError as exc:
        missing = sql_guard.NOT_FOUND.search(str(exc))
        if missing:
            raise QueryError(f"unknown table {missing.group(1)!r}", hint=TABLES_HINT) from None
        raise QueryError(f"bad SQL: {first_line(str(exc))}") from None


def prepare_sql(root: Root, sql: str, *, now: datetime | None = None) -> pl.LazyFrame:
    """Compile SQL over the tables into a lazy query. Only a read of the Gravix tables is
    accepted, and each table is scanned over the files of the hours its filters can match."""
    moment = now or datetime.now(UTC)
    statement = _statement(_lexed(sql), moment)
    scans = _scans(root, statement, moment)
    return _compile(statement.text, {name: scan.frame for name, scan in scans.items()})


def answer_sql(root: Root, sql: str, *, now: datetime | None = None) -> SqlAnswer:
    """Run one SQL statement over the tables (names bare, ``raw.x`` or ``gravix.raw.x``)."""
    lexed = _lexed(sql)
    if sql_guard.is_show_tables(lexed):
        return SqlAnswer(show_tables())
    moment = now or datetime.now(UTC)
    statement = _statement(lexed, moment)
    planned: dict[str, Scan] = {}

    def plan() -> pl.LazyFrame:
        planned.clear()
        planned.update(_scans(root, statement, moment))
        return _compile(statement.text, {name: scan.frame for name, scan in planned.items()})

    def suspects() -> list[str]:
        return [name for scan in planned.values() for name in scan.files]

    try:
        frame = collect_stable(plan, suspects=suspects)
    except pl.exceptions.ColumnNotFoundError as exc:
        raise QueryError(
            f"unknown column: {first_line(str(exc))}",
            hint='list a table\'s columns with: gravix query "SELECT * FROM <table> LIMIT 1"',
        ) from None
    except pl.exceptions.PolarsError as exc:
        raise QueryError(f"the query failed: {first_line(str(exc))}") from None
    return SqlAnswer(
        _count_named(statement.tree, frame),
        {name: scan.skipped for name, scan in planned.items() if scan.skipped},
        tuple(_notes(planned)),
    )


def run_sql(root: Root, sql: str) -> pl.DataFrame:
    """The rows of one SQL statement over the tables (see :func:`answer_sql`)."""
    return answer_sql(root, sql).frame


def _notes(scans: dict[str, Scan]) -> list[str]:
    notes: list[str] = []
    for name, scan in scans.items():
        if scan.skipped:
            notes.append(
                f"{scan.skipped:,} damaged line(s) of raw {name} skipped, as the rollup skips "
                "them; `gravix recover` moves them to quarantine"
            )
        if scan.empty:
            kind = TABLES[name].kind
            run = "`gravix rollup` builds it" if kind == "warehouse" else "ingest fills it"
            notes.append(f"{scan.empty}: it answers zero rows; {run}")
    return notes


def show_tables() -> pl.DataFrame:
    """``SHOW TABLES``: the registry's tables and their kind (warehouse or raw)."""
    return pl.DataFrame(
        {"name": list(TABLES), "kind": [info.kind for info in TABLES.values()]},
        schema={"name": pl.String, "kind": pl.String},
    )


def _first_select(tree: exp.Expr) -> exp.Select | None:
    """The SELECT whose projections name the result's columns (the left arm of a UNION)."""
    node = tree
    while isinstance(node, exp.SetOperation):
        node = node.left
    if isinstance(node, exp.Subquery):
        node = node.unnest()
    return node if isinstance(node, exp.Select) else None


def _count_named(tree: exp.Expr, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the column of an unaliased ``count(*)`` named ``count``, not ``len``."""
    select = _first_select(tree)
    if select is None or _COUNT_NAME in frame.columns:
        return frame
    projections = select.expressions
    if any(isinstance(p, exp.Star) for p in projections) or len(projections) != frame.width:
        return frame
    for index, node in enumerate(projections):
        is_count_star = isinstance(node, exp.Count) and isinstance(node.this, exp.Star)
        if is_count_star and frame.columns[index] == _POLARS_COUNT_NAME:
            return frame.rename({_POLARS_COUNT_NAME: _COUNT_NAME})
    return frame
