"""The ingestion check of `gravix doctor`: is a server live and ready at ``--url``, and
does it accept the API key? The key check posts an empty batch, which the server refuses
without storing anything."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from gravix.ops.checks import FAIL, OK, WARN, CheckResult, Context
from gravix.settings import DEFAULT_URL

UNAUTHORIZED_HINT = (
    "send the key the server was started with in header `X-API-Key: <your-secret>`; "
    "check API_KEY / GRAVIX_API_KEYS (or --api-key) of `gravix ingest-server`"
)


def _refused(url: str, timeout: float) -> str | None:
    """Why nothing accepts a TCP connection at ``url``'s address, or None if something
    does: the common "no server" answer without loading an HTTP client."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # let the HTTP client report what is wrong with it
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None


def check_ingestion(ctx: Context) -> CheckResult:
    url = ctx.settings.url
    configured = url != DEFAULT_URL
    start_hint = "start it with `gravix ingest-server` (or pass the right --url)"
    reason = _refused(url, ctx.limits.http_timeout_s)
    if reason is None:
        import httpx

        try:
            with httpx.Client(base_url=url, timeout=ctx.limits.http_timeout_s) as client:
                live = client.get("/live")
                ready = client.get("/ready")
                keys = _key_results(client, ctx.settings.api_keys)
        except httpx.HTTPError as exc:
            reason = str(exc).splitlines()[0][:80] or type(exc).__name__
    if reason is not None:
        if not configured:
            return CheckResult(
                "ingestion",
                WARN,
                f"no server configured; none answers at {url} ({reason})",
                "pass --url (or GRAVIX_URL) to check a running `gravix ingest-server`",
            )
        return CheckResult("ingestion", FAIL, f"no answer from {url} ({reason})", start_hint)
    if live.status_code != 200:
        return CheckResult("ingestion", FAIL, f"{url}/live answered {live.status_code}", start_hint)
    if ready.status_code != 200:
        return CheckResult(
            "ingestion",
            FAIL,
            f"{url} is live but not ready ({ready.status_code}: {_error_text(ready)})",
            "the server's buffer is not writable or its disk is below the floor: free space "
            "(`gravix cleanup` deletes old partitions) and check its data directory",
        )
    if not keys:
        return CheckResult(
            "ingestion",
            WARN,
            f"{url} is live and ready; no API key given, so not checked",
            "pass --api-key (or set API_KEY) to check the key clients send",
        )
    rejected = [i for i, code in enumerate(keys) if code == 401]
    odd = [code for code in keys if code not in (200, 400, 401)]
    if rejected:
        which = "the API key" if len(keys) == 1 else f"{len(rejected)} of {len(keys)} API keys"
        return CheckResult(
            "ingestion",
            FAIL,
            f"{url} is live and ready but rejects {which} (401 Unauthorized)",
            UNAUTHORIZED_HINT,
        )
    if odd:
        return CheckResult(
            "ingestion",
            WARN,
            f"{url} is live and ready; the key probe answered {odd[0]}",
            "check the server log of `gravix ingest-server`",
        )
    return CheckResult("ingestion", OK, f"{url} is live and ready and accepts the API key")


def _error_text(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    text = body.get("error") if isinstance(body, dict) else None
    return str(text or response.text.strip() or response.reason_phrase)[:120]


def _key_results(client: Any, keys: tuple[str, ...]) -> list[int]:
    # An empty batch proves the key is accepted (400 "none accepted", not 401) and
    # stores nothing.
    return [
        client.post(
            "/api/v1/facts/batch",
            content=b"[]",
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        ).status_code
        for key in keys
    ]
