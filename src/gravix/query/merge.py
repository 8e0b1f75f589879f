"""Merged percentiles: the warehouse's rows summed per group, histograms included.

Percentiles are merged, not averaged: the rows' latency histograms are exploded and summed
by bucket index in polars, and the rank rule of :mod:`gravix.schema.sketch` reads each merged
histogram, so every percentile is within ``sketch.RELATIVE_ERROR`` of the exact value over
the same facts.

A reader that says how it groups rows by time (:class:`Steps`) gets the whole hours of its
windows from ``request_metrics_hour`` — one row per hour and endpoint instead of sixty —
and only the minutes at the windows' edges (and of hours that table does not hold yet)
from ``request_metrics_minute``. Sums, extremes and histograms of an hour row are those of
its minutes added, so every answer is the one the minutes alone give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from gravix import schema
from gravix.query.source import Root
from gravix.query.span import HOUR, Span
from gravix.query.tables import collect_stable, held_hours, scan_spans
from gravix.schema import sketch
from gravix.schema.estimates import with_estimates
from gravix.storage.layout import Hour

QUANTILES: tuple[tuple[str, float], ...] = (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99))
QUANTILE_NAMES: tuple[str, ...] = tuple(name for name, _ in QUANTILES)
MS = pl.Datetime("ms", "UTC")


def percentile_note() -> str:
    return (
        f"percentiles are merged from latency histograms: each is within "
        f"±{sketch.RELATIVE_ERROR:.2%} of the exact rank quantile (the ⌈q·n⌉-th smallest latency)"
    )


@dataclass(frozen=True)
class Steps:
    """How a reader groups rows by time: in steps of ``step_ms`` from ``origin_ms`` (epoch
    milliseconds), or, with ``step_ms`` 0, each window as one group. An hour row can stand
    for its minutes only where the whole hour falls in one step."""

    origin_ms: int = 0
    step_ms: int = 0

    def holds_hour(self, hour_start: datetime) -> bool:
        if self.step_ms <= 0:
            return True
        offset = int(hour_start.timestamp() * 1000) - self.origin_ms
        return offset // self.step_ms == (offset + _HOUR_MS - 1) // self.step_ms


_HOUR_MS = 3_600_000


def metrics(
    root: Root,
    windows: list[tuple[datetime, datetime]],
    *,
    service: str | None = None,
    method: str | None = None,
    path_template: str | None = None,
    steps: Steps | None = None,
) -> pl.LazyFrame:
    """Rows inside any of ``windows`` with the minute table's columns; only the files of
    those hours are opened. Without ``steps`` every row is a minute row; with them, the
    whole hours that fall in one step are hour rows where the hour table holds them."""
    hours, minutes = _by_table(root, windows, steps)
    parts = [_rows(root, schema.REQUEST_METRICS_MINUTE, minutes)] if minutes or not hours else []
    if hours:
        parts.append(_rows(root, schema.REQUEST_METRICS_HOUR, hours))
    lf = parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")
    if service is not None:
        lf = lf.filter(pl.col("service") == service)
    if method is not None:
        lf = lf.filter(pl.col("method") == method.upper())
    if path_template is not None:
        lf = lf.filter(pl.col("path_template") == path_template)
    return lf


def _by_table(
    root: Root, windows: list[tuple[datetime, datetime]], steps: Steps | None
) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """``windows`` cut into the hours to read from the hour table and the rest (minutes).
    Each window is cut on its own: a caller may group rows by window."""
    spans = [Span(start, end) for start, end in windows]
    held = set() if steps is None else held_hours(root, schema.REQUEST_METRICS_HOUR, spans)
    if not held:
        return [], list(windows)
    hours: list[tuple[datetime, datetime]] = []
    minutes: list[tuple[datetime, datetime]] = []
    for start, end in windows:
        at = start
        hour = start.replace(minute=0, second=0, microsecond=0)
        hour = hour if hour == start else hour + HOUR
        while hour + HOUR <= end:
            if Hour.of(hour) in held and steps is not None and steps.holds_hour(hour):
                if at < hour:
                    minutes.append((at, hour))
                hours.append((hour, hour + HOUR))
                at = hour + HOUR
            hour += HOUR
        if at < end:
            minutes.append((at, end))
    return hours, minutes


def _rows(root: Root, table: str, windows: list[tuple[datetime, datetime]]) -> pl.LazyFrame:
    joined = _joined(windows)
    lf = scan_spans(root, table, [Span(start, end) for start, end in joined])
    in_window = pl.lit(False)
    for start, end in joined:
        in_window = in_window | (
            (pl.col("bucket_start") >= pl.lit(start).cast(MS))
            & (pl.col("bucket_start") < pl.lit(end).cast(MS))
        )
    return lf.filter(in_window)


# A minute row's columns under the names of a merged row: a minute is a merged row of one.
_AS_MERGED = {
    "requests": "request_count",
    "errors": "error_count",
    "client_errors": "client_error_count",
    "zero_count": "lat_zero_count",
    "latency_min_ms": "latency_min_ms",
    "latency_max_ms": "latency_max_ms",
    "idx": "lat_idx",
    "cnt": "lat_cnt",
}


def _joined(windows: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The windows with those that touch or overlap joined: one test per row, not one per
    piece of a window cut into days and hours."""
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def merged_top(
    plan: Callable[[], pl.LazyFrame],
    keys: list[str],
    top: Callable[[pl.DataFrame], pl.DataFrame],
) -> pl.DataFrame:
    """:func:`merged` for the groups an answer shows: ``top`` picks them from every group's
    sums (a ranking by counts and a limit), and only their histograms are added. A page's
    top ten endpoints so add ten endpoints' buckets, not every endpoint's; their rows are
    the ones :func:`merged` gives them, as adding is exact whatever else is added."""
    rows = collect_stable(
        lambda: plan().select(*keys, *(pl.col(src).alias(n) for n, src in _AS_MERGED.items()))
    )
    kept = top(totals(rows.lazy(), keys).collect()).select(keys)
    chosen = rows.lazy().join(kept.lazy(), on=keys, how="semi", nulls_equal=True)
    return remerged(chosen, keys).collect()


def merged(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Per group of minute (or hour) rows: exact sums and the merged histogram
    (``idx``/``cnt`` sorted by index). Under text keys (endpoints) the buckets are added
    under a group number, as :func:`remerged` adds them: an hour row's histogram is long,
    and adding its buckets under copies of the text costs more than the numbering. Under
    a time key they are added directly."""
    rows = lf.select(*keys, *(pl.col(src).alias(name) for name, src in _AS_MERGED.items()))
    schema = rows.collect_schema()
    if any(schema[key] == pl.String for key in keys):
        return remerged(rows, keys)
    buckets = rows.select(*keys, "idx", "cnt").explode(["idx", "cnt"]).drop_nulls("idx")
    return totals(rows, keys).join(_added(buckets, keys), on=keys, how="left", nulls_equal=True)


def remerged(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Merged rows (``requests`` … ``idx``/``cnt``) that share keys merged again, as
    :func:`merged` merges minutes: adding histograms is exact, so merging in stages
    (minutes into hours, hours into a window) gives the one-stage answer. A merged row's
    histogram is long, so its buckets are added under a group number, not under copies
    of the (text) keys."""
    sums = totals(lf, keys).with_row_index("_group")
    buckets = (
        lf.select(*keys, "idx", "cnt")
        .join(sums.select(*keys, "_group"), on=keys, nulls_equal=True)
        .select("_group", "idx", "cnt")
        .explode(["idx", "cnt"])
        .drop_nulls("idx")
    )
    return sums.join(_added(buckets, ["_group"]), on="_group", how="left").drop("_group")


def totals(rows: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Per group of merged rows: the sums and extremes, without the histogram."""
    return rows.group_by(keys).agg(
        pl.col("requests", "errors", "client_errors").sum(),
        pl.col("latency_min_ms").min(),
        pl.col("latency_max_ms").max(),
        pl.col("zero_count").sum(),
    )


def _added(buckets: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """One bucket per row (``keys``, ``idx``, ``cnt``) → per group, the counts added by
    bucket index, as lists sorted by index."""
    return (
        buckets.group_by(*keys, "idx")
        .agg(pl.col("cnt").sum())
        .group_by(keys)
        .agg(pl.col("idx").sort(), pl.col("cnt").sort_by("idx"))
    )


def with_quantiles(frame: pl.DataFrame) -> pl.DataFrame:
    """Add p50/p95/p99 read from each row's merged histogram by the sketch's rank rule."""
    return with_estimates(frame, QUANTILES)


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
