"""Sending facts and events to a Gravix server over HTTP: one POST, retried while the
server answers 429 or 503 (honouring ``Retry-After``, with a capped back-off)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from gravix.errors import GravixError

FACTS_BATCH_PATH = "/api/v1/facts/batch"
EVENTS_PATH = "/api/v1/events"
RETRY_STATUSES = (429, 503)
MAX_RETRIES = 5
MAX_RETRY_WAIT = 5.0


@dataclass
class Reply:
    """The last answer to one POST: ``status`` None when no answer came (``error`` says
    why); ``requests`` counts every attempt, ``retries`` the ones a 429/503 caused."""

    status: int | None
    data: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    error: str | None = None

    @property
    def error_text(self) -> str:
        return str(self.data.get("error", ""))[:160]


def open_client(
    url: str, api_key: str | None, *, concurrency: int, timeout: float
) -> httpx.AsyncClient:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout)


async def check_live(client: httpx.AsyncClient, url: str) -> None:
    """Raise a :class:`GravixError` with a hint when nothing answers at ``url``."""
    try:
        await client.get("/live")
    except httpx.HTTPError as exc:
        raise GravixError(
            f"cannot reach the Gravix server at {url}: {exc}",
            hint="start one with `gravix ingest-server --api-key KEY`, or pass --url",
        ) from None


async def post(client: httpx.AsyncClient, path: str, body: bytes) -> Reply:
    """POST ``body`` to ``path``, retrying while the server sheds load."""
    reply = Reply(status=None)
    for attempt in range(MAX_RETRIES + 1):
        reply.requests += 1
        try:
            response = await client.post(path, content=body)
        except httpx.HTTPError as exc:
            reply.error = f"{type(exc).__name__}: {exc}"[:200]
            return reply
        reply.status = response.status_code
        if reply.status in RETRY_STATUSES and attempt < MAX_RETRIES:
            reply.retries += 1
            await asyncio.sleep(retry_after(response.headers.get("Retry-After"), attempt))
            continue
        break
    reply.data = _json(response)
    return reply


def retry_after(header: str | None, attempt: int) -> float:
    """Seconds to wait before retry ``attempt``: the server's ``Retry-After`` (seconds) or
    an exponential back-off, whichever is longer, capped at :data:`MAX_RETRY_WAIT`."""
    try:
        wait = float(header) if header else 0.0
    except ValueError:
        wait = 0.0
    return min(MAX_RETRY_WAIT, max(wait, 0.05 * 2.0**attempt))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
