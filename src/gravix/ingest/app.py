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
import hmac
import logging
import math
import os
import time
import zlib
from collections.abc import Callable

from gravix import schema
from gravix.errors import GravixError, StorageError, ValidationError
from gravix.ingest.buffer import TopicBuffer
from gravix.ingest.guard import RateLimiter
from gravix.ingest.logs import AccessLog
from gravix.ingest.metrics import Metrics
from gravix.ingest.openapi import openapi_document
from gravix.ingest.routes import (
    JSON_TYPES,
    RETRY_AFTER_STORAGE,
    ROUTES,
    HttpError,
    Receive,
    Route,
    Scope,
    Send,
    encode,
    error_body,
    media_type,
    not_stored,
)
from gravix.ingest.singles import SingleEvents
from gravix.schema import Validator
from gravix.settings import Settings

log = logging.getLogger(__name__)


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
            for topic in schema.TOPICS
        }
        self.metrics = Metrics()
        self.access = AccessLog(log_format)
        self.buffers: dict[str, TopicBuffer] = {}
        self.singles: dict[str, SingleEvents] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.exit_code = 0
        self.request_exit: Callable[[], None] = lambda: None
        self.closing = False
        self._openapi = encode(openapi_document())

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        self._flusher = asyncio.create_task(self.access.flush_every(0.2))
        observer = self.metrics.observer(self._on_fatal)
        started: list[TopicBuffer] = []
        try:
            for topic in schema.TOPICS:
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
            body = error_body(status, exc.message, exc.extra)
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
        if ctype is None or (ctype not in JSON_TYPES and media_type(ctype) not in JSON_TYPES):
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
                raise not_stored(exc) from None
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
            raise not_stored(exc) from None
        counters.accepted[topic] += lines.events
        return (
            200,
            encode({"accepted": lines.events, "rejected": len(errors), "errors": error_docs}),
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
