"""Merged percentiles: the warehouse's minute rows summed per group, histograms included.

Percentiles are merged, not averaged: the rows' latency histograms are exploded and summed
by bucket index in polars, and the rank rule of :mod:`gravix.schema.sketch` reads each merged
histogram, so every percentile is within ``sketch.RELATIVE_ERROR`` of the exact value over
the same facts.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from gravix import schema
from gravix.query.span import Span
from gravix.query.tables import scan_spans
from gravix.schema import sketch

QUANTILES: tuple[tuple[str, float], ...] = (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99))
QUANTILE_NAMES: tuple[str, ...] = tuple(name for name, _ in QUANTILES)
MS = pl.Datetime("ms", "UTC")


def percentile_note() -> str:
    return (
        f"percentiles are merged from latency histograms: each is within "
        f"±{sketch.RELATIVE_ERROR:.2%} of the exact rank quantile (the ⌈q·n⌉-th smallest latency)"
    )


def metrics(
    root: Path,
    windows: list[tuple[datetime, datetime]],
    *,
    service: str | None = None,
    method: str | None = None,
    path_template: str | None = None,
) -> pl.LazyFrame:
    """Minute rows inside any of ``windows``; only the files of those hours are opened."""
    spans = [Span(start, end) for start, end in windows]
    lf = scan_spans(root, schema.REQUEST_METRICS_MINUTE, spans)
    in_window = pl.lit(False)
    for start, end in windows:
        in_window = in_window | (
            (pl.col("bucket_start") >= pl.lit(start).cast(MS))
            & (pl.col("bucket_start") < pl.lit(end).cast(MS))
        )
    lf = lf.filter(in_window)
    if service is not None:
        lf = lf.filter(pl.col("service") == service)
    if method is not None:
        lf = lf.filter(pl.col("method") == method.upper())
    if path_template is not None:
        lf = lf.filter(pl.col("path_template") == path_template)
    return lf


def merged(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Per group: exact sums and the merged histogram (``idx``/``cnt`` sorted by index)."""
    totals = lf.group_by(keys).agg(
        requests=pl.col("request_count").sum(),
        errors=pl.col("error_count").sum(),
        client_errors=pl.col("client_error_count").sum(),
        latency_min_ms=pl.col("latency_min_ms").min(),
        latency_max_ms=pl.col("latency_max_ms").max(),
        zero_count=pl.col("lat_zero_count").sum(),
    )
    hist = (
        lf.select(*keys, "lat_idx", "lat_cnt")
        .explode(["lat_idx", "lat_cnt"])
        .drop_nulls("lat_idx")
        .group_by(*keys, "lat_idx")
        .agg(pl.col("lat_cnt").sum())
        .group_by(keys)
        .agg(idx=pl.col("lat_idx").sort(), cnt=pl.col("lat_cnt").sort_by("lat_idx"))
    )
    return totals.join(hist, on=keys, how="left", nulls_equal=True)


def with_quantiles(frame: pl.DataFrame) -> pl.DataFrame:
    """Add p50/p95/p99 read from each row's merged histogram by the sketch's rank rule."""
    values: dict[str, list[float | None]] = {name: [] for name, _ in QUANTILES}
    qs = [q for _, q in QUANTILES]
    for zero, idx, cnt, lo, hi in frame.select(
        "zero_count", "idx", "cnt", "latency_min_ms", "latency_max_ms"
    ).iter_rows():
        found: list[float | None] = [None] * len(qs)
        if zero or idx:
            found = [*sketch.quantiles_from_arrays(zero or 0, idx or [], cnt or [], qs, lo, hi)]
        for (name, _), value in zip(QUANTILES, found, strict=True):
            values[name].append(value)
    return frame.with_columns(pl.Series(n, v, dtype=pl.Float64) for n, v in values.items())


def error_rate() -> pl.Expr:
    return (
        pl.when(pl.col("requests") > 0)
        .then(pl.col("errors") / pl.col("requests"))
        .otherwise(None)
        .alias("error_rate")
    )


def empty_note(frame: pl.DataFrame, service: str | None) -> tuple[str, ...]:
    if frame.height and frame["requests"].sum() > 0:
        return ()
    who = f" for service {service!r}" if service else ""
    return (f"no requests{who} in this window: check the name and --since/--until",)
