"""Partition pruning from filters read as data: the hours a statement can need from a table.

Every file of a table holds one hour (or, for the daily table, one day), and its path says
which. From the parsed WHERE of each SELECT that reads a table, the top-level AND-ed
comparisons of ``event_day`` or of the table's time column (``bucket_start``, raw
``event_time``) with a value that can be evaluated here — a string, ``TIMESTAMP '…'``,
``DATE '…'``, ``now() - INTERVAL '3 hours'`` — give a span of event time; files outside it
are not opened. Anything else is ignored: that only means fewer files pruned. The filters
still apply to the rows, so an answer never depends on the pruning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlglot import exp

from gravix.errors import ConfigError
from gravix.query.span import PARTITION_COLUMN, Span
from gravix.query.sql import Statement, TableRef
from gravix.units import parse_duration

_TICK = timedelta(microseconds=1)
_DAY = timedelta(days=1)
# now() is evaluated here, a moment before the engine evaluates it: an upper bound taken
# from it is widened so that the engine's later now() never falls past it.
NOW_SLACK = timedelta(minutes=5)
_TIME_TYPES = {
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPTZ,
    exp.DataType.Type.TIMESTAMPLTZ,
    exp.DataType.Type.TIMESTAMPNTZ,
    exp.DataType.Type.DATETIME,
    exp.DataType.Type.DATE,
}
_INTERVAL_UNITS = {"second": "s", "minute": "m", "hour": "h", "day": "d", "week": "w"}
_FLIP: dict[type[exp.Expr], type[exp.Binary]] = {
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
    exp.EQ: exp.EQ,
}


def table_spans(
    statement: Statement, time_columns: Mapping[str, str | None], *, now: datetime
) -> dict[str, list[Span]]:
    """Per table the statement reads, the spans of event time its reads may need (one per
    read, or one unbounded span when any read is unbounded)."""
    spans: dict[str, list[Span]] = {}
    for ref in statement.refs:
        span = ref_span(ref, time_columns.get(ref.name), now)
        found = spans.setdefault(ref.name, [])
        if span not in found:
            found.append(span)
    return {name: [Span()] if Span() in found else found for name, found in spans.items()}


def ref_span(ref: TableRef, time_column: str | None, now: datetime) -> Span:
    """The span the WHERE of the SELECT that reads ``ref`` allows."""
    holder = ref.node.parent
    select = holder.parent if holder is not None else None
    if not isinstance(holder, exp.From | exp.Join) or not isinstance(select, exp.Select):
        return Span()
    where = select.args.get("where")
    if where is None:
        return Span()
    columns = {c for c in (time_column, PARTITION_COLUMN) if c}
    target = _Target(columns, ref.alias.lower(), sole=not select.args.get("joins"))
    span = Span()
    for condition in _conjuncts(where.this):
        span = span.narrow(_condition_span(condition, target, time_column, now))
    return span


@dataclass(frozen=True)
class _Target:
    columns: set[str]
    qualifier: str
    sole: bool  # the SELECT reads only this table: an unqualified column is its column

    def column(self, node: exp.Expr) -> str | None:
        if not isinstance(node, exp.Column) or node.name.lower() not in self.columns:
            return None
        qualifier = node.table.lower()
        if (qualifier == "" and self.sole) or qualifier == self.qualifier:
            return str(node.name.lower())
        return None


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return [*_conjuncts(node.left), *_conjuncts(node.right)]
    return [node]


def _condition_span(
    node: exp.Expr, target: _Target, time_column: str | None, now: datetime
) -> Span:
    if isinstance(node, exp.Between):
        name = target.column(node.this)
        if name is None:
            return Span()
        low = _bound(name, exp.GTE, node.args["low"], time_column, now)
        return low.narrow(_bound(name, exp.LTE, node.args["high"], time_column, now))
    if not isinstance(node, exp.Binary) or type(node) not in _FLIP:
        return Span()
    op = type(node)
    left, right = node.args.get("this"), node.args.get("expression")
    if left is None or right is None:
        return Span()
    name = target.column(left)
    if name is not None:
        return _bound(name, op, right, time_column, now)
    name = target.column(right)
    if name is not None:
        return _bound(name, _FLIP[op], left, time_column, now)
    return Span()


def _bound(
    column: str,
    op: type[exp.Binary],
    value: exp.Expr,
    time_column: str | None,
    now: datetime,
) -> Span:
    """The span ``column op value`` allows (for ``event_day``, whole days)."""
    lower = op in (exp.GT, exp.GTE, exp.EQ)
    moment = evaluate(value, now if lower else now + NOW_SLACK)
    if moment is None:
        return Span()
    if column != time_column:  # event_day: the moment's day, rounded outwards
        day = datetime.combine(moment.date(), datetime.min.time(), UTC)
        midnight = moment == day
        after = day + _DAY
        starts = {exp.GT: after if midnight else day, exp.GTE: day, exp.EQ: day}
        ends = {exp.LT: day if midnight else after, exp.LTE: after, exp.EQ: after}
        return Span(starts.get(op), ends.get(op))
    starts = {exp.GT: moment, exp.GTE: moment, exp.EQ: moment}
    ends = {exp.LT: moment, exp.LTE: moment + _TICK, exp.EQ: moment + _TICK}
    return Span(starts.get(op), ends.get(op))


def evaluate(node: exp.Expr, now: datetime) -> datetime | None:
    """The moment a constant time expression stands for (naive times are UTC, as the engine
    reads them against the UTC columns), or None when it is not one this understands."""
    if isinstance(node, exp.Paren):
        return evaluate(node.this, now)
    if isinstance(node, exp.Literal) and node.is_string:
        return _parse_moment(node.this)
    if isinstance(node, exp.Cast) and node.to.this in _TIME_TYPES:
        return evaluate(node.this, now)
    if isinstance(node, exp.CurrentTimestamp) or (
        isinstance(node, exp.Anonymous) and node.name.lower() == "now" and not node.expressions
    ):
        return now
    if isinstance(node, exp.CurrentDate):
        return datetime.combine(now.date(), datetime.min.time(), UTC)
    if isinstance(node, exp.Add | exp.Sub):
        base, shift = evaluate(node.this, now), _interval(node.expression)
        if base is None or shift is None:
            return None
        return base + shift if isinstance(node, exp.Add) else base - shift
    return None


def _parse_moment(text: str) -> datetime | None:
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _interval(node: exp.Expr) -> timedelta | None:
    if not isinstance(node, exp.Interval):
        return None
    unit = node.args.get("unit")
    words = f"{node.this.name if node.this else ''} {unit.name if unit else ''}".split()
    if len(words) != 2:
        return None
    suffix = _INTERVAL_UNITS.get(words[1].lower().removesuffix("s"))
    if suffix is None:
        return None
    try:
        return timedelta(seconds=parse_duration(f"{words[0]}{suffix}"))
    except ConfigError:
        return None
