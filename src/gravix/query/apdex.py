"""Apdex for any threshold T, from the merged histograms, with the exact range it lies in."""

from __future__ import annotations

import math
from datetime import datetime

import polars as pl

from gravix.errors import ConfigError
from gravix.query.merge import Steps, merged, metrics
from gravix.query.result import PresetResult
from gravix.query.source import Root
from gravix.query.tables import collect_stable, warehouse_files
from gravix.query.times import resolve_window
from gravix.schema import sketch
from gravix.schema.estimates import with_estimates

_NOTE = (
    "histogram buckets are ±1.08% wide, so requests within ~2% of T or 4T cannot be "
    "classified exactly: the true Apdex lies in [apdex_low, apdex_high]"
)


def _apdex_bounds(threshold: float) -> tuple[int, int]:
    """(first bucket index not surely ≤ threshold, last bucket index possibly ≤ threshold)."""
    k = sketch.bucket_index(threshold)
    surely_below = k + 1 if sketch.lower_bound(k + 1) <= threshold else k
    return surely_below, k


def apdex(
    *,
    root: Root,
    threshold_ms: float,
    service: str | None = None,
    path_template: str | None = None,
    method: str | None = None,
    by_endpoint: bool = False,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    now: datetime | None = None,
) -> PresetResult:
    """Apdex for threshold T: (satisfied ≤ T + tolerating ≤ 4T / 2) / n, from the histograms.

    A histogram bucket that straddles T (or 4T) cannot be split, so beside the estimate
    (``sketch.apdex_from_arrays``'s rule) the answer gives the exact range the true value lies in:
    ``apdex_low`` counts that bucket's requests as above T, ``apdex_high`` as within it.
    """
    if not (threshold_ms > 0 and math.isfinite(threshold_ms)):
        raise ConfigError(
            f"the Apdex threshold must be a positive number of ms, got {threshold_ms}"
        )
    start, end = resolve_window(since, until, now=now)
    keys = ["service", *(["method", "path_template"] if by_endpoint else [])]
    groups = collect_stable(
        lambda: merged(
            metrics(
                root,
                [(start, end)],
                service=service,
                method=method,
                path_template=path_template,
                steps=Steps(),
            ),
            keys,
        ),
        suspects=lambda: warehouse_files(root),
    )
    frame = _with_estimates(_with_range(groups, keys, threshold_ms), threshold_ms)
    return PresetResult(
        "apdex",
        f"Apdex for T = {threshold_ms:g} ms (tolerating up to {4 * threshold_ms:g} ms)",
        frame.select(*keys, "requests", "apdex", "apdex_low", "apdex_high").sort(["apdex", *keys]),
        start,
        end,
        notes=(_NOTE,),
    )


def _with_range(groups: pl.DataFrame, keys: list[str], threshold_ms: float) -> pl.DataFrame:
    """Add ``apdex_low`` and ``apdex_high``: the bounds the true Apdex lies between."""
    t_sure, t_maybe = _apdex_bounds(threshold_ms)
    f_sure, f_maybe = _apdex_bounds(4 * threshold_ms)
    idx, cnt = pl.col("idx"), pl.col("cnt")
    counts = (
        groups.select(*keys, "idx", "cnt")
        .explode(["idx", "cnt"])
        .group_by(keys)
        .agg(
            t_sure=cnt.filter(idx < t_sure).sum(),
            t_maybe=cnt.filter(idx <= t_maybe).sum(),
            f_sure=cnt.filter(idx < f_sure).sum(),
            f_maybe=cnt.filter(idx <= f_maybe).sum(),
        )
    )
    frame = groups.join(counts, on=keys, how="left", nulls_equal=True)
    total = pl.col("requests")
    t_low, t_high = _within("t_sure", "t_maybe", threshold_ms)
    f_low, f_high = _within("f_sure", "f_maybe", 4 * threshold_ms)
    return frame.with_columns(
        apdex_low=(t_low + f_low) / (2 * total),
        apdex_high=(t_high + f_high) / (2 * total),
    )


def _within(sure: str, maybe: str, limit_ms: float) -> tuple[pl.Expr, pl.Expr]:
    """The fewest and the most requests that may lie within ``limit_ms``."""
    zero, total = pl.col("zero_count"), pl.col("requests")
    # the exact extremes settle a straddling bucket when they lie on one side of the limit
    low = pl.when(pl.col("latency_max_ms") <= limit_ms).then(total)
    high = pl.when(pl.col("latency_min_ms") > limit_ms).then(0)
    return (
        low.otherwise(zero + pl.col(sure).fill_null(0)),
        high.otherwise(zero + pl.col(maybe).fill_null(0)),
    )


def _with_estimates(frame: pl.DataFrame, threshold_ms: float) -> pl.DataFrame:
    return with_estimates(frame, (), apdex_t_ms=threshold_ms)
