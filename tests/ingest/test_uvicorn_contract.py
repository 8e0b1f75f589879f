"""The uvicorn internals that gravix.ingest.process extends are still there, shaped as it
uses them. When uvicorn changes one, this fails naming it, before a header timeout or a
clean drain silently stops working; then adapt process.py and move the pin in
pyproject.toml."""

from __future__ import annotations

import asyncio
import inspect
from contextlib import AbstractContextManager

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gravix.ingest import process

# The methods the header-timeout protocol overrides, with the parameters it passes on.
OVERRIDDEN = {
    "connection_made": ["self", "transport"],
    "on_message_begin": ["self"],
    "on_headers_complete": ["self"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "send_400_response": ["self", "msg"],
}
WHERE = f"uvicorn {uvicorn.__version__}"


def test_header_timeout_protocol_overrides_only_methods_the_base_still_has() -> None:
    ours = process._header_timeout_protocol()
    assert issubclass(ours, HttpToolsProtocol)
    overridden = {n for n in vars(ours) if not n.startswith("__") and hasattr(HttpToolsProtocol, n)}
    assert overridden <= set(OVERRIDDEN), (
        f"{WHERE}: HttpToolsProtocol now has {sorted(overridden - set(OVERRIDDEN))}, which "
        "the header-timeout protocol's own helpers now shadow"
    )
    for name, params in OVERRIDDEN.items():
        base = getattr(HttpToolsProtocol, name, None)
        assert callable(base), f"{WHERE}: HttpToolsProtocol.{name} is gone"
        got = list(inspect.signature(base).parameters)
        assert got == params, f"{WHERE}: HttpToolsProtocol.{name} now takes {got}, not {params}"


def test_protocol_instance_has_the_loop_and_transport_the_timer_uses() -> None:
    async def app(scope: object, receive: object, send: object) -> None: ...

    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        proto = process._header_timeout_protocol()(config, ServerState(), {}, _loop=loop)
        assert proto.loop is loop, f"{WHERE}: HttpToolsProtocol no longer keeps `loop`"
        transport = _Transport()
        proto.connection_made(transport)
        assert proto.transport is transport, (
            f"{WHERE}: HttpToolsProtocol.connection_made no longer keeps `transport`"
        )
        assert proto._header_timer is not None, "the header timer was not armed on connect"
        proto.connection_lost(None)
        assert proto._header_timer is None, "the header timer outlived its connection"
        assert transport.closed
    finally:
        loop.close()


def test_protocol_answers_431_to_headers_over_the_limit_from_its_parser_state() -> None:
    # The exact size comes from the `url` and `headers` the base protocol collects.
    async def app(scope: object, receive: object, send: object) -> None: ...

    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        for head in (
            b"GET /live HTTP/1.1\r\nX-Big: " + b"a" * process.MAX_HEADER_BYTES + b"\r\n\r\n",
            b"GET /live?" + b"q" * process.MAX_HEADER_BYTES + b" HTTP/1.1\r\n\r\n",
        ):
            proto = process._header_timeout_protocol()(config, ServerState(), {}, _loop=loop)
            transport = _Transport()
            proto.connection_made(transport)
            proto.data_received(head)
            assert transport.written.startswith(b"HTTP/1.1 431 "), transport.written[:80]
            assert b"connection: close" in transport.written and transport.closed
            assert not proto.tasks, "a refused request reached the application"
            proto.connection_lost(None)
    finally:
        loop.close()


def test_body_deadline_ends_the_body_through_the_request_cycle() -> None:
    # The deadline uses the cycle's `more_body`, `response_complete` and `message_event`.
    async def app(scope: object, receive: object, send: object) -> None: ...

    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        proto = process._header_timeout_protocol()(config, ServerState(), {}, _loop=loop)
        proto.connection_made(_Transport())
        proto.data_received(b"POST /api/v1/facts HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
        armed = proto._body_timer
        assert armed is not None, "no deadline for a body that did not come with its headers"
        proto.data_received(b"abc")
        assert proto._body_timer is armed, "the deadline moved when part of the body came"
        cycle = proto.cycle
        assert cycle.more_body and not cycle.response_complete
        proto._body_timeout()
        assert not cycle.more_body and cycle.message_event.is_set()
        assert bytes(cycle.body) == b"abc"
        whole = process._header_timeout_protocol()(config, ServerState(), {}, _loop=loop)
        whole.connection_made(_Transport())
        whole.data_received(b"POST /api/v1/facts HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        assert whole._body_timer is None, "a timer for a body that came with its headers"
        tasks = [*proto.tasks, *whole.tasks]
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        proto.connection_lost(None)
        whole.connection_lost(None)
        assert proto._body_timer is None
    finally:
        loop.close()


class _Transport(asyncio.Transport):
    """No socket: the protocol is only connected and disconnected."""

    closed = False
    written = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_server_capture_signals_is_a_context_manager_method_with_exit_flags() -> None:
    base = getattr(uvicorn.Server, "capture_signals", None)
    assert callable(base), f"{WHERE}: uvicorn.Server.capture_signals is gone"
    assert list(inspect.signature(base).parameters) == ["self"], (
        f"{WHERE}: Server.capture_signals now takes {list(inspect.signature(base).parameters)}"
    )
    server = process._graceful_server_type()(uvicorn.Config(lambda: None, log_config=None))
    assert isinstance(server, uvicorn.Server)
    for flag in ("should_exit", "force_exit", "started"):
        assert getattr(server, flag, None) is False, f"{WHERE}: Server.{flag} is not a flag"
    managed = uvicorn.Server(uvicorn.Config(lambda: None, log_config=None)).capture_signals()
    assert isinstance(managed, AbstractContextManager), (
        f"{WHERE}: Server.capture_signals() no longer returns a context manager"
    )
    with server.capture_signals():  # ours: sets flags instead of re-raising the signal
        process.signal.raise_signal(process.signal.SIGTERM)
    assert server.should_exit and not server.force_exit
