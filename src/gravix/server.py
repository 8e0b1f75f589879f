"""The ingest server: a plain ASGI app (routes, auth, limits, metrics) and its lifecycle
(start-up recovery, worker processes, graceful stop).

Order of checks on an ``/api/`` request, cheapest first and all before the body is read:
route and method (404/405), API key (401), rate limit (429), content type (415), declared
length (411/413), storage state (503). Then the body is read with a running size check
(413, also on the decompressed size of gzip bodies), validated (400), and appended with
group commit; the 2xx is sent only after the fdatasync that covers it.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import json
import logging
import math
import os
import signal
import socket
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from gravix import durable, layout
from gravix.buffer import BufferObserver, CommitStats, TopicBuffer, fresh_error
from gravix.errors import ConfigError, GravixError, StorageError, ValidationError
from gravix.schema import Validator
from gravix.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("gravix.server")

RETRY_AFTER_STORAGE = "2"
# Request headers must arrive within this many seconds of a connection or a new request.
HEADER_TIMEOUT_SECONDS = 10.0
GRACEFUL_TIMEOUT_SECONDS = 30
JSON_TYPES = (b"application/json", b"application/x-ndjson")


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    topic: str | None = None
    batch: bool = False


ROUTES: dict[str, Route] = {
    "/api/v1/facts": Route("facts", "POST", layout.REQUEST_FACTS),
    "/api/v1/facts/batch": Route("facts_batch", "POST", layout.REQUEST_FACTS, batch=True),
    "/api/v1/events": Route("events", "POST", layout.SERVICE_EVENTS),
    "/api/v1/events/batch": Route("events_batch", "POST", layout.SERVICE_EVENTS, batch=True),
    "/live": Route("live", "GET"),
    "/health": Route("health", "GET"),
    "/ready": Route("ready", "GET"),
    "/metrics": Route("metrics", "GET"),
    "/openapi.json": Route("openapi", "GET"),
}

_encode = msgspec.json.Encoder().encode


class HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.extra = extra or {}


# --- metrics ------------------------------------------------------------------------------------


class HotCounters:
    """Counters bumped on every request, kept as plain integers and turned into Prometheus
    families only when /metrics is scraped: a prometheus_client ``inc`` (lock, label
    lookup) costs more than the rest of a small request's bookkeeping."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.accepted = dict.fromkeys(layout.TOPICS, 0)
        self.rejected = dict.fromkeys(layout.TOPICS, 0)
        self.body_bytes = dict.fromkeys(layout.TOPICS, 0)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        requests = CounterMetricFamily(
            "gravix_http_requests", "HTTP requests by route and status", labels=["route", "status"]
        )
        for (route, status), count in sorted(self.requests.items()):
            requests.add_metric([route, str(status)], count)
        yield requests
        for name, doc, values in (
            ("gravix_events_accepted", "Events durably accepted", self.accepted),
            ("gravix_events_rejected", "Events rejected by validation", self.rejected),
            ("gravix_request_body_bytes", "Request body bytes received (after gzip decoding)",
             self.body_bytes),
        ):  # fmt: skip
            family = CounterMetricFamily(name, doc, labels=["topic"])
            for topic, count in values.items():
                family.add_metric([topic], count)
            yield family


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


class CommitMetrics:
    """Per-topic group-commit figures, bumped on every commit, rendered at scrape time."""

    FSYNC_BOUNDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0)
    REQUEST_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    EVENT_BOUNDS = (1, 10, 100, 1000, 5000, 10000, 50000)

    def __init__(self) -> None:
        self.fsyncs = dict.fromkeys(layout.TOPICS, 0)
        self.stored_bytes = dict.fromkeys(layout.TOPICS, 0)
        self.fsync_seconds = {t: PlainHistogram(self.FSYNC_BOUNDS) for t in layout.TOPICS}
        self.requests = {t: PlainHistogram(self.REQUEST_BOUNDS) for t in layout.TOPICS}
        self.events = {t: PlainHistogram(self.EVENT_BOUNDS) for t in layout.TOPICS}

    def record(self, topic: str, stats: CommitStats) -> None:
        self.fsyncs[topic] += 1
        self.stored_bytes[topic] += stats.bytes
        self.fsync_seconds[topic].observe(stats.fsync_seconds)
        self.requests[topic].observe(stats.requests)
        self.events[topic].observe(stats.events)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        for name, doc, counts in (
            ("gravix_stored_bytes", "Canonical line bytes appended", self.stored_bytes),
            ("gravix_fsyncs", "fdatasync calls on buffer files", self.fsyncs),
        ):
            counter = CounterMetricFamily(name, doc, labels=["topic"])
            for topic, count in counts.items():
                counter.add_metric([topic], count)
            yield counter
        for name, doc, histograms in (
            ("gravix_fsync_seconds", "fdatasync latency", self.fsync_seconds),
            ("gravix_group_commit_requests", "Requests answered by one group commit",
             self.requests),
            ("gravix_group_commit_events", "Events made durable by one group commit",
             self.events),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, doc, labels=["topic"])
            for topic, histogram in histograms.items():
                family.add_metric([topic], histogram.buckets(), histogram.sum)
            yield family


class Metrics:
    """Prometheus metrics of one process, in their own registry (never a key in a label)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.hot = HotCounters()
        r.register(self.hot)
        self.commits = CommitMetrics()
        r.register(self.commits)
        self.rotations = Counter(
            "gravix_rotations", "Buffer rotations by reason", ["topic", "reason"], registry=r
        )
        self.published = Counter(
            "gravix_published_lines", "Lines moved from buffer into raw", ["topic"], registry=r
        )
        self.storage_errors = Counter(
            "gravix_storage_errors", "Failed buffer writes", ["topic"], registry=r
        )
        self.active_bytes = Gauge(
            "gravix_buffer_active_bytes", "Size of the active buffer file", ["topic"], registry=r
        )
        self.active_age = Gauge(
            "gravix_buffer_active_age_seconds",
            "Age of the oldest line in the active buffer file",
            ["topic"],
            registry=r,
        )
        self.sealed_pending = Gauge(
            "gravix_buffer_sealed_pending",
            "Sealed files not yet moved into raw",
            ["topic"],
            registry=r,
        )
        self.ready = Gauge("gravix_ready", "1 when /ready answers 200", registry=r)
        self.rate_limited = Counter(
            "gravix_rate_limited", "Requests refused by the rate limit", registry=r
        )

    def count_request(self, route: str, status: int) -> None:
        requests = self.hot.requests
        key = (route, status)
        requests[key] = requests.get(key, 0) + 1

    def observer(self, on_fatal: Callable[[str, BaseException], None]) -> BufferObserver:
        return BufferObserver(
            on_commit=self.commits.record,
            on_rotate=lambda topic, reason: self.rotations.labels(topic, reason).inc(),
            on_storage_error=lambda topic, _exc: self.storage_errors.labels(topic).inc(),
            on_fatal=on_fatal,
            on_publish=lambda topic, lines: self.published.labels(topic).inc(lines),
        )

    def render(self, buffers: dict[str, TopicBuffer], ready: bool) -> bytes:
        from prometheus_client import generate_latest

        for topic, buf in buffers.items():
            state = buf.state()
            self.active_bytes.labels(topic).set(state.active_bytes)
            self.active_age.labels(topic).set(state.active_age_seconds)
            self.sealed_pending.labels(topic).set(state.sealed_pending)
        self.ready.set(1 if ready else 0)
        return bytes(generate_latest(self.registry))


# --- rate limit ---------------------------------------------------------------------------------


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


# --- single events, validated and appended together -----------------------------------------------


# Turns of the event loop a group of single events may wait for more requests, while each
# turn brings more: every fdatasync blocks the process, so the fewer per request the better.
# Four turns measured best with 16 connections per worker (10-13 requests per commit instead
# of 5 when committing at once); a turn that brings nothing ends the wait.
GATHER_TURNS = 4


class SingleEvents:
    """The single-event requests of one topic that arrive in the same few turns of the event
    loop are validated together (one pass over many events costs far less than one per
    request) and appended as one group, written and fsynced at once when the buffer's
    writer is idle; each request is then answered with its own outcome."""

    def __init__(self, validator: Validator, buffer: TopicBuffer) -> None:
        self.validator = validator
        self.buffer = buffer
        self._waiting: list[tuple[bytes, asyncio.Future[str]]] = []
        # Looked up once: asyncio.get_running_loop() costs a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen = 0
        self._turns = 0

    def submit(self, body: bytes) -> asyncio.Future[str]:
        """A future for the event's id once it is fsynced; it fails with
        :class:`ValidationError` for an invalid body, or with the storage error."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[str] = loop.create_future()
        self._waiting.append((body, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        if len(self._waiting) > self._seen and self._turns < GATHER_TURNS:
            # Still growing: give the loop another turn (a poll that does not wait) to read
            # requests that have just arrived, so that they share this fdatasync.
            self._seen = len(self._waiting)
            self._turns += 1
            assert self._loop is not None
            self._loop.call_soon(self._flush)
            return
        self._seen = self._turns = 0
        waiting, self._waiting = self._waiting, []
        try:
            lines = self.validator.many([body for body, _ in waiting])
        except Exception as exc:  # a bug, not bad input: fail these requests, never hang them
            log.exception("validating %d single events failed", len(waiting))
            for _body, future in waiting:
                if not future.done():
                    future.set_exception(RuntimeError(f"validation failed: {exc!r}"))
            return
        rejected = dict(lines.errors)
        accepted: list[asyncio.Future[str]] = []
        for index, (_body, future) in enumerate(waiting):
            message = rejected.get(index)
            if message is None:
                accepted.append(future)
            elif not future.done():
                future.set_exception(ValidationError(message))
        if not accepted:
            return
        try:
            if self.buffer.write_now(lines.data, lines.events, lines.hours, requests=len(accepted)):
                _settle(accepted, lines.ids, None)
                return
            stored = self.buffer.submit(
                lines.data, lines.events, lines.hours, requests=len(accepted)
            )
        except StorageError as exc:  # DurabilityLost included
            _settle(accepted, lines.ids, exc)
            return

        def answer(done: asyncio.Future[None]) -> None:
            error = (
                StorageError("the commit was cancelled") if done.cancelled() else done.exception()
            )
            _settle(accepted, lines.ids, error)

        stored.add_done_callback(answer)


def _settle(
    futures: list[asyncio.Future[str]], event_ids: list[str], error: BaseException | None
) -> None:
    """Answer each still-waiting request of a group: its event id, or its own copy of the
    group's storage error."""
    for future, event_id in zip(futures, event_ids, strict=True):
        if future.done():
            continue
        if error is None:
            future.set_result(event_id)
        else:
            future.set_exception(fresh_error(error))


# --- the ASGI app -------------------------------------------------------------------------------


def _not_stored(exc: GravixError) -> HttpError:
    return HttpError(
        503, f"not stored: {exc.message}", [(b"retry-after", RETRY_AFTER_STORAGE.encode())]
    )


def _media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


def _error_body(status: int, message: str, extra: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {"error": message, "code": status}
    if extra:
        doc.update(extra)
    return _encode(doc)


class IngestApp:
    """The ASGI application of one server process."""

    def __init__(
        self, settings: Settings, *, insecure_no_auth: bool = False, log_format: str = "text"
    ) -> None:
        self.settings = settings
        self.root = settings.data_dir
        self.keys = [k.encode() for k in settings.api_keys]
        self.insecure_no_auth = insecure_no_auth
        self.limiter = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        self.validators = {
            topic: Validator(
                topic,
                max_future_seconds=settings.max_future_seconds,
                max_age_days=settings.retention_days,
            )
            for topic in layout.TOPICS
        }
        self.metrics = Metrics()
        self.access = AccessLog(log_format)
        self.buffers: dict[str, TopicBuffer] = {}
        self.singles: dict[str, SingleEvents] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.exit_code = 0
        self.request_exit: Callable[[], None] = lambda: None
        self.closing = False
        self._openapi = _encode(openapi_document())

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        self._flusher = asyncio.create_task(self.access.flush_every(0.2))
        observer = self.metrics.observer(self._on_fatal)
        started: list[TopicBuffer] = []
        try:
            for topic in layout.TOPICS:
                buf = TopicBuffer(
                    self.root,
                    topic,
                    rotate_seconds=self.settings.rotate_seconds,
                    rotate_bytes=self.settings.rotate_bytes,
                    observer=observer,
                )
                await buf.start()
                started.append(buf)
                self.buffers[topic] = buf
                self.singles[topic] = SingleEvents(self.validators[topic], buf)
        except BaseException:
            for buf in started:
                await buf.close()
            raise

    async def shutdown(self) -> None:
        self.closing = True
        for buf in self.buffers.values():
            await buf.close(rotate=True)
        if self._flusher is not None:
            self._flusher.cancel()
        self.access.flush()

    def _on_fatal(self, topic: str, error: BaseException) -> None:
        self.exit_code = 1
        self.request_exit()

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except GravixError as exc:
                    log.error("cannot start: %s", exc.message)
                    await send({"type": "lifespan.startup.failed", "message": exc.message})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        route = ROUTES.get(path)
        received = 0
        try:
            if route is None:
                raise HttpError(404, f"no route {path[:100]}")
            if scope["method"] != route.method:
                raise HttpError(
                    405, f"{path} accepts {route.method} only", [(b"allow", route.method.encode())]
                )
            if route.topic is None:
                status, body, ctype = self.get_route(route)
            else:
                status, body, received = await self.ingest(route, scope, receive)
                ctype = b"application/json"
            headers = [(b"content-type", ctype)]
        except HttpError as exc:
            status = exc.status
            body = _error_body(status, exc.message, exc.extra)
            headers = [(b"content-type", b"application/json"), *exc.headers]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.count_request(route.name if route is not None else "other", status)
        self.access.log(scope.get("client"), scope["method"], path, status, started, received)

    def get_route(self, route: Route) -> tuple[int, bytes, bytes]:
        if route.name in ("live", "health"):
            return 200, b'{"status":"ok"}', b"application/json"
        if route.name == "ready":
            reasons = self.not_ready_reasons()
            if reasons:
                raise HttpError(
                    503,
                    "not ready: " + "; ".join(reasons),
                    [(b"retry-after", RETRY_AFTER_STORAGE.encode())],
                    {"reasons": reasons},
                )
            return 200, b'{"status":"ready"}', b"application/json"
        if route.name == "metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            ready = not self.not_ready_reasons()
            return 200, self.metrics.render(self.buffers, ready), CONTENT_TYPE_LATEST.encode()
        return 200, self._openapi, b"application/json"

    def not_ready_reasons(self) -> list[str]:
        reasons: list[str] = []
        if self.closing:
            reasons.append("shutting down")
        if not self.buffers:
            reasons.append("buffers not open")
        for topic, buf in self.buffers.items():
            if buf.failed is not None:
                reasons.append(f"{topic} buffer failed (fsync error); exiting")
            elif not buf.probe():
                reasons.append(f"{topic} buffer not writable: {buf.storage_error}")
        try:
            st = os.statvfs(self.root)
        except OSError as exc:
            reasons.append(f"data directory unusable: {exc.strerror}")
        else:
            free = st.f_bavail * st.f_frsize
            if free < self.settings.min_free_bytes:
                reasons.append(
                    f"free space {free // 2**20} MiB is below the floor of "
                    f"{self.settings.min_free_bytes // 2**20} MiB"
                )
        return reasons

    # -- ingestion --------------------------------------------------------------------------

    def _authorise(self, given: bytes | None) -> int:
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

    async def ingest(self, route: Route, scope: Scope, receive: Receive) -> tuple[int, bytes, int]:
        # Names are lower-case in ASGI; a repeated header counts with its last value.
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        ctype = headers.get(b"content-type")
        encoding = headers.get(b"content-encoding")
        length: int | None = None
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise HttpError(400, "Content-Length is not a number") from None
        key_index = self._authorise(headers.get(b"x-api-key"))
        if self.limiter is not None:
            wait = self.limiter.check(key_index)
            if wait > 0:
                self.metrics.rate_limited.inc()
                raise HttpError(
                    429,
                    "over the per-key rate limit",
                    [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
                )
        if ctype is None or (ctype not in JSON_TYPES and _media_type(ctype) not in JSON_TYPES):
            raise HttpError(415, "Content-Type must be application/json or application/x-ndjson")
        gzip = False
        if encoding is not None:
            enc = encoding.strip().lower()
            if enc == b"gzip":
                gzip = True
            elif enc not in (b"", b"identity"):
                raise HttpError(415, "Content-Encoding must be gzip or identity")
        limit = self.settings.max_batch_bytes if route.batch else self.settings.max_single_bytes
        if length is None:
            raise HttpError(411, "Content-Length is required")
        if length > limit:
            raise HttpError(413, f"body of {length} bytes is over the limit of {limit} bytes")
        topic = route.topic
        assert topic is not None
        buf = self.buffers.get(topic)
        if buf is None or self.closing:
            raise HttpError(
                503, "the server is shutting down", [(b"retry-after", RETRY_AFTER_STORAGE.encode())]
            )
        try:
            buf.check_writable()
        except StorageError as exc:
            raise HttpError(
                503, exc.message, [(b"retry-after", RETRY_AFTER_STORAGE.encode())]
            ) from None
        body = await self._read_body(receive, length, limit)
        received = len(body)
        if gzip:
            body = self._gunzip(body, limit)
        counters = self.metrics.hot
        counters.body_bytes[topic] += len(body)
        if not route.batch:
            try:
                event_id = await self.singles[topic].submit(body)
            except ValidationError as exc:
                counters.rejected[topic] += 1
                raise HttpError(400, exc.message) from None
            except StorageError as exc:
                raise _not_stored(exc) from None
            counters.accepted[topic] += 1
            # event_id is a validated UUID: safe to splice into the JSON text
            return 201, b'{"accepted":1,"event_id":"' + event_id.encode() + b'"}', received
        try:
            lines = self.validators[topic].batch_lines(body)
        except ValidationError as exc:
            raise HttpError(400, exc.message) from None
        errors = lines.errors
        if errors:
            counters.rejected[topic] += len(errors)
        error_docs = [{"index": i, "error": e} for i, e in errors]
        if not lines.events:
            raise HttpError(
                400,
                "no event accepted" if errors else "empty batch",
                extra={"accepted": 0, "rejected": len(errors), "errors": error_docs},
            )
        try:
            await buf.append(lines.data, lines.events, lines.hours)
        except StorageError as exc:  # DurabilityLost included
            raise _not_stored(exc) from None
        counters.accepted[topic] += lines.events
        return (
            200,
            _encode({"accepted": lines.events, "rejected": len(errors), "errors": error_docs}),
            received,
        )

    @staticmethod
    async def _read_body(receive: Receive, length: int, limit: int) -> bytes:
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body: bytes = message.get("body", b"")  # the whole body at once: the usual case
            if len(body) > limit or len(body) > length:
                raise HttpError(413, f"body is over the limit of {limit} bytes")
            return body
        chunks: list[bytes] = []
        total = 0
        while True:
            if message["type"] == "http.disconnect":
                raise HttpError(400, "client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit or total > length:
                    raise HttpError(413, f"body is over the limit of {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
            message = await receive()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _gunzip(body: bytes, limit: int) -> bytes:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise HttpError(400, f"body is not valid gzip: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise HttpError(413, f"decompressed body is over the limit of {limit} bytes")
        if not inflater.eof:
            raise HttpError(400, "gzip body is truncated")
        return out


# --- OpenAPI ------------------------------------------------------------------------------------


def _error_response(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}
        }
    return response


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.0 description of every route, as the server behaves."""
    from gravix.schema import HTTP_METHODS, UUID7_PATTERN

    time_schema = {
        "type": "string",
        "format": "date-time",
        "minLength": 20,
        "maxLength": 40,
        "description": "RFC 3339 with a zone; at most 5 minutes in the future and "
        "not older than the raw retention",
    }
    uuid7 = {"type": "string", "pattern": UUID7_PATTERN, "description": "UUID version 7"}
    service = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}
    fact_props = {
        "event_id": uuid7,
        "event_time": time_schema,
        "service": service,
        "method": {"type": "string", "enum": [*HTTP_METHODS, *(m.lower() for m in HTTP_METHODS)]},
        "path_template": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "pattern": "^/",
            "description": "no ? or #, no raw UUID, no numeric segment of 4+ digits",
        },
        "status_code": {"type": "integer", "minimum": 100, "maximum": 599},
        "latency_ms": {"type": "number", "minimum": 0, "maximum": 3600000},
        "user_agent_family": {"type": "string", "maxLength": 64},
    }
    event_props = {
        "event_id": uuid7,
        "event_time": time_schema,
        "service": service,
        "event_type": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
        "entity_id": {"type": "string", "maxLength": 128},
        "message": {"type": "string", "maxLength": 1024},
        "properties": {
            "type": "object",
            "maxProperties": 32,
            "additionalProperties": {"type": "string", "maxLength": 256},
            "description": "flat string map; keys ≤ 64 chars (alias `metadata`)",
        },
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {"error": {"type": "string"}, "code": {"type": "integer"}},
        },
        "RequestFact": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "event_id",
                "event_time",
                "service",
                "method",
                "path_template",
                "status_code",
                "latency_ms",
            ],
            "properties": fact_props,
            "description": "lowerCamelCase aliases (eventId, eventTime, pathTemplate, "
            "statusCode, latencyMs, userAgentFamily) are accepted too",
        },
        "ServiceEvent": {
            "type": "object",
            "additionalProperties": False,
            "required": ["event_id", "event_time", "service", "event_type"],
            "properties": event_props,
            "description": "aliases eventId, eventTime, eventType, entityId, metadata",
        },
        "Accepted": {
            "type": "object",
            "required": ["accepted", "event_id"],
            "properties": {"accepted": {"type": "integer"}, "event_id": {"type": "string"}},
        },
        "BatchResult": {
            "type": "object",
            "required": ["accepted", "rejected", "errors"],
            "properties": {
                "accepted": {"type": "integer"},
                "rejected": {"type": "integer"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "error"],
                        "properties": {"index": {"type": "integer"}, "error": {"type": "string"}},
                    },
                },
            },
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string"}},
        },
    }
    common = {
        "401": _error_response("missing or wrong X-API-Key"),
        "411": _error_response("Content-Length missing"),
        "413": _error_response("body (or its gzip-decoded form) over the limit"),
        "415": _error_response("Content-Type is not JSON / NDJSON, or unknown Content-Encoding"),
        "429": _error_response("over the per-key rate limit", retry_after=True),
        "503": _error_response("storage not writable or shutting down", retry_after=True),
    }
    encoding_header = {
        "name": "Content-Encoding",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": ["gzip", "identity"]},
    }

    def single(kind: str, summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": [{"ApiKey": []}],
                "parameters": [encoding_header],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{kind}"}}
                    },
                },
                "responses": {
                    "201": {
                        "description": "stored and fsynced",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Accepted"}
                            }
                        },
                    },
                    "400": _error_response("invalid event"),
                    **common,
                },
            }
        }

    def batch(kind: str, summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": [{"ApiKey": []}],
                "parameters": [encoding_header],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "array",
                                "items": {"$ref": f"#/components/schemas/{kind}"},
                            }
                        },
                        "application/x-ndjson": {
                            "schema": {
                                "type": "string",
                                "description": f"one {kind} JSON object per line",
                            }
                        },
                    },
                },
                "responses": {
                    "200": {
                        "description": "every accepted event is stored and fsynced; the others "
                        "are listed by index",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/BatchResult"}
                            }
                        },
                    },
                    "400": _error_response(
                        "no event accepted (with per-index errors), or the "
                        "body is not a JSON array / NDJSON"
                    ),
                    **common,
                },
            }
        }

    def probe(summary: str, fail: bool = False) -> dict[str, Any]:
        responses: dict[str, Any] = {
            "200": {
                "description": "ok",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}
                },
            }
        }
        if fail:
            responses["503"] = _error_response(
                "not ready (buffer not writable, disk below "
                "the free-space floor, or shutting down)",
                retry_after=True,
            )
        return {"get": {"summary": summary, "responses": responses}}

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Gravix ingestion API",
            "version": "1.0.0",
            "description": "A 2xx means every accepted event is on disk and fsynced.",
        },
        "paths": {
            "/api/v1/facts": single("RequestFact", "Store one request fact"),
            "/api/v1/facts/batch": batch("RequestFact", "Store request facts (NDJSON or array)"),
            "/api/v1/events": single("ServiceEvent", "Store one service event"),
            "/api/v1/events/batch": batch("ServiceEvent", "Store service events (NDJSON or array)"),
            "/live": probe("The process runs"),
            "/health": probe("The process runs"),
            "/ready": probe("Ready to store events", fail=True),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }


# --- logging ------------------------------------------------------------------------------------


class AccessLog:
    """One line per request on stderr, in the same text or JSON form as the other logs.

    A request only records its fields; they are formatted and written every 0.2 s (and at
    shutdown), many lines at a time: formatting and writing a line per request would cost
    more than the request itself. Only the client address, method, path, status, duration
    and body size are logged: never a header (keys) or a body."""

    def __init__(self, log_format: str = "text", stream: Any = None) -> None:
        self.json = log_format == "json"
        self.stream = stream
        self.pid = os.getpid()
        # (client, method, path, status, started, ended, body bytes); the times are
        # time.perf_counter() readings, turned into wall-clock time when formatted.
        self.records: list[tuple[Any, str, str, int, float, float, int]] = []

    def log(
        self, client: Any, method: str, path: str, status: int, started: float, size: int
    ) -> None:
        """``client`` is the ASGI (host, port) pair, or None; ``started`` is the
        time.perf_counter() reading when the request arrived."""
        self.records.append((client, method, path, status, started, time.perf_counter(), size))
        if len(self.records) >= 512:
            self.flush()

    def _lines(self) -> Iterator[str]:
        wall = time.time() - time.perf_counter()  # perf_counter reading → Unix time
        if self.json:
            for record in self.records:
                yield self._json_line(record, wall)
            return
        # Keep-alive clients repeat their address and route, and many requests end in the
        # same millisecond or take the same tenth of a millisecond: each piece is formatted
        # once per flush.
        head = f" INFO [{self.pid}] gravix.access: "
        middles: dict[tuple[Any, str, str, int], str] = {}
        stamps: dict[int, str] = {}
        durations: dict[int, str] = {}
        for peer, method, path, status, started, ended, _size in self.records:
            if peer is not None and type(peer) is not tuple:  # ASGI allows any 2-item iterable
                peer = tuple(peer)
            ms = int((wall + ended) * 1000)
            stamp = stamps.get(ms)
            if stamp is None:
                stamp = stamps[ms] = _stamp(ms)
            key = (peer, method, path, status)
            middle = middles.get(key)
            if middle is None:
                client = f"{peer[0]}:{peer[1]}" if peer else "-"
                middle = f'{head}{client} "{method} {_printable(path)}" {status} '
                middles[key] = middle
            tenths = int((ended - started) * 10_000 + 0.5)
            duration = durations.get(tenths)
            if duration is None:
                duration = durations[tenths] = f"{tenths // 10}.{tenths % 10}ms"
            yield stamp + middle + duration

    def _json_line(self, record: tuple[Any, str, str, int, float, float, int], wall: float) -> str:
        peer, method, path, status, started, ended, size = record
        client = f"{peer[0]}:{peer[1]}" if peer else "-"
        path = _printable(path)
        duration_ms = (ended - started) * 1000
        return _encode(
            {
                "time": _stamp(int((wall + ended) * 1000)),
                "level": "info",
                "logger": "gravix.access",
                "message": f'{client} "{method} {path}" {status} {duration_ms:.1f}ms',
                "pid": self.pid,
                "client": client,
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(duration_ms, 3),
                "body_bytes": size,
            }
        ).decode()

    def flush(self) -> None:
        if self.records:
            stream = self.stream or sys.stderr
            stream.write("\n".join(self._lines()) + "\n")
            stream.flush()
            self.records.clear()

    async def flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.flush()


def _stamp(ms: int) -> str:
    """Unix time in milliseconds as UTC ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ms // 1000))}.{ms % 1000:03d}Z"


def _printable(path: str) -> str:
    if len(path) > 200 or not path.isprintable():
        return path[:200].encode("unicode_escape").decode("ascii")
    return path


_ACCESS_FIELDS = ("client", "method", "path", "status", "duration_ms", "body_bytes")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in _ACCESS_FIELDS:
            if name in record.__dict__:
                doc[name] = record.__dict__[name]
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(log_format: str) -> None:
    if log_format not in ("text", "json"):
        raise ConfigError(f"--log-format must be text or json, got {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03dZ %(levelname)s [%(process)d] %(name)s: %(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


# --- lifecycle ----------------------------------------------------------------------------------


def _bind(host: str, port: int, *, reuse_port: bool, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another --port or stop the process using it",
        ) from None
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class ServedApp(Protocol):
    """What the process runner needs from an ASGI app besides being callable."""

    exit_code: int
    request_exit: Callable[[], None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def _header_timeout_protocol() -> type[Any]:
    """httptools protocol that closes a connection whose request headers do not arrive
    within HEADER_TIMEOUT_SECONDS: uvicorn only times out idle keep-alive connections, so
    a client that connects and trickles (or never sends) its headers would hold a
    connection and its memory forever."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    HEADER_TIMEOUT_SECONDS, self._header_timeout
                )

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def _run_worker(app_factory: Callable[[], ServedApp], sock: socket.socket) -> int:
    """One server process: uvicorn (uvloop + httptools) on ``sock`` until told to stop."""
    import uvicorn

    app = app_factory()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=_header_timeout_protocol(),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_SECONDS,
        timeout_keep_alive=30,
        backlog=2048,
    )

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Own handlers: uvicorn's re-raise the signal afterwards, which would turn a
            # clean drain into death by SIGTERM instead of exit status 0.
            def handle(sig: int, _frame: object) -> None:
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True

            previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                yield
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)

    server = _Server(config)

    def request_exit() -> None:
        server.should_exit = True

    app.request_exit = request_exit
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:
        log.error("server process stopped during start-up")
        return exc.code if isinstance(exc.code, int) and exc.code else 1
    if not server.started:
        return 1
    return app.exit_code


def _recover_at_start(root: Path) -> None:
    from gravix.recovery import recover_buffers

    report = recover_buffers(root)
    if report.published or report.activated:
        log.info(
            "start-up recovery: %d orphaned buffer file(s), %d line(s) moved into raw, "
            "%d torn tail line(s) dropped, %d damaged line(s) quarantined",
            len(report.published),
            report.lines,
            report.torn_tail_lines,
            report.damaged_lines,
        )


def serve(
    *,
    settings: Settings,
    workers: int = 1,
    log_format: str = "text",
    insecure_no_auth: bool = False,
) -> int:
    """Run the ingest server until SIGTERM/SIGINT; returns the process exit status
    (0 after a clean drain, 1 after a storage failure or a dead worker)."""
    configure_logging(log_format)
    if workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    if not settings.api_keys and not insecure_no_auth:
        raise ConfigError(
            "no API key configured; refusing to accept unauthenticated writes",
            hint="pass --api-key KEY (repeatable), set API_KEY or GRAVIX_API_KEYS, "
            "or --insecure-no-auth for a local experiment",
        )
    if insecure_no_auth and not settings.api_keys:
        log.warning(
            "--insecure-no-auth: anyone who can reach %s:%d can write events",
            settings.host,
            settings.port,
        )
    durable.install_fault_plan(settings.fault_plan)
    root = settings.data_dir
    try:
        durable.makedirs(root)
        layout.ensure_inside(root, layout.buffer_root(root))
        _recover_at_start(root)
    except OSError as exc:
        raise StorageError(
            f"cannot prepare the data directory {root}: {exc.strerror}",
            hint="check permissions and free space",
            errno=exc.errno,
        ) from exc
    log.info(
        "listening on http://%s:%d (%d worker%s, data in %s)",
        settings.host,
        settings.port,
        workers,
        "" if workers == 1 else "s",
        root,
    )

    def factory() -> ServedApp:
        return IngestApp(settings, insecure_no_auth=insecure_no_auth, log_format=log_format)

    return run_asgi(factory, host=settings.host, port=settings.port, workers=workers)


def run_asgi(app_factory: Callable[[], ServedApp], *, host: str, port: int, workers: int) -> int:
    """Serve the app made by ``app_factory`` with the server's HTTP stack (uvicorn, uvloop,
    httptools) in ``workers`` processes; returns the exit status. Benchmarks use it to run
    a reference app on exactly the same stack."""
    if workers == 1:
        sock = _bind(host, port, reuse_port=False, listen=True)
        try:
            return _run_worker(app_factory, sock)
        finally:
            sock.close()
    return _supervise(app_factory, host, port, workers)


def _supervise(app_factory: Callable[[], ServedApp], host: str, port: int, workers: int) -> int:
    """Fork ``workers`` processes, each with its own SO_REUSEPORT listener (and so its own
    active files); forward SIGTERM/SIGINT; if one dies, stop the others and fail."""
    holder = _bind(host, port, reuse_port=True, listen=False)
    port = holder.getsockname()[1]
    children: dict[int, int] = {}
    stopping = False

    def stop_all(sig: int = signal.SIGTERM) -> None:
        for pid in children:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)

    def on_signal(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        stop_all()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    for s in previous:
                        signal.signal(s, signal.SIG_DFL)
                    holder.close()
                    sock = _bind(host, port, reuse_port=True, listen=True)
                    code = _run_worker(app_factory, sock)
                except BaseException:
                    log.exception("worker %d failed", index)
                finally:
                    logging.shutdown()
                    os._exit(code)
            children[pid] = index
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            # A worker stopped by the forwarded signal before its own handlers were in
            # place had acknowledged nothing; that is a clean stop too.
            if code != 0 and not (stopping and code == -signal.SIGTERM):
                status = 1
            if not stopping:
                log.error(
                    "worker %d (pid %d) ended with status %d; stopping the others "
                    "(the next start recovers its buffer files)",
                    index,
                    pid,
                    code,
                )
                stopping = True
                status = 1
                stop_all()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        holder.close()
    return status


__all__ = ["IngestApp", "Metrics", "RateLimiter", "openapi_document", "serve"]
