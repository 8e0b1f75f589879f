"""Percentiles and Apdex read for a whole frame at once equal the one-histogram readers of
:mod:`gravix.schema.sketch`, row by row, and are within the bound of the exact rank value."""

from __future__ import annotations

import math

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from gravix.schema import sketch
from gravix.schema.estimates import STORED, with_estimates

latency = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.001, max_value=3_600_000.0, allow_nan=False, allow_infinity=False),
    st.integers(min_value=-10, max_value=21).map(lambda k: 2.0**k),
)
# a frame of rows, some of them with no facts at all (no histogram, no extremes)
frames = st.lists(st.lists(latency, min_size=0, max_size=60), min_size=1, max_size=12)
QS = (("p0", 0.0), ("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p100", 1.0))


def _frame(groups: list[list[float]]) -> pl.DataFrame:
    rows = []
    for values in groups:
        h = sketch.Histogram()
        for v in values:
            h.add(v)
        buckets = sorted(h.counts.items())
        idx, cnt = [i for i, _ in buckets], [c for _, c in buckets]
        rows.append(
            {
                "lat_zero_count": h.zero_count,
                "lat_idx": idx or None,
                "lat_cnt": cnt or None,
                "latency_min_ms": min(values) if values else None,
                "latency_max_ms": max(values) if values else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "lat_zero_count": pl.Int64,
            "lat_idx": pl.List(pl.Int32),
            "lat_cnt": pl.List(pl.Int64),
            "latency_min_ms": pl.Float64,
            "latency_max_ms": pl.Float64,
        },
    )


@settings(max_examples=150, deadline=None)
@given(frames, st.sampled_from([0.5, 20.0, 100.0, 1000.0]))
def test_every_row_reads_as_the_one_histogram_readers_read_it(
    groups: list[list[float]], t: float
) -> None:
    frame = _frame(groups)
    out = with_estimates(frame, QS, columns=STORED, apdex_t_ms=t)
    assert out.height == frame.height
    for values, row in zip(groups, out.iter_rows(named=True), strict=True):
        if not values:
            assert all(row[name] is None for name, _ in QS) and row["apdex"] is None
            continue
        args = (row["lat_zero_count"], row["lat_idx"] or [], row["lat_cnt"] or [])
        extremes = (row["latency_min_ms"], row["latency_max_ms"])
        expected = sketch.quantiles_from_arrays(*args, [q for _, q in QS], *extremes)
        assert [row[name] for name, _ in QS] == expected
        assert row["apdex"] == sketch.apdex_from_arrays(*args, t, *extremes)
        ordered = sorted(values)
        for name, q in QS:
            exact = ordered[max(1, math.ceil(q * len(ordered))) - 1]
            assert abs(row[name] - exact) <= sketch.RELATIVE_ERROR * exact * (1 + 1e-9), name
