"""The nodes of a parsed statement that its checks read, gathered in one walk of the tree.

The guard (tables, CTEs, table functions, writes nested anywhere), the rewriting of table
names (tables, qualified columns) and the time literals (comparisons) each ask for a few
kinds of node. Walking the whole tree once per question costs more than the questions, so
one breadth-first walk sorts every node by kind, in the order ``find_all`` would yield
them: a check that reports the first offending node reports the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlglot import exp

COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)

_TABLE, _CTE, _COLUMN, _COMPARISON, _SOURCE, _CHANGE = (1 << bit for bit in range(6))
_KIND_OF: list[tuple[tuple[type[exp.Expr], ...], int]] = [
    ((exp.Table,), _TABLE | _SOURCE),
    ((exp.CTE,), _CTE),
    ((exp.Column,), _COLUMN),
    ((exp.Between, *COMPARISONS), _COMPARISON),
    ((exp.From, exp.Join, exp.Func), _SOURCE),
    ((exp.DML, exp.DDL, exp.Command), _CHANGE),
]
# The kinds of each node class met so far: a class is judged once per process.
_KINDS: dict[type[exp.Expr], int] = {}


@dataclass(frozen=True)
class Nodes:
    """The nodes of one tree by kind, each in breadth-first order."""

    tables: tuple[exp.Table, ...]
    ctes: tuple[exp.CTE, ...]
    columns: tuple[exp.Column, ...]
    comparisons: tuple[exp.Expr, ...]  # BETWEEN, =, <>, <, <=, >, >=
    sources: tuple[exp.Expr, ...]  # what a statement can read from: tables, FROM, JOIN, functions
    changes: tuple[exp.Expr, ...]  # DML, DDL and commands: what no read may hold


def _kind(cls: type[exp.Expr]) -> int:
    kind = 0
    for classes, bits in _KIND_OF:
        if issubclass(cls, classes):
            kind |= bits
    _KINDS[cls] = kind
    return kind


def collect(tree: exp.Expr) -> Nodes:
    """Every node of ``tree`` (itself included) that some check reads, sorted by kind."""
    found: tuple[list[exp.Expr], ...] = ([], [], [], [], [], [])
    queue = [tree]
    for node in queue:  # the queue grows behind the loop: breadth first
        kind = _KINDS.get(type(node))
        if kind is None:
            kind = _kind(type(node))
        if kind:
            for index, group in enumerate(found):
                if kind >> index & 1:
                    group.append(node)
        for value in node.args.values():
            if isinstance(value, exp.Expr):
                queue.append(value)
            elif isinstance(value, list):
                queue.extend(item for item in value if isinstance(item, exp.Expr))
    tables, ctes, columns, comparisons, sources, changes = found
    return Nodes(
        tables=cast("tuple[exp.Table, ...]", tuple(tables)),
        ctes=cast("tuple[exp.CTE, ...]", tuple(ctes)),
        columns=cast("tuple[exp.Column, ...]", tuple(columns)),
        comparisons=tuple(comparisons),
        sources=tuple(sources),
        changes=tuple(changes),
    )
