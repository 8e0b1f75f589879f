"""The base-2 exponential latency histogram of DESIGN §6 (OpenTelemetry's exponential
histogram, Prometheus' native histogram): bucket index, merge, quantile, Apdex, scale
reduction.

At scale ``s`` bucket ``i`` holds the values in ``(γ^i, γ^(i+1)]`` with ``γ = 2^(2^-s)``,
so ``i = ⌈log2(v)·2^s⌉ − 1``. Bucket bounds are evaluated as ``B[i mod 2^s] · 2^(i div 2^s)``
with ``B[j] = 2^(j/2^s)`` held in a table, and every index is placed against those bounds:
values at exact powers of two land in the bucket the definition says, and the scalar code
here and the vectorised polars expression give the same index for every float.

A quantile read from a histogram is the representative value ``γ^i·2γ/(1+γ)`` of the first
bucket where the running count (zeros first) reaches ``⌈q·n⌉``, clamped to ``[min, max]``;
it is within ``RELATIVE_ERROR = (γ−1)/(γ+1)`` (1.08% at scale 5) of the exact value at that
rank. Merging is adding counts, so that bound holds for any merge of histograms.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

SCALE = 5
MIN_SCALE = -10
MAX_SCALE = 20
GAMMA = 2.0 ** (2.0**-SCALE)
RELATIVE_ERROR = (GAMMA - 1.0) / (GAMMA + 1.0)


def _check_scale(scale: int) -> int:
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be in [{MIN_SCALE}, {MAX_SCALE}], got {scale}")
    return scale


def gamma(scale: int = SCALE) -> float:
    return float(2.0 ** (2.0 ** -_check_scale(scale)))


def relative_error(scale: int = SCALE) -> float:
    """The bound α = (γ−1)/(γ+1) on a quantile's relative error at ``scale``."""
    g = gamma(scale)
    return (g - 1.0) / (g + 1.0)


@cache
def boundary_table(scale: int = SCALE) -> tuple[float, ...]:
    """``B[j] = 2^(j/2^scale)`` for ``j = 0 … 2^scale`` (scale ≥ 0): one octave of bounds."""
    per_octave = 1 << max(_check_scale(scale), 0)
    return tuple(2.0 ** (j / per_octave) for j in range(per_octave + 1))


def lower_bound(i: int, scale: int = SCALE) -> float:
    """The exclusive lower bound ``γ^i`` of bucket ``i``."""
    if scale <= 0:
        return math.ldexp(1.0, i << -scale)
    octave, j = divmod(i, 1 << scale)
    return math.ldexp(boundary_table(scale)[j], octave)


def bucket_index(v: float, scale: int = SCALE) -> int:
    """The bucket of a value ``v > 0``: ``γ^i < v ≤ γ^(i+1)``."""
    if not v > 0 or math.isinf(v):
        raise ValueError(f"bucket_index needs a finite value > 0, got {v!r}")
    _check_scale(scale)
    mantissa, exponent = math.frexp(v)  # v = mantissa · 2^exponent, mantissa in [0.5, 1)
    mantissa *= 2.0
    exponent -= 1
    if scale <= 0:
        i0 = exponent if mantissa > 1.0 else exponent - 1  # the scale-0 index
        return i0 >> -scale
    j = bisect_left(boundary_table(scale), mantissa)  # first bound ≥ mantissa
    return (exponent << scale) + j - 1


def bucket_value(i: int, scale: int = SCALE) -> float:
    """The representative value of bucket ``i``: ``γ^i·2γ/(1+γ)``, equally far (relatively)
    from both bounds."""
    g = gamma(scale)
    return lower_bound(i, scale) * (2.0 * g / (1.0 + g))


def reduce_index(i: int, from_scale: int, to_scale: int) -> int:
    """The bucket at a coarser scale that contains bucket ``i``."""
    if to_scale > from_scale:
        raise ValueError("scale reduction cannot increase the scale")
    return i >> (from_scale - to_scale)


def quantile_from_arrays(
    zero_count: int,
    idx: Sequence[int],
    cnt: Sequence[int],
    q: float,
    lo: float,
    hi: float,
    scale: int = SCALE,
) -> float:
    """The rank-rule quantile of a histogram given as sorted indexes and counts.

    ``lo``/``hi`` are the exact minimum and maximum; the estimate is clamped to them.
    Returns NaN for an empty histogram.
    """
    return quantiles_from_arrays(zero_count, idx, cnt, (q,), lo, hi, scale)[0]


def quantiles_from_arrays(
    zero_count: int,
    idx: Sequence[int],
    cnt: Sequence[int],
    qs: Sequence[float],
    lo: float,
    hi: float,
    scale: int = SCALE,
) -> list[float]:
    """:func:`quantile_from_arrays` for several ``qs`` at once: the running counts are
    summed once and each rank is found by bisection."""
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
    running = list(accumulate(cnt, initial=zero_count))  # running[k]: before bucket k
    total = running[-1]
    if total <= 0:
        return [math.nan for _ in qs]
    out: list[float] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        if rank <= zero_count:
            out.append(min(max(0.0, lo), hi))
            continue
        # the first bucket whose running count (itself included) reaches the rank
        k = min(bisect_left(running, rank, 1) - 1, len(idx) - 1)
        out.append(min(max(bucket_value(idx[k], scale), lo), hi))
    return out


@dataclass
class Histogram:
    """A mergeable latency histogram: zero count, counts by bucket index, exact min/max/sum."""

    scale: int = SCALE
    zero_count: int = 0
    counts: dict[int, int] = field(default_factory=dict)
    min: float = math.inf
    max: float = -math.inf
    sum: float = 0.0

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.counts.values())

    def add(self, v: float, n: int = 1) -> None:
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError(f"a latency must be finite and ≥ 0, got {v!r}")
        if n <= 0:
            return
        if v == 0:
            self.zero_count += n
        else:
            i = bucket_index(v, self.scale)
            self.counts[i] = self.counts.get(i, 0) + n
        self.min = min(self.min, v)
        self.max = max(self.max, v)
        self.sum += v * n

    def extend(self, values: Iterable[float]) -> Histogram:
        for v in values:
            self.add(v)
        return self

    @classmethod
    def of(cls, values: Iterable[float], scale: int = SCALE) -> Histogram:
        return cls(scale=scale).extend(values)

    @classmethod
    def from_arrays(
        cls,
        zero_count: int,
        idx: Sequence[int],
        cnt: Sequence[int],
        *,
        lo: float = math.inf,
        hi: float = -math.inf,
        total: float = 0.0,
        scale: int = SCALE,
    ) -> Histogram:
        """A histogram from a warehouse row (``lat_zero_count``, ``lat_idx``, ``lat_cnt``)."""
        counts: dict[int, int] = {}
        for i, c in zip(idx, cnt, strict=True):
            if c:
                counts[int(i)] = counts.get(int(i), 0) + int(c)
        return cls(
            scale=scale, zero_count=int(zero_count), counts=counts, min=lo, max=hi, sum=total
        )

    def to_arrays(self) -> tuple[int, list[int], list[int]]:
        """``(zero_count, sorted indexes, counts)`` as stored in the warehouse."""
        idx = sorted(i for i, c in self.counts.items() if c)
        return self.zero_count, idx, [self.counts[i] for i in idx]

    def reduce(self, scale: int) -> Histogram:
        """The same histogram at a coarser scale (buckets merged; nothing else lost)."""
        _check_scale(scale)
        if scale > self.scale:
            raise ValueError("scale reduction cannot increase the scale")
        counts: dict[int, int] = {}
        for i, c in self.counts.items():
            j = reduce_index(i, self.scale, scale)
            counts[j] = counts.get(j, 0) + c
        return Histogram(
            scale=scale,
            zero_count=self.zero_count,
            counts=counts,
            min=self.min,
            max=self.max,
            sum=self.sum,
        )

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram holding both; the result has the coarser of the two scales."""
        scale = min(self.scale, other.scale)
        a = self if self.scale == scale else self.reduce(scale)
        b = other if other.scale == scale else other.reduce(scale)
        counts = dict(a.counts)
        for i, c in b.counts.items():
            counts[i] = counts.get(i, 0) + c
        return Histogram(
            scale=scale,
            zero_count=a.zero_count + b.zero_count,
            counts=counts,
            min=min(a.min, b.min),
            max=max(a.max, b.max),
            sum=a.sum + b.sum,
        )

    def quantile(self, q: float) -> float:
        zero, idx, cnt = self.to_arrays()
        return quantile_from_arrays(zero, idx, cnt, q, self.min, self.max, self.scale)

    def apdex(self, t: float) -> float:
        """Apdex for threshold ``t`` ms: (satisfied + tolerating/2) / n, where satisfied is
        ``≤ t`` and tolerating ``≤ 4t``; each bucket counts at its clamped representative
        value. NaN when empty."""
        return apdex_from_arrays(*self.to_arrays(), t, self.min, self.max, self.scale)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (
            self.scale == other.scale
            and self.zero_count == other.zero_count
            and {i: c for i, c in self.counts.items() if c}
            == {i: c for i, c in other.counts.items() if c}
            and self.min == other.min
            and self.max == other.max
        )

    __hash__ = None  # type: ignore[assignment]


def apdex_from_arrays(
    zero_count: int,
    idx: Sequence[int],
    cnt: Sequence[int],
    t: float,
    lo: float,
    hi: float,
    scale: int = SCALE,
) -> float:
    """Apdex from stored arrays (see :meth:`Histogram.apdex`)."""
    if t < 0:
        raise ValueError(f"the Apdex threshold must be ≥ 0, got {t}")
    total = zero_count + sum(cnt)
    if total <= 0:
        return math.nan
    satisfied = float(zero_count)
    tolerating = 0.0
    for i, c in zip(idx, cnt, strict=True):
        v = min(max(bucket_value(i, scale), lo), hi)
        if v <= t:
            satisfied += c
        elif v <= 4 * t:
            tolerating += c
    return (satisfied + tolerating / 2.0) / total


def merge_arrays(
    rows: Iterable[tuple[int, Sequence[int], Sequence[int]]],
) -> tuple[int, list[int], list[int]]:
    """Sum ``(zero_count, idx, cnt)`` triples of one scale into one sorted triple."""
    zero = 0
    counts: dict[int, int] = {}
    for z, idx, cnt in rows:
        zero += int(z)
        for i, c in zip(idx, cnt, strict=True):
            counts[int(i)] = counts.get(int(i), 0) + int(c)
    keys = sorted(i for i, c in counts.items() if c)
    return zero, keys, [counts[i] for i in keys]


# Up to this scale the vectorised index reads bounds from one table of every bucket
# (2,101 octaves of 2^scale entries: about 67,000 at scale 5, built once).
FULL_TABLE_MAX_SCALE = 8


@cache
def _all_bounds(scale: int) -> tuple[int, pl.Series]:
    """The lower bound of every bucket index a positive double can have, and one more at
    each end, from index ``first`` on, each computed as the per-octave formula computes
    it (``B[i mod 2^scale] * 2.0^(i div 2^scale)``): one gather from this table replaces a
    modulo, a division and a power per value."""
    import polars as pl

    per = 1 << scale
    first = -1076 * per  # below the index of the smallest subnormal
    last = 1025 * per  # above the index of the largest double
    octave = boundary_table(scale)
    bounds = [
        octave[i % per] * (2.0 ** (i // per) if i // per < 1024 else math.inf)
        for i in range(first, last + 1)
    ]
    return first, pl.Series("bounds", bounds, dtype=pl.Float64)


def bucket_index_expr(value: pl.Expr, scale: int = SCALE) -> pl.Expr:
    """A polars expression giving :func:`bucket_index` of each value (null for v ≤ 0).

    A log2 estimate is corrected by one step against the same bound table the scalar
    code uses, so both agree on every float (the estimate is never off by more than one).
    """
    import polars as pl

    if _check_scale(scale) <= 0:
        raise ValueError("bucket_index_expr supports scales ≥ 1")
    per = 1 << scale
    positive = pl.when(value > 0).then(value)  # null otherwise, so log2 never sees 0
    estimate = ((positive.log(2) * per).ceil() - 1).cast(pl.Int64)
    if scale <= FULL_TABLE_MAX_SCALE:
        first, bounds = _all_bounds(scale)
        every = pl.lit(bounds)

        def bound(i: pl.Expr) -> pl.Expr:
            return every.gather(i - first)
    else:
        octave = pl.lit(pl.Series("bounds", boundary_table(scale), dtype=pl.Float64))

        def bound(i: pl.Expr) -> pl.Expr:
            return octave.gather(i.mod(per)) * (pl.lit(2.0) ** i.floordiv(per).cast(pl.Float64))

    corrected = (
        pl.when(positive <= bound(estimate))
        .then(estimate - 1)
        .when(positive > bound(estimate + 1))
        .then(estimate + 1)
        .otherwise(estimate)
    )
    return corrected.cast(pl.Int32)
