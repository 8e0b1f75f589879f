"""The httptools protocol of the ingest server: uvicorn's, with deadlines on request
headers and on a request body, and a limit on the size of the headers. It extends uvicorn
internals; the uvicorn pin in pyproject.toml and tests/ingest/test_uvicorn_contract.py
guard them."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gravix.ingest.body import BODY_TIMEOUT_SECONDS
from gravix.ingest.routes import MAX_HEADER_BYTES, error_body

# Request headers must arrive within this many seconds of a connection or a new request.
HEADER_TIMEOUT_SECONDS = 10.0

_REFUSAL_BODY = error_body(431, f"request headers are over the limit of {MAX_HEADER_BYTES} bytes")
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n" % len(_REFUSAL_BODY)
) + _REFUSAL_BODY


class GuardedProtocol(HttpToolsProtocol):
    """httptools protocol that closes a connection whose request headers do not arrive
    within HEADER_TIMEOUT_SECONDS, and answers 431 (and closes) to a request whose line and
    headers pass MAX_HEADER_BYTES: uvicorn only times out idle keep-alive connections and
    has no limit on headers, so a client that trickles (or never sends) its headers, or
    sends endless ones, would hold a connection and its memory forever.

    A body still incomplete BODY_TIMEOUT_SECONDS after its first part arrived is ended
    where it is: the application finds it shorter than its Content-Length and answers 408
    (:func:`gravix.ingest.body.read_body`). The timer is armed only for a body that does
    not arrive with its headers, so the usual request costs no timer (a uvloop timer costs
    microseconds, as much as a small request's validation)."""

    _header_timer: asyncio.TimerHandle | None = None
    _in_head = False  # between the first byte of a request and the end of its headers
    # Bytes of the chunks that came wholly inside the current request head, plus 1 if the
    # head began in an earlier chunk than the one being parsed.
    _head_bytes = 0
    _chunk = 0  # size of the chunk being parsed
    _refused = False
    _body_timer: asyncio.TimerHandle | None = None
    _body_cycle: Any = None  # the request cycle whose body the timer is for

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse_head(self) -> None:
        self._refused = True
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(_REFUSAL)
            self.transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # Counted per chunk, not per header: httptools holds a header until it is
        # complete, so one endless header would never reach on_header.
        inside = self._in_head
        self._chunk = len(data)
        super().data_received(data)
        if self._in_head:
            self._head_bytes += len(data) if inside else 1
            if self._head_bytes > MAX_HEADER_BYTES:
                self._refuse_head()
            return
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.more_body
            and cycle is not self._body_cycle
            and not cycle.response_complete
        ):
            self._cancel_body_timer()
            self._body_cycle = cycle
            self._body_timer = self.loop.call_later(BODY_TIMEOUT_SECONDS, self._body_timeout)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._body_cycle = None

    def _body_timeout(self) -> None:
        cycle = self._body_cycle
        self._body_timer = self._body_cycle = None
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            cycle.more_body = False
            cycle.message_event.set()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._in_head = False
        # The exact size only when the head came in several chunks or a big one: the
        # usual request arrives whole in one small chunk.
        if (self._head_bytes or self._chunk > MAX_HEADER_BYTES) and (
            len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > MAX_HEADER_BYTES
        ):
            self._refuse_head()
            raise _HeadersTooLarge  # stops the parser (uvicorn's 400 for it is skipped)
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # already answered 431
            super().send_400_response(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request already answered 431."""
