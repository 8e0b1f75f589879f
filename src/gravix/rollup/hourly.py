"""``request_metrics_hour``: the minute table's rows summed per hour, written by the same
hour task and recorded by the same manifest (DESIGN §6).

A reader over a week or a month merges one row per hour and endpoint instead of sixty, and
merging histograms is exact, so an answer read from whole hours of this table and the
minutes at the window's edges is the answer read from the minutes alone. The hour task
computes the hour's rows from the hour's facts (exact percentiles, like the minute rows'),
and replaces them atomically as it replaces the minutes (in the hour's file, or in its
day's compacted file). An hour whose raw facts are gone (retention keeps the warehouse
longer than raw) is summed from its minute rows instead; its percentiles are then read
from the summed histogram, within the sketch's error bound of the exact values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gravix import schema
from gravix.rollup.compact import replace_hour
from gravix.rollup.files import read_parquet, remove_output, write_parquet
from gravix.schema import sketch
from gravix.schema.columns import polars_type
from gravix.schema.estimates import STORED, with_estimates
from gravix.storage import layout
from gravix.storage.layout import Hour

if TYPE_CHECKING:
    import polars as pl

TABLE = schema.REQUEST_METRICS_HOUR
MINUTES = schema.REQUEST_METRICS_MINUTE
KEYS = ["service", "bucket_start", "method", "path_template"]
QUANTILES = ((0.5, "p50_latency_ms"), (0.95, "p95_latency_ms"), (0.99, "p99_latency_ms"))


def minute_rows_exist(root: Path, hour: Hour) -> bool:
    """Whether a file of the minute table holds ``hour`` (its own, or its day's)."""
    return any(path.exists() for path in layout.table_outputs(root, MINUTES, hour))


def write_hour(root: Path, hour: Hour, rows: pl.DataFrame) -> Path | None:
    """Replace ``hour``'s rows of the hour table with ``rows`` (atomically, in the hour's
    file or its compacted day's); the file that holds them, or None when there are none."""
    if replace_hour(root, TABLE, hour, rows):
        return layout.warehouse_day_file(root, TABLE, hour.day) if rows.height else None
    output = layout.warehouse_hour_file(root, TABLE, hour)
    if rows.height:
        write_parquet(root, rows, output)
        return output
    remove_output(output)
    return None


def read_minutes(root: Path, hour: Hour) -> pl.DataFrame:
    """The minute table's rows of ``hour``, from the hour's file or its compacted day's."""
    import polars as pl

    hour_file, day_file = layout.table_outputs(root, MINUTES, hour)
    source = day_file if day_file.exists() else hour_file
    rows = read_parquet(source, f"sum {hour} into {TABLE}")
    start = pl.lit(hour.start).cast(rows.schema["bucket_start"])
    return rows.filter(pl.col("bucket_start").dt.truncate("1h") == start)


def from_minutes(minutes: pl.DataFrame) -> pl.DataFrame:
    """Hour rows summed from minute rows: counts, sums and histograms exact, minimum and
    maximum exact, percentiles read from the summed histogram (the facts are gone)."""
    import polars as pl

    rows = minutes.with_columns(pl.col("bucket_start").dt.truncate("1h"))
    totals = rows.group_by(KEYS).agg(
        pl.col("request_count", "error_count", "client_error_count").sum(),
        pl.col("latency_sum_ms").sum(),
        pl.col("latency_min_ms").min(),
        pl.col("latency_max_ms").max(),
        pl.col("lat_zero_count").sum(),
    )
    buckets = (
        rows.select(*KEYS, "lat_idx", "lat_cnt")
        .explode(["lat_idx", "lat_cnt"])
        .drop_nulls("lat_idx")
        .group_by(*KEYS, "lat_idx")
        .agg(pl.col("lat_cnt").sum())
        .group_by(KEYS)
        .agg(pl.col("lat_idx").sort(), pl.col("lat_cnt").sort_by("lat_idx"))
    )
    out = totals.join(buckets, on=KEYS, how="left", nulls_equal=True)
    out = _with_quantiles(out).with_columns(
        (pl.col("error_count") / pl.col("request_count")).alias("error_rate"),
        pl.lit(sketch.SCALE, dtype=pl.Int8).alias("lat_scale"),
        pl.col("lat_idx").fill_null([]),
        pl.col("lat_cnt").fill_null([]),
    )
    return out.sort(KEYS).select(
        pl.col(name).cast(polars_type(kind))
        for name, kind in schema.REQUEST_METRICS_COLUMNS.items()
    )


def _with_quantiles(frame: pl.DataFrame) -> pl.DataFrame:
    """The hour's percentiles merged from its minutes' histograms (the rank rule), for an
    hour whose facts retention has removed."""
    return with_estimates(frame, [(name, q) for q, name in QUANTILES], columns=STORED)
