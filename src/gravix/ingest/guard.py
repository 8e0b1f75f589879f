"""Admission of an ``/api/`` request before its body is read: the API key compared in
constant time (401), the per-key rate limit (429), the content type (415) and encoding,
and the declared length (411/413). Everything here looks at headers only, so a refused
request costs no body read."""

from __future__ import annotations

import hmac
import math
import mmap
import multiprocessing
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gravix.ingest.routes import JSON_TYPES, HttpError, media_type

_BUCKET = struct.Struct("dd")  # tokens, time of the last update


class RateLimiter:
    """Token bucket per key: ``rate`` requests/s, bursts of up to 2×rate.

    The buckets live in an anonymous shared mapping behind a process-shared lock, both made
    when the limiter is: a limiter made before the server forks its workers is one limiter
    for all of them, so the limit is per key for the server, whatever the worker count."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, *, keys: int = 1
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, 2.0 * rate)
        self.clock = clock
        # Slot 0 is the keyless client of --insecure-no-auth (key index -1), slot i+1 key i.
        self._slots = keys + 1
        self._buckets = mmap.mmap(-1, _BUCKET.size * self._slots)
        self._lock = multiprocessing.get_context("fork").Lock()
        now = clock()
        for slot in range(self._slots):
            _BUCKET.pack_into(self._buckets, slot * _BUCKET.size, self.burst, now)

    def check(self, key: int) -> float:
        """0 if the request may pass, else the seconds until it would."""
        offset = (key + 1) * _BUCKET.size
        with self._lock:
            now = self.clock()
            tokens: float
            last: float
            tokens, last = _BUCKET.unpack_from(self._buckets, offset)
            # max(): a worker that read the clock a moment before another took the lock
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
            if tokens >= 1.0:
                _BUCKET.pack_into(self._buckets, offset, tokens - 1.0, now)
                return 0.0
            _BUCKET.pack_into(self._buckets, offset, tokens, now)
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
        limiter: RateLimiter | None = None,
    ) -> None:
        self.keys = [k.encode() for k in keys]
        self.insecure_no_auth = insecure_no_auth
        if limiter is None and rate_limit > 0:
            limiter = RateLimiter(rate_limit, keys=len(self.keys))
        self.limiter = limiter
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
