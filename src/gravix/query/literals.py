"""Time values as the engine can compare them with the UTC time columns.

polars compares a UTC timestamp column with a string (read as UTC) but refuses
``TIMESTAMP '…'`` and ``now()`` (zone-less values) against it. So a constant time
expression compared with a time column — ``TIMESTAMP '2026-02-16 10:00:00'``,
``now() - INTERVAL '3 hours'`` — is evaluated here (as :mod:`gravix.query.prune` reads
it) and spelt as the UTC string it stands for; the rest of the statement is left as
written. The text span of such an expression is found from the tokens: the run of tokens
next to the column that parses back to the same tree.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import Token

from gravix.query.prune import evaluate
from gravix.query.sql import Edit, Statement, parse_run

_MAX_TOKENS = 40  # a constant time expression longer than this is left as written


def time_edits(statement: Statement, columns: Collection[str], *, now: datetime) -> list[Edit]:
    """Edits that spell each constant time compared with one of ``columns`` as a UTC
    string literal."""
    text = statement.source
    tokens = list(statement.tokens)
    edits: list[Edit] = []
    for node in statement.nodes.comparisons:
        for moment, span in _operands(text, tokens, node, columns, now):
            edits.append((*span, f"'{moment:%Y-%m-%d %H:%M:%S.%f}'"))
    return edits


def _operands(
    text: str, tokens: list[Token], node: exp.Expr, columns: Collection[str], now: datetime
) -> list[tuple[datetime, tuple[int, int]]]:
    """The constant times compared with a time column, with their text spans. A span is
    searched for only when its operand is a constant time: the search parses many runs
    of tokens."""
    left, right = node.this, node.args.get("expression")
    found: list[tuple[datetime | None, tuple[int, int] | None]] = []
    if isinstance(node, exp.Between):
        if not _is_time_column(left, columns):
            return []
        low, high = node.args["low"], node.args["high"]
        first = _token_after(tokens, left) + 1  # after BETWEEN
        low_span = _span_from(text, tokens, first, low)  # (where the high operand starts)
        if low_span is None:
            return []
        after_and = _index_starting_after(tokens, low_span[1]) + 1
        found.append((evaluate(low, now), low_span))
        moment = evaluate(high, now)
        if moment is not None:
            found.append((moment, _span_from(text, tokens, after_and, high)))
    elif right is None:
        return []
    elif _is_time_column(left, columns) and _rewritable(right):
        moment = evaluate(right, now)
        if moment is not None:
            first = _token_after(tokens, left) + 1
            found.append((moment, _span_from(text, tokens, first, right)))
    elif _is_time_column(right, columns) and _rewritable(left):
        moment = evaluate(left, now)
        if moment is not None:
            last = _token_before(tokens, right) - 1
            found.append((moment, _span_until(text, tokens, last, left)))
    return [(m, span) for m, span in found if m is not None and span is not None]


def _is_time_column(node: exp.Expr | None, columns: Collection[str]) -> bool:
    return isinstance(node, exp.Column) and node.name.lower() in columns


def _rewritable(node: exp.Expr | None) -> bool:
    """A string literal already compares as UTC: only other spellings are rewritten."""
    return node is not None and not (isinstance(node, exp.Literal) and node.is_string)


def _column_bounds(column: exp.Expr) -> tuple[int, int]:
    parts = column.parts if isinstance(column, exp.Column) else []
    metas = [p.meta for p in parts if "start" in p.meta and "end" in p.meta]
    if not metas:
        return -1, -1
    return min(m["start"] for m in metas), max(m["end"] for m in metas)


def _token_after(tokens: list[Token], column: exp.Expr) -> int:
    """The index of the token right after ``column`` (its operator), or a large index."""
    _, end = _column_bounds(column)
    return _index_starting_after(tokens, end + 1) if end >= 0 else len(tokens)


def _token_before(tokens: list[Token], column: exp.Expr) -> int:
    """The index of the token right before ``column`` (its operator), or -1."""
    start, _ = _column_bounds(column)
    before = [i for i, t in enumerate(tokens) if t.end < start]
    return before[-1] if start >= 0 and before else -1


def _index_starting_after(tokens: list[Token], offset: int) -> int:
    return next((i for i, t in enumerate(tokens) if t.start >= offset), len(tokens))


def _parses_to(text: str, run: list[Token], node: exp.Expr) -> bool:
    try:
        return bool(parse_run(run, text) == node)
    except SqlglotError:
        return False


def _span_from(
    text: str, tokens: list[Token], first: int, node: exp.Expr
) -> tuple[int, int] | None:
    """The longest run of tokens from ``first`` that parses to ``node``."""
    found = None
    for last in range(first, min(len(tokens), first + _MAX_TOKENS)):
        if _parses_to(text, tokens[first : last + 1], node):
            found = (tokens[first].start, tokens[last].end + 1)
    return found


def _span_until(
    text: str, tokens: list[Token], last: int, node: exp.Expr
) -> tuple[int, int] | None:
    """The shortest run of tokens ending at ``last`` that parses to ``node``."""
    for first in range(last, max(-1, last - _MAX_TOKENS), -1):
        if _parses_to(text, tokens[first : last + 1], node):
            return tokens[first].start, tokens[last].end + 1
    return None
