"""The ASGI application of one server process: dispatch on the route table, the probes and
/metrics, the lifespan (buffers opened at start, drained and rotated at stop), and the path
of an ``/api/`` request through the parts that own each step.

Order on an ``/api/`` request, cheapest first: route and method (404/405); the headers
(:mod:`gravix.ingest.guard`: 400 bad length, 401, 429, 415, 411/413); storage state (503);
the body with its running size check, its deadline and gunzip (:mod:`gravix.ingest.body`:
413, 408, 400); validation (400); the append with group commit
(:mod:`gravix.ingest.buffer`). The 2xx is sent only after the fdatasync that covers it. An
answer sent before the body was read closes the connection, so a client without a key
cannot hold one open.

A big batch body is gunzipped and validated in a thread, one at a time, so that a bad
16 MiB batch (seconds of work) never stops the event loop answering other clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gravix import schema
from gravix.errors import GravixError, StorageError, ValidationError
from gravix.ingest.body import gunzip, read_body
from gravix.ingest.buffer import TopicBuffer
from gravix.ingest.guard import Guard, RateLimiter
from gravix.ingest.logs import AccessLog
from gravix.ingest.metrics import Metrics
from gravix.ingest.openapi import openapi_document
from gravix.ingest.routes import (
    OK_BODY,
    READY_BODY,
    RETRY_AFTER_STORAGE,
    ROUTES,
    HttpError,
    Receive,
    Route,
    Scope,
    Send,
    accepted_body,
    batch_body,
    batch_counts,
    encode,
    error_body,
    not_stored,
)
from gravix.ingest.singles import SingleEvents
from gravix.ingest.upload import Uploader
from gravix.schema import Lines, Validator
from gravix.schema.contract import MAX_BATCH_ERRORS
from gravix.settings import Settings
from gravix.storage.store import open_store

log = logging.getLogger(__name__)

# At a graceful stop, sealed files are uploaded for this long at most; the next start
# uploads what is left.
UPLOAD_DRAIN_SECONDS = 10.0
# Batch bodies at least this big are gunzipped and validated off the event loop: below it the
# hand-over to a thread costs more than the work.
THREAD_BODY_BYTES = 256 * 1024
_CLOSE = (b"connection", b"close")


class IngestApp:
    """The ASGI application of one server process."""

    def __init__(
        self,
        settings: Settings,
        *,
        insecure_no_auth: bool = False,
        log_format: str = "text",
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.root = settings.data_dir
        self.metrics = Metrics(self.root, settings.min_free_bytes)
        self.guard = Guard(
            settings.api_keys,
            insecure_no_auth=insecure_no_auth,
            rate_limit=settings.rate_limit,
            on_rate_limited=self.metrics.rate_limited.inc,
            limiter=limiter,
        )
        self.validators = {
            topic: Validator(
                topic,
                max_future_seconds=settings.max_future_seconds,
                max_age_days=settings.retention_days,
            )
            for topic in schema.TOPICS
        }
        self.access = AccessLog(log_format)
        self.buffers: dict[str, TopicBuffer] = {}
        self.singles: dict[str, SingleEvents] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.exit_code = 0
        self.request_exit: Callable[[], None] = lambda: None
        self.closing = False
        self._openapi = encode(openapi_document())
        self._validation: ThreadPoolExecutor | None = None
        self.uploader: Uploader | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def startup(self) -> None:
        self._flusher = asyncio.create_task(self.access.flush_every(0.2))
        observer = self.metrics.observer(self._on_fatal)
        if self.settings.store is not None:
            # Made here, in the server process (after a fork): the S3 client is not fork-safe.
            self.uploader = Uploader(self.root, open_store(self.settings), self.settings.node_id)
            self.metrics.watch_uploads(self.uploader)
            self.uploader.start()
        upload = self.uploader.hand_off if self.uploader is not None else None
        started: list[TopicBuffer] = []
        try:
            for topic in schema.TOPICS:
                buf = TopicBuffer(
                    self.root,
                    topic,
                    rotate_seconds=self.settings.rotate_seconds,
                    rotate_bytes=self.settings.rotate_bytes,
                    observer=observer,
                    upload=upload,
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
        if self.uploader is not None:
            await asyncio.to_thread(self.uploader.stop, UPLOAD_DRAIN_SECONDS)
        if self._flusher is not None:
            self._flusher.cancel()
        if self._validation is not None:
            self._validation.shutdown(wait=False, cancel_futures=True)
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
            if route.topic is None and _declares_body(scope):
                headers.append(_CLOSE)
        except HttpError as exc:
            status = exc.status
            body = error_body(status, exc.message, exc.extra)
            headers = [(b"content-type", b"application/json"), *exc.headers]
            if exc.close or ((route is None or route.topic is None) and _declares_body(scope)):
                headers.append(_CLOSE)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.count_request(route.name if route is not None else "other", status)
        self.access.log(scope.get("client"), scope["method"], path, status, started, received)

    def get_route(self, route: Route) -> tuple[int, bytes, bytes]:
        if route.name in ("live", "health"):
            return 200, OK_BODY, b"application/json"
        if route.name == "ready":
            reasons = self.not_ready_reasons()
            if reasons:
                raise HttpError(
                    503,
                    "not ready: " + "; ".join(reasons),
                    [(b"retry-after", RETRY_AFTER_STORAGE.encode())],
                    {"reasons": reasons},
                )
            return 200, READY_BODY, b"application/json"
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

    def _open_buffer(self, topic: str) -> TopicBuffer:
        """The topic's buffer if it can take an append now, else a 503."""
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
        return buf

    async def ingest(self, route: Route, scope: Scope, receive: Receive) -> tuple[int, bytes, int]:
        limit = self.settings.max_batch_bytes if route.batch else self.settings.max_single_bytes
        topic = route.topic
        assert topic is not None
        try:
            admitted = self.guard.admit(dict(scope["headers"]), limit)
            buf = self._open_buffer(topic)
            body = await read_body(receive, admitted.length, limit)
        except HttpError as exc:
            exc.close = True  # the body, or the rest of it, may still be on its way
            raise
        received = len(body)
        if route.batch and received >= THREAD_BODY_BYTES:
            lines = await self._validate_in_thread(topic, body, admitted.gzip, limit)
            return await self._store_batch(topic, buf, lines, received)
        if admitted.gzip:
            body = gunzip(body, limit)
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
            return 201, accepted_body(event_id), received
        try:
            lines = self.validators[topic].batch_lines(body, max_errors=MAX_BATCH_ERRORS)
        except ValidationError as exc:
            raise HttpError(400, exc.message) from None
        return await self._store_batch(topic, buf, lines, received)

    async def _validate_in_thread(self, topic: str, body: bytes, gzip: bool, limit: int) -> Lines:
        """Gunzip and validate a big batch body in the validation thread."""
        validator = self.validators[topic]

        def work() -> tuple[Lines, int]:
            data = gunzip(body, limit) if gzip else body
            try:
                return validator.batch_lines(data, max_errors=MAX_BATCH_ERRORS), len(data)
            except ValidationError as exc:
                raise HttpError(400, exc.message) from None

        if self._validation is None:
            self._validation = ThreadPoolExecutor(1, thread_name_prefix="gravix-validate")
        lines, size = await asyncio.get_running_loop().run_in_executor(self._validation, work)
        self.metrics.hot.body_bytes[topic] += size  # counted here: the loop owns the counters
        return lines

    async def _store_batch(
        self, topic: str, buf: TopicBuffer, lines: Lines, received: int
    ) -> tuple[int, bytes, int]:
        """Append a validated batch; the answer lists the first errors."""
        counters = self.metrics.hot
        rejected = lines.rejected
        if rejected:
            counters.rejected[topic] += rejected
        if not lines.events:
            raise HttpError(
                400,
                "no event accepted" if rejected else "empty batch",
                extra={"accepted": 0, **batch_counts(lines.errors, lines.unlisted)},
            )
        try:
            await buf.append(lines.data, lines.events, lines.hours)
        except StorageError as exc:  # DurabilityLost included
            raise not_stored(exc) from None
        counters.accepted[topic] += lines.events
        return 200, batch_body(lines.events, lines.errors, lines.unlisted), received


def _declares_body(scope: Scope) -> bool:
    """Whether a request says it has a body (which a GET route never reads)."""
    for name, value in scope["headers"]:
        if (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
            return True
    return False
