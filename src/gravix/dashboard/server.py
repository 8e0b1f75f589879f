"""Running the dashboard: the address check, the listening socket, uvicorn until SIGTERM or
Ctrl-C (in the main thread), or in a background thread for the demo and the tests."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from gravix.dashboard.app import create_app
from gravix.dashboard.auth import check_exposure, is_loopback
from gravix.errors import ConfigError
from gravix.query.source import open_root
from gravix.settings import Settings

log = logging.getLogger("gravix.dashboard")


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    return f"http://{shown}:{port}/"


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a ConfigError that says why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use",
                hint="stop what uses it, or pass --port (or GRAVIX_DASHBOARD_PORT)",
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="check --host (or GRAVIX_DASHBOARD_HOST)",
        ) from None
    sock.set_inheritable(True)
    return sock


class _Server:
    """uvicorn's server that stops cleanly (exit 0) on SIGTERM or the first Ctrl-C."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )

        class Quiet(uvicorn.Server):
            @contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return

                def handle(sig: int, _frame: object) -> None:
                    self.force_exit = self.should_exit and sig == signal.SIGINT
                    self.should_exit = True

                signals = (signal.SIGTERM, signal.SIGINT)
                previous = {s: signal.signal(s, handle) for s in signals}
                try:
                    yield
                finally:
                    for s, h in previous.items():
                        signal.signal(s, h)

        self.server = Quiet(config)

    def run(self, sock: socket.socket) -> None:
        self.server.run(sockets=[sock])

    def stop(self) -> None:
        self.server.should_exit = True


def _app_for(settings: Settings, now: Callable[[], datetime] | None, cache_size: int) -> Any:
    local = settings.store is None
    if local and settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise ConfigError(f"{settings.data_dir} is not a directory", hint="check --data-dir")
    return create_app(
        root=open_root(settings),
        keys=settings.api_keys,
        ingest_url=settings.url,
        now=now,
        cache_size=cache_size,
    )


def _prepare(
    settings: Settings, insecure_no_auth: bool, now: Callable[[], datetime] | None, cache: int
) -> tuple[Any, socket.socket]:
    host, port = settings.dashboard_host, settings.dashboard_port
    check_exposure(host, settings.api_keys, insecure_no_auth)
    app = _app_for(settings, now, cache)
    if not settings.api_keys and not is_loopback(host):
        log.warning("--insecure-no-auth: anyone who can reach %s:%d can read the data", host, port)
    return app, listen(host, port)


def serve(
    *,
    settings: Settings,
    insecure_no_auth: bool = False,
    on_ready: Callable[[str], None] | None = None,
    cache_size: int = 64,
) -> int:
    """Serve the dashboard until SIGTERM or Ctrl-C; returns the exit status (0).

    ``on_ready`` is told the page's URL once the port is listening."""
    app, sock = _prepare(settings, insecure_no_auth, None, cache_size)
    server = _Server(app)
    if on_ready is not None:
        on_ready(url_of(settings.dashboard_host, sock.getsockname()[1]))
    try:
        server.run(sock)
    finally:
        sock.close()
    return 0


@contextmanager
def running(
    *,
    settings: Settings,
    insecure_no_auth: bool = False,
    now: Callable[[], datetime] | None = None,
    cache_size: int = 64,
) -> Iterator[str]:
    """The dashboard in a background thread for the ``with`` block; yields its URL."""
    app, sock = _prepare(settings, insecure_no_auth, now, cache_size)
    server = _Server(app)
    thread = threading.Thread(target=server.run, args=(sock,), name="dashboard", daemon=True)
    thread.start()
    try:
        yield url_of(settings.dashboard_host, sock.getsockname()[1])
    finally:
        server.stop()
        thread.join(timeout=10)
        sock.close()
