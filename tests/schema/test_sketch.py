"""Properties of the exponential latency histogram (DESIGN §6)."""

from __future__ import annotations

import math

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gravix.schema import sketch
from gravix.schema.sketch import (
    GAMMA,
    RELATIVE_ERROR,
    SCALE,
    Histogram,
    bucket_index,
    bucket_index_expr,
    bucket_value,
    quantile_from_arrays,
)

latency = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.001, max_value=3_600_000.0, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=5000).map(float),
    st.integers(min_value=-10, max_value=21).map(lambda k: 2.0**k),
)
latencies = st.lists(latency, min_size=1, max_size=300)
quantiles = st.sampled_from([0.0, 0.001, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])


def exact_rank_value(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def within(estimate: float, exact: float, alpha: float) -> bool:
    if exact == 0.0:
        return estimate == 0.0
    return abs(estimate - exact) <= alpha * exact * (1 + 1e-9)


def test_constants_follow_the_definition() -> None:
    assert SCALE == 5
    assert pytest.approx(1.0219, abs=1e-4) == GAMMA
    assert pytest.approx(0.0108, abs=1e-4) == RELATIVE_ERROR


@pytest.mark.parametrize("k", [-20, -3, -1, 0, 1, 2, 10, 21])
def test_exact_powers_of_two_sit_at_the_top_of_their_bucket(k: int) -> None:
    # 2^k = γ^(32k) is the inclusive upper bound of bucket 32k − 1.
    assert bucket_index(2.0**k) == 32 * k - 1
    assert bucket_index(math.nextafter(2.0**k, math.inf)) == 32 * k


@given(st.floats(min_value=1e-6, max_value=1e7, allow_nan=False))
def test_bucket_holds_its_value_between_gamma_powers(v: float) -> None:
    i = bucket_index(v)
    assert GAMMA**i < v * (1 + 1e-12)
    assert v <= GAMMA ** (i + 1) * (1 + 1e-12)
    assert abs(bucket_value(i) - v) <= RELATIVE_ERROR * v * (1 + 1e-9)


@pytest.mark.parametrize("scale", [SCALE, 1, sketch.FULL_TABLE_MAX_SCALE + 2])
def test_vectorised_index_agrees_with_scalar_index_on_every_float_near_a_bound(
    scale: int,
) -> None:
    values = [0.0, 0.001, 0.5, 1.0, 1.5, 3.0, 1000.0, 3_600_000.0]
    values += [5e-324, 2.2250738585072014e-308, 1e-300, 1e300, 1.7976931348623157e308]
    per = 1 << scale
    for i in range(-13 * per, 22 * per, max(1, per // 10)):
        bound = sketch.lower_bound(i, scale)
        values += [bound, math.nextafter(bound, 0.0), math.nextafter(bound, math.inf)]
    frame = pl.DataFrame({"v": values})
    got = frame.select(bucket_index_expr(pl.col("v"), scale))["v"].to_list()
    want = [bucket_index(v, scale) if v > 0 else None for v in values]
    assert got == want


@settings(max_examples=200, deadline=None)
@given(latencies, latencies, latencies)
def test_merge_is_associative_and_commutative(
    a: list[float], b: list[float], c: list[float]
) -> None:
    ha, hb, hc = Histogram.of(a), Histogram.of(b), Histogram.of(c)
    assert ha.merge(hb) == hb.merge(ha)
    assert ha.merge(hb).merge(hc) == ha.merge(hb.merge(hc))


@settings(max_examples=200, deadline=None)
@given(latencies, latencies)
def test_merging_equals_building_from_the_union(a: list[float], b: list[float]) -> None:
    merged = Histogram.of(a).merge(Histogram.of(b))
    assert merged == Histogram.of(a + b)
    assert merged.count == len(a) + len(b)


@settings(max_examples=300, deadline=None)
@given(latencies, quantiles)
def test_every_quantile_is_within_the_relative_error_bound(values: list[float], q: float) -> None:
    estimate = Histogram.of(values).quantile(q)
    assert within(estimate, exact_rank_value(values, q), RELATIVE_ERROR)


@settings(max_examples=200, deadline=None)
@given(latencies, quantiles, st.integers(min_value=0, max_value=4))
def test_scale_reduction_loses_nothing_beyond_the_coarser_bound(
    values: list[float], q: float, coarser: int
) -> None:
    reduced = Histogram.of(values).reduce(coarser)
    assert reduced == Histogram.of(values, scale=coarser)
    assert within(reduced.quantile(q), exact_rank_value(values, q), sketch.relative_error(coarser))


@settings(max_examples=100, deadline=None)
@given(latencies, latencies)
def test_merging_different_scales_reduces_to_the_coarser(a: list[float], b: list[float]) -> None:
    merged = Histogram.of(a, scale=5).merge(Histogram.of(b, scale=3))
    assert merged == Histogram.of(a + b, scale=3)


def test_quantile_from_arrays_uses_rank_rule_with_zeros_first_and_clamps() -> None:
    # 2 zeros, then 3 values in bucket 10, 5 in bucket 40: ranks 1-2 → 0, 3-5 → b10, 6-10 → b40.
    zero, idx, cnt = 2, [10, 40], [3, 5]
    assert quantile_from_arrays(zero, idx, cnt, 0.2, 0.0, 99.0) == 0.0
    assert quantile_from_arrays(zero, idx, cnt, 0.3, 0.0, 99.0) == bucket_value(10)
    assert quantile_from_arrays(zero, idx, cnt, 0.5, 0.0, 99.0) == bucket_value(10)
    assert quantile_from_arrays(zero, idx, cnt, 0.51, 0.0, 99.0) == bucket_value(40)
    # clamped into the exact [min, max]
    assert quantile_from_arrays(0, [40], [1], 0.5, 2.3, 2.3) == 2.3
    assert math.isnan(quantile_from_arrays(0, [], [], 0.5, 0.0, 0.0))


def test_apdex_counts_satisfied_and_half_of_tolerating() -> None:
    # T = 100: satisfied ≤ 100, tolerating ≤ 400, frustrated beyond; no value near a bound.
    values = [0.0, 10.0, 50.0, 150.0, 300.0, 900.0, 2000.0, 5000.0]
    expected = (3 + 2 / 2) / 8
    assert Histogram.of(values).apdex(100.0) == pytest.approx(expected)
    assert math.isnan(Histogram().apdex(100.0))


@settings(max_examples=100, deadline=None)
@given(latencies)
def test_arrays_round_trip(values: list[float]) -> None:
    h = Histogram.of(values)
    zero, idx, cnt = h.to_arrays()
    assert idx == sorted(idx)
    back = Histogram.from_arrays(zero, idx, cnt, lo=h.min, hi=h.max)
    assert back == h
    assert sketch.merge_arrays([(zero, idx, cnt), (zero, idx, cnt)]) == h.merge(h).to_arrays()
