"""The SQL guard: a statement is parsed (sqlglot) before polars sees it, and only a read of
Gravix's tables gets through.

What the parsed tree decides, whatever the spelling (quoted, back-ticked, any case, inside a
sub-query or a CTE): the statement reads (SELECT, WITH … SELECT, UNION …) and changes
nothing; every relation it reads is a Gravix table (bare, ``raw.<t>`` or ``gravix.raw.<t>``),
a CTE of the statement, a sub-query or a VALUES list, never a table function such as
``read_csv(…)``. Table names are then rewritten, in the original text, to the names the
tables are registered under, so polars runs exactly what the user wrote otherwise.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token

from gravix.errors import QueryError
from gravix.query.nodes import Nodes, collect

# sqlglot logs a warning when it falls back to an opaque Command (SHOW, SET …); such a
# statement is refused with a message of our own.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

RAW_SCHEMA = "raw"
CATALOG = "gravix"
NOT_FOUND = re.compile(r"relation '([^']*)' was not found")
# Statements that are not reads, refused by their first word before parsing (so that
# ATTACH or INSTALL read as a refusal, not as bad SQL); anything else is left to the parser
# and the tree checks. SHOW TABLES is answered from the registry before this.
_NOT_READ_WORDS = frozenset(
    (
        "ALTER",
        "ANALYZE",
        "ATTACH",
        "BEGIN",
        "CALL",
        "CHECKPOINT",
        "COMMENT",
        "COMMIT",
        "COPY",
        "CREATE",
        "DEALLOCATE",
        "DELETE",
        "DESCRIBE",
        "DETACH",
        "DROP",
        "EXECUTE",
        "EXPORT",
        "GRANT",
        "IMPORT",
        "INSERT",
        "INSTALL",
        "LOAD",
        "LOCK",
        "MERGE",
        "PRAGMA",
        "PREPARE",
        "PUT",
        "REINDEX",
        "REMOVE",
        "RENAME",
        "REPLACE",
        "RESET",
        "REVOKE",
        "ROLLBACK",
        "SET",
        "SHOW",
        "SUMMARIZE",
        "TRUNCATE",
        "UNLOAD",
        "UPDATE",
        "UPSERT",
        "USE",
        "VACUUM",
        "VALUES",
    )
)
_READ_HINT = "write a SELECT (WITH … SELECT, UNION … are fine) over the Gravix tables"


class StatementRefused(QueryError):
    """A statement the guard will not run (a write, a file read, several statements): a
    usage error, so the CLI exits 2."""

    exit_code = 2


class PolarsSQL(Postgres):
    """Postgres as polars reads it: identifiers may also be back-ticked."""

    class Tokenizer(Postgres.Tokenizer):
        IDENTIFIERS: ClassVar[list[str | tuple[str, str]]] = ['"', "`"]


_DIALECT = PolarsSQL()


@dataclass(frozen=True)
class Lexed:
    """A statement's text and its tokens: tokenized once, then read by every check and by
    the parser."""

    text: str
    tokens: tuple[Token, ...]
    error: str = ""  # why the text does not tokenize ("" when it does)


def lex(sql: str) -> Lexed:
    """``sql`` and its tokens (none, and the reason, when it does not tokenize: the parser
    reports it)."""
    try:
        return Lexed(sql, tuple(_DIALECT.tokenize(sql)))
    except TokenError as exc:
        return Lexed(sql, (), str(exc).splitlines()[0][:300])


@dataclass(frozen=True)
class TableRef:
    """One read of a Gravix table: its registered name and the alias rows are read under."""

    name: str
    alias: str
    node: exp.Table


Edit = tuple[int, int, str]  # replace source[start:end] with the text


@dataclass(frozen=True)
class Statement:
    """A checked read statement: the text as written, the edits that make it the text
    polars runs (table names as registered), and the tables it reads."""

    source: str
    tree: exp.Expr
    refs: tuple[TableRef, ...]
    tokens: tuple[Token, ...]  # the tokens of ``source``
    nodes: Nodes  # the nodes of ``tree`` the checks read, by kind
    edits: tuple[Edit, ...] = ()

    @property
    def tables(self) -> set[str]:
        return {ref.name for ref in self.refs}

    @property
    def text(self) -> str:
        return apply_edits(self.source, self.edits)

    def with_edits(self, edits: list[Edit]) -> Statement:
        return replace(self, edits=(*self.edits, *edits))


def apply_edits(text: str, edits: Collection[Edit]) -> str:
    """``text`` with each non-overlapping ``(start, end, new)`` span replaced."""
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def hint(names: Collection[str]) -> str:
    return f"the tables are: {', '.join(names)} (bare, raw.<t> or gravix.raw.<t>)"


def parse_tree(sql: str) -> exp.Expr:
    """The one statement of ``sql`` as a tree; QueryError naming where it stops parsing."""
    return parse_lexed(lex(sql))


def parse_lexed(lexed: Lexed) -> exp.Expr:
    """The one statement of ``lexed`` as a tree, parsed from its tokens."""
    if lexed.error:
        raise QueryError(f"bad SQL: {lexed.error}")
    try:
        parsed = _DIALECT.parser().parse(list(lexed.tokens), lexed.text)
    except ParseError as exc:
        raise QueryError(f"bad SQL: {_parse_message(exc)}") from None
    trees = [t for t in parsed if t is not None]
    if not trees:
        raise QueryError("the SQL statement is empty", hint='e.g. gravix query "SELECT 1"')
    if len(trees) > 1:
        raise StatementRefused(
            f"one statement at a time, got {len(trees)}",
            hint="run each statement with its own gravix query",
        )
    return trees[0]


def parse_run(tokens: Sequence[Token], text: str) -> exp.Expr:
    """The tree of a run of the tokens of ``text``, as ``sqlglot.parse_one`` reads the run's
    text on its own (SqlglotError when it does not parse), without tokenizing it again."""
    trees = _DIALECT.parser().parse(list(tokens), text)
    if not trees or trees[0] is None:
        raise ParseError("no expression was parsed")
    return exp.Block(expressions=trees) if len(trees) > 1 else trees[0]


def _parse_message(exc: ParseError) -> str:
    if not exc.errors:
        return str(exc).splitlines()[0][:300]
    first = exc.errors[0]
    near = f"{first.get('start_context') or ''}{first.get('highlight') or ''}"
    near = " ".join(near.split())
    where = f"line {first.get('line')}, column {first.get('col')}"
    return f"{first.get('description')} at {where}, near {near!r}"[:300]


def check_statement(sql: str, names: Collection[str]) -> Statement:
    """Parse ``sql`` and refuse anything but a read of the tables ``names`` (or the plan of
    one: ``EXPLAIN SELECT …``)."""
    return check_lexed(lex(sql), names)


def check_lexed(lexed: Lexed, names: Collection[str]) -> Statement:
    """:func:`check_statement` of a statement already tokenized."""
    lexed, explain = _without_explain(lexed)
    _check_first_word(lexed)
    tree = parse_lexed(lexed)
    nodes = collect(tree)
    _check_read_only(tree, nodes)
    _check_sources(nodes)
    refs = _table_refs(nodes, names)
    edits = (*explain, *_name_edits(nodes, names))
    return Statement(lexed.text, tree, refs, lexed.tokens, nodes, edits)


def _table_refs(nodes: Nodes, names: Collection[str]) -> tuple[TableRef, ...]:
    """The reads of Gravix tables; any other name that is not a CTE is refused."""
    ctes = {cte.alias_or_name.lower() for cte in nodes.ctes}
    refs: list[TableRef] = []
    for table in nodes.tables:
        name = gravix_name(table, names)
        if name is not None:
            refs.append(TableRef(name, table.alias_or_name, table))
        elif table.db or table.catalog or table.name.lower() not in ctes:
            spelled = ".".join(part.name for part in table.parts)
            if any(mark in spelled for mark in ("/", "\\", ":")):
                raise StatementRefused(
                    f"{spelled[:200]!r} is not a Gravix table: files and URLs cannot be read "
                    "from SQL",
                    hint=hint(names),
                )
            raise QueryError(f"unknown table {spelled!r}", hint=hint(names))
    return tuple(refs)


def _without_explain(lexed: Lexed) -> tuple[Lexed, list[Edit]]:
    """``lexed`` with a leading EXPLAIN blanked out (offsets unchanged), and the edit that
    puts it back for the engine."""
    first = lexed.tokens[0] if lexed.tokens else None
    if first is None or first.text.upper() != "EXPLAIN":
        return lexed, []  # (a text that does not tokenize: the parser reports it)
    sql, end = lexed.text, first.end + 1
    blanked = sql[: first.start] + " " * (end - first.start) + sql[end:]
    return lex(blanked), [(first.start, end, first.text)]


def is_show_tables(sql: str | Lexed) -> bool:
    """Whether ``sql`` is ``SHOW TABLES`` (any case, spacing, comments, a final ``;``)."""
    lexed = sql if isinstance(sql, Lexed) else lex(sql)
    return [t.text.upper() for t in lexed.tokens if t.text != ";"] == ["SHOW", "TABLES"]


def _check_first_word(lexed: Lexed) -> None:
    """Refuse a statement that does not start as a read, before it is parsed: ATTACH,
    INSTALL, COPY … read as an error of their own, not as bad SQL."""
    word = lexed.tokens[0].text.upper() if lexed.tokens else ""
    if word in _NOT_READ_WORDS:
        raise StatementRefused(
            f"only read statements can run here, not {word[:40]}", hint=_READ_HINT
        )


def _check_read_only(tree: exp.Expr, nodes: Nodes) -> None:
    if not isinstance(tree, exp.Query) or isinstance(tree, exp.Values):
        word = tree.key.upper() if not isinstance(tree, exp.Command) else str(tree.this).upper()
        raise StatementRefused(f"only read statements can run here, not {word}", hint=_READ_HINT)
    if nodes.changes:
        raise StatementRefused(
            f"only read statements can run here: found {nodes.changes[0].key.upper()} inside",
            hint=_READ_HINT,
        )


def _function_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key.lower()


def _check_sources(nodes: Nodes) -> None:
    """Refuse table functions: a relation that is not a named table, sub-query or VALUES,
    and any function named like a file reader wherever it appears."""
    for node in nodes.sources:
        source: exp.Expr | None = None
        if isinstance(node, exp.Table):
            source = None if isinstance(node.this, exp.Identifier) else node.this
        elif isinstance(node, exp.From | exp.Join):
            ok = isinstance(node.this, exp.Table | exp.Subquery | exp.Values)
            source = None if ok else node.this
        elif isinstance(node, exp.Func) and _function_name(node).startswith(("read_", "scan_")):
            source = node
        if source is not None:
            raise StatementRefused(
                f"{_function_name(source)}() is not available: queries read the Gravix tables only",
                hint="the tables are read by name; files and URLs cannot be read from SQL",
            )


def gravix_name(table: exp.Table, names: Collection[str]) -> str | None:
    """The registered name ``table`` spells (``t``, ``raw.t``, ``gravix.raw.t``, any case),
    or None when it names something else."""
    if not isinstance(table.this, exp.Identifier):
        return None
    return _registered(table.name, table.db, table.catalog, names)


def _registered(name: str, db: str, catalog: str, names: Collection[str]) -> str | None:
    qualifiers = (db.lower(), catalog.lower())
    if name.lower() in names and qualifiers in _QUALIFIERS:
        return name.lower()
    return None


_QUALIFIERS = {("", ""), (RAW_SCHEMA, ""), (RAW_SCHEMA, CATALOG)}


def _span(parts: list[exp.Expr]) -> tuple[int, int] | None:
    starts = [p.meta.get("start") for p in parts]
    ends = [p.meta.get("end") for p in parts]
    if any(s is None for s in starts) or any(e is None for e in ends):
        return None
    return min(s for s in starts if s is not None), max(e for e in ends if e is not None) + 1


def _name_edits(nodes: Nodes, names: Collection[str]) -> list[Edit]:
    """Edits that spell each table name (and each column qualified by a table's qualified
    name) as the table is registered; nothing else in the text changes."""
    edits: list[Edit] = []
    for table in nodes.tables:
        name = gravix_name(table, names)
        span = _span(table.parts) if name else None
        if name and span:
            edits.append((*span, name))
    for column in nodes.columns:
        if not column.args.get("db"):
            continue  # a bare alias or table name needs no rewriting
        name = _registered(column.table, column.db, column.catalog, names)
        parts = [column.args[k] for k in ("catalog", "db", "table") if column.args.get(k)]
        span = _span(parts) if name else None
        if name and span:
            edits.append((*span, name))
    return edits


def rewrite_names(sql: str, names: Collection[str]) -> str:
    """Drop the Trino-style ``gravix.raw.`` / ``raw.`` qualifiers from table names."""
    return apply_edits(sql, _name_edits(collect(parse_tree(sql)), names))


def referenced_tables(sql: str, names: Collection[str]) -> set[str]:
    """The known tables a statement reads: only those are scanned, so an alias or a literal
    that happens to spell a table's name costs nothing."""
    found = (gravix_name(t, names) for t in collect(parse_tree(sql)).tables)
    return {name for name in found if name is not None}
