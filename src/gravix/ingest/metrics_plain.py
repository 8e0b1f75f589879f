"""A histogram kept as plain numbers, for figures bumped on a hot path or from a thread
and turned into Prometheus families only when /metrics is scraped."""

from __future__ import annotations

import bisect


class PlainHistogram:
    """A histogram kept as plain numbers and rendered at scrape time, like HotCounters."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        labels = (*(repr(float(b)) for b in self.bounds), "+Inf")
        for bound, count in zip(labels, self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out
