"""Who may write: API keys compared in constant time, and the per-key rate limit."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Token bucket per key: ``rate`` requests/s, bursts of up to 2×rate."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, 2.0 * rate)
        self.clock = clock
        self._buckets: dict[int, list[float]] = {}

    def check(self, key: int) -> float:
        """0 if the request may pass, else the seconds until it would."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate
