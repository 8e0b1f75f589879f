"""Percentiles and Apdex read from stored histograms for every row of a frame at once.

The rules are those of :mod:`gravix.schema.sketch` (its ``quantiles_from_arrays`` and
``apdex_from_arrays`` read one histogram in Python): a quantile is the representative value
of the first bucket where the running count, zeros first, reaches ⌈q·n⌉, clamped to the
row's exact [min, max]; Apdex counts a bucket by its clamped representative value. Here the
histograms are exploded once and every row is read in polars, so a few thousand merged rows
cost one pass, not one Python loop per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gravix.schema import sketch

if TYPE_CHECKING:
    import polars as pl


@dataclass(frozen=True)
class HistogramColumns:
    """Where a frame keeps a histogram: the zero count, the bucket indexes and counts, and
    the exact extremes."""

    zero: str = "zero_count"
    idx: str = "idx"
    cnt: str = "cnt"
    lo: str = "latency_min_ms"
    hi: str = "latency_max_ms"


MERGED = HistogramColumns()
STORED = HistogramColumns(zero="lat_zero_count", idx="lat_idx", cnt="lat_cnt")


def with_estimates(
    frame: pl.DataFrame,
    quantiles: Sequence[tuple[str, float]],
    *,
    columns: HistogramColumns = MERGED,
    apdex_t_ms: float | None = None,
) -> pl.DataFrame:
    """``frame`` with a Float64 column per ``(name, q)`` of ``quantiles`` (and ``apdex`` for
    a threshold), null where a row's histogram is empty."""
    import polars as pl

    c = columns
    lo, hi, zero = pl.col(c.lo), pl.col(c.hi), pl.col(c.zero).fill_null(0)
    rows = frame.with_row_index("_row").with_columns(
        _n=zero + pl.col(c.cnt).list.sum().fill_null(0)
    )
    # the running count (zeros first) of each bucket, from a running sum inside each list
    running = zero + pl.col(c.cnt).list.eval(pl.element().cum_sum())
    long = (
        rows.select("_row", "_n", c.idx, c.cnt, c.lo, c.hi, _running=running)
        .explode([c.idx, c.cnt, "_running"])
        .drop_nulls(c.idx)
    )
    parts: list[pl.Expr] = [
        pl.col(c.idx).filter(pl.col("_running") >= _rank(pl.col("_n"), q)).first().alias(name)
        for name, q in quantiles
    ]
    if apdex_t_ms is not None:
        long = long.with_columns(_value=_values(long[c.idx]).clip(long[c.lo], long[c.hi]))
        parts.extend(_apdex_parts(apdex_t_ms, c))
    out = rows.join(long.group_by("_row").agg(parts), on="_row", how="left")
    n = pl.col("_n")
    # a picked bucket index becomes its representative value, clamped to the exact extremes
    out = out.with_columns(_values(out[name]).alias(name) for name, _ in quantiles)
    out = out.with_columns(
        pl.when(n <= 0)
        .then(None)
        .when(zero >= _rank(n, q))
        .then(pl.lit(0.0).clip(lo, hi))
        .otherwise(pl.col(name).clip(lo, hi))
        .cast(pl.Float64)
        .alias(name)
        for name, q in quantiles
    )
    if apdex_t_ms is not None:
        satisfied = zero + pl.col("_satisfied").fill_null(0)
        tolerating = pl.col("_tolerating").fill_null(0)
        out = out.with_columns(
            apdex=pl.when(n > 0).then((satisfied + tolerating / 2) / n).cast(pl.Float64)
        )
    return out.drop("_row", "_n", "_satisfied", "_tolerating", strict=False)


def _rank(n: pl.Expr, q: float) -> pl.Expr:
    """The rank rule's ⌈q·n⌉, at least 1."""
    return (n * q).ceil().clip(1)


def _values(indexes: pl.Series) -> pl.Series:
    """The representative value of each bucket index, as :func:`sketch.bucket_value`."""
    import polars as pl

    unique = indexes.drop_nulls().unique().to_list()
    table = {int(i): sketch.bucket_value(int(i)) for i in unique}
    return indexes.replace_strict(table, return_dtype=pl.Float64, default=None)


def _apdex_parts(t: float, c: HistogramColumns) -> tuple[pl.Expr, pl.Expr]:
    import polars as pl

    value, count = pl.col("_value"), pl.col(c.cnt)
    return (
        count.filter(value <= t).sum().alias("_satisfied"),
        count.filter((value > t) & (value <= 4 * t)).sum().alias("_tolerating"),
    )
