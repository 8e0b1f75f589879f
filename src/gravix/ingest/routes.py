"""The route table, the HTTP error type and the JSON bodies of errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gravix import schema
from gravix.errors import GravixError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RETRY_AFTER_STORAGE = "2"
JSON_TYPES = (b"application/json", b"application/x-ndjson")


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    topic: str | None = None
    batch: bool = False


ROUTES: dict[str, Route] = {
    "/api/v1/facts": Route("facts", "POST", schema.REQUEST_FACTS),
    "/api/v1/facts/batch": Route("facts_batch", "POST", schema.REQUEST_FACTS, batch=True),
    "/api/v1/events": Route("events", "POST", schema.SERVICE_EVENTS),
    "/api/v1/events/batch": Route("events_batch", "POST", schema.SERVICE_EVENTS, batch=True),
    "/live": Route("live", "GET"),
    "/health": Route("health", "GET"),
    "/ready": Route("ready", "GET"),
    "/metrics": Route("metrics", "GET"),
    "/openapi.json": Route("openapi", "GET"),
}

encode = msgspec.json.Encoder().encode


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


def not_stored(exc: GravixError) -> HttpError:
    return HttpError(
        503, f"not stored: {exc.message}", [(b"retry-after", RETRY_AFTER_STORAGE.encode())]
    )


def media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


def error_body(status: int, message: str, extra: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {"error": message, "code": status}
    if extra:
        doc.update(extra)
    return encode(doc)
