"""The HTTP client of loadgen: retries while the server sheds load, and never longer
than the cap."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gravix.tools import client


def test_retry_after_honours_the_servers_header_with_a_floor_and_a_cap() -> None:
    assert client.retry_after("2", 0) == 2.0
    assert client.retry_after(None, 0) == pytest.approx(0.05)
    assert client.retry_after("junk", 2) == pytest.approx(0.2)
    assert client.retry_after("3600", 0) == client.MAX_RETRY_WAIT


def test_post_retries_429_and_503_then_returns_the_final_answer() -> None:
    answers = iter([429, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json={"accepted": 1}, headers={"Retry-After": "0"})

    async def send() -> client.Reply:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await client.post(http, client.FACTS_BATCH_PATH, b"[]")

    reply = asyncio.run(send())
    assert (reply.status, reply.requests, reply.retries) == (200, 3, 2)
    assert reply.data == {"accepted": 1}


def test_post_reports_no_answer_as_an_error_without_raising() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def send() -> client.Reply:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await client.post(http, client.EVENTS_PATH, b"{}")

    reply = asyncio.run(send())
    assert reply.status is None and reply.error is not None and "ConnectError" in reply.error
