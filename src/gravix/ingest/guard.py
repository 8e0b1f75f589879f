"""Admission of an ``/api/`` request before its body is read: the API key compared in
constant time (401), the per-key rate limit (429), the content type (415) and encoding,
and the declared length (411/413). Everything here looks at headers only, so a refused
request costs no body read."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gravix.ingest.routes import JSON_TYPES, HttpError, media_type


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


@dataclass(frozen=True)
class Admitted:
    """A request that may send its body: the declared length and whether it is gzip."""

    length: int
    gzip: bool


class Guard:
    """The header checks of one server process, cheapest first."""

    def __init__(
        self,
        keys: Sequence[str],
        *,
        insecure_no_auth: bool = False,
        rate_limit: float = 0.0,
        on_rate_limited: Callable[[], None] = lambda: None,
    ) -> None:
        self.keys = [k.encode() for k in keys]
        self.insecure_no_auth = insecure_no_auth
        self.limiter = RateLimiter(rate_limit) if rate_limit > 0 else None
        self.on_rate_limited = on_rate_limited

    def authorise(self, given: bytes | None) -> int:
        """Index of the matching key (compared in constant time against every key)."""
        if self.insecure_no_auth and not self.keys:
            return -1
        if given is None:
            raise HttpError(401, "missing X-API-Key header")
        match = -2
        for index, key in enumerate(self.keys):
            if hmac.compare_digest(key, given):
                match = index
        if match < 0:
            raise HttpError(401, "invalid API key")
        return match

    def admit(self, headers: dict[bytes, bytes], limit: int) -> Admitted:
        """Raise the HttpError a request deserves from its headers alone (ASGI names are
        lower-case; a repeated header counts with its last value)."""
        declared = headers.get(b"content-length")
        length: int | None = None
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise HttpError(400, "Content-Length is not a number") from None
        key_index = self.authorise(headers.get(b"x-api-key"))
        if self.limiter is not None:
            wait = self.limiter.check(key_index)
            if wait > 0:
                self.on_rate_limited()
                raise HttpError(
                    429,
                    "over the per-key rate limit",
                    [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
                )
        ctype = headers.get(b"content-type")
        if ctype is None or (ctype not in JSON_TYPES and media_type(ctype) not in JSON_TYPES):
            raise HttpError(415, "Content-Type must be application/json or application/x-ndjson")
        gzip = _is_gzip(headers.get(b"content-encoding"))
        if length is None:
            raise HttpError(411, "Content-Length is required")
        if length > limit:
            raise HttpError(413, f"body of {length} bytes is over the limit of {limit} bytes")
        return Admitted(length, gzip)


def _is_gzip(encoding: bytes | None) -> bool:
    if encoding is None:
        return False
    enc = encoding.strip().lower()
    if enc == b"gzip":
        return True
    if enc not in (b"", b"identity"):
        raise HttpError(415, "Content-Encoding must be gzip or identity")
    return False
