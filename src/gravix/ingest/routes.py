"""The route table (what each path takes and answers: the server dispatches on it and the
OpenAPI document is generated from it), the HTTP error type, and the encoding of every
JSON response from the response Structs of :mod:`gravix.schema.contract`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gravix import schema
from gravix.errors import GravixError
from gravix.schema.contract import (
    MAX_BATCH_ERRORS,
    Accepted,
    BatchError,
    BatchResult,
    Error,
    Status,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RETRY_AFTER_STORAGE = "2"
# The request line and headers of one request may hold at most this many bytes (else 431,
# answered by gravix.ingest.protocol).
MAX_HEADER_BYTES = 64 * 1024
JSON_TYPES = (b"application/json", b"application/x-ndjson")


@dataclass(frozen=True)
class Route:
    """One path: its method, the topic it writes (None for a GET), the Struct of its body
    (a batch takes an array or NDJSON of them), its success status and the Struct it
    answers with (None: ``content_type`` says what it sends)."""

    name: str
    method: str
    summary: str
    topic: str | None = None
    batch: bool = False
    body: type[msgspec.Struct] | None = None
    status: int = 200
    response: type[msgspec.Struct] | None = Status
    content_type: str = "application/json"
    may_be_unavailable: bool = False  # answers 503 when not ready


ROUTES: dict[str, Route] = {
    "/api/v1/facts": Route(
        "facts", "POST", "Store one request fact", schema.REQUEST_FACTS,
        body=schema.RequestFact, status=201, response=Accepted,
    ),
    "/api/v1/facts/batch": Route(
        "facts_batch", "POST", "Store request facts (NDJSON or a JSON array)",
        schema.REQUEST_FACTS, batch=True, body=schema.RequestFact, response=BatchResult,
    ),
    "/api/v1/events": Route(
        "events", "POST", "Store one service event", schema.SERVICE_EVENTS,
        body=schema.ServiceEvent, status=201, response=Accepted,
    ),
    "/api/v1/events/batch": Route(
        "events_batch", "POST", "Store service events (NDJSON or a JSON array)",
        schema.SERVICE_EVENTS, batch=True, body=schema.ServiceEvent, response=BatchResult,
    ),
    "/live": Route("live", "GET", "The process runs"),
    "/health": Route("health", "GET", "The process runs"),
    "/ready": Route("ready", "GET", "Ready to store events", may_be_unavailable=True),
    "/metrics": Route(
        "metrics", "GET", "Prometheus metrics", response=None, content_type="text/plain"
    ),
    "/openapi.json": Route("openapi", "GET", "This document", response=None),
}  # fmt: skip

encode = msgspec.json.Encoder().encode


class HttpError(Exception):
    """A refusal: its status, message and headers, the optional fields of
    :class:`~gravix.schema.contract.Error` it carries (``reasons``, or a batch's counts), and
    whether the connection must close after it (the request's body was not read)."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        extra: dict[str, Any] | None = None,
        *,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.extra = extra or {}
        self.close = close


def not_stored(exc: GravixError) -> HttpError:
    return HttpError(
        503, f"not stored: {exc.message}", [(b"retry-after", RETRY_AFTER_STORAGE.encode())]
    )


def media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


def error_body(status: int, message: str, extra: dict[str, Any] | None = None) -> bytes:
    return encode(Error(message, status, **(extra or {})))


def batch_counts(errors: list[tuple[int, str]], unlisted: int = 0) -> dict[str, Any]:
    """The batch fields of an answer: the first MAX_BATCH_ERRORS errors, and how many of the
    rejected events they leave out (a bad batch's answer stays small, DESIGN §4)."""
    rejected = len(errors) + unlisted
    listed = [BatchError(index, error) for index, error in errors[:MAX_BATCH_ERRORS]]
    counts: dict[str, Any] = {"rejected": rejected, "errors": listed}
    if rejected > len(listed):
        counts["errors_truncated"] = rejected - len(listed)
    return counts


def batch_body(accepted: int, errors: list[tuple[int, str]], unlisted: int = 0) -> bytes:
    return encode(BatchResult(accepted, **batch_counts(errors, unlisted)))


def accepted_body(event_id: str) -> bytes:
    """``Accepted(1, event_id)`` encoded; spliced, because this is the hot path and a
    validated UUID needs no escaping (a test checks it equals the Struct's encoding)."""
    return b'{"accepted":1,"event_id":"' + event_id.encode() + b'"}'


OK_BODY = encode(Status("ok"))
READY_BODY = encode(Status("ready"))
