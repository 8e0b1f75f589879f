"""Running the server: the listening socket (bound before anything touches the data root),
recovery at start, one uvicorn per worker process with a supervisor that forwards signals
and shares the rate limiter's buckets, and the two uvicorn internals Gravix extends (the
httptools protocol, with a header timeout and a limit on the size of request headers, and
signal handling that drains cleanly); the uvicorn pin in pyproject.toml and
tests/ingest/test_uvicorn_contract.py guard those."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn, Protocol

from gravix.errors import ConfigError, StorageError
from gravix.ingest.app import IngestApp
from gravix.ingest.guard import RateLimiter
from gravix.ingest.logs import configure_logging
from gravix.ingest.protocol import HEADER_TIMEOUT_SECONDS
from gravix.ingest.routes import MAX_HEADER_BYTES, Receive, Scope, Send
from gravix.settings import Settings
from gravix.storage import durable, layout, links
from gravix.storage.guard import check_root, permission_error
from gravix.storage.orphans import recover_buffers

log = logging.getLogger(__name__)

__all__ = ["HEADER_TIMEOUT_SECONDS", "MAX_HEADER_BYTES", "run_asgi", "serve"]
GRACEFUL_TIMEOUT_SECONDS = 30


def _bind(host: str, port: int, *, reuse_port: bool, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another --port or stop the process using it",
        ) from None
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class ServedApp(Protocol):
    """What the process runner needs from an ASGI app besides being callable."""

    exit_code: int
    request_exit: Callable[[], None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


def _header_timeout_protocol() -> type[Any]:
    """The httptools protocol of every connection (see :mod:`gravix.ingest.protocol`)."""
    from gravix.ingest.protocol import GuardedProtocol

    return GuardedProtocol


def _graceful_server_type() -> type[Any]:
    """uvicorn's Server with its own signal handlers: uvicorn's re-raise the signal
    afterwards, which would turn a clean drain into death by SIGTERM instead of exit
    status 0. A second SIGINT forces the exit, as uvicorn's does."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            def handle(sig: int, _frame: object) -> None:
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True

            previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                yield
            finally:
                for s, h in previous.items():
                    signal.signal(s, h)

    return _Server


def _run_worker(app_factory: Callable[[], ServedApp], sock: socket.socket) -> int:
    """One server process: uvicorn (uvloop + httptools) on ``sock`` until told to stop."""
    import uvicorn

    app = app_factory()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=_header_timeout_protocol(),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_SECONDS,
        timeout_keep_alive=30,
        backlog=2048,
    )

    server = _graceful_server_type()(config)

    def request_exit() -> None:
        server.should_exit = True

    app.request_exit = request_exit
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:
        log.error("server process stopped during start-up")
        return exc.code if isinstance(exc.code, int) and exc.code else 1
    if not server.started:
        return 1
    return app.exit_code


def _recover_at_start(root: Path, *, store_url: str | None) -> None:
    report = recover_buffers(root, store_url=store_url)
    if store_url is not None:
        if report.activated:
            log.info(
                "start-up recovery: %d orphaned active buffer file(s) sealed for upload",
                len(report.activated),
            )
        return
    if report.published or report.activated:
        log.info(
            "start-up recovery: %d orphaned buffer file(s), %d line(s) moved into raw, "
            "%d torn tail line(s) dropped, %d damaged line(s) quarantined",
            len(report.published),
            report.lines,
            report.torn_tail_lines,
            report.damaged_lines,
        )


def serve(
    *,
    settings: Settings,
    workers: int = 1,
    log_format: str = "text",
    insecure_no_auth: bool = False,
) -> int:
    """Run the ingest server until SIGTERM/SIGINT; returns the process exit status
    (0 after a clean drain, 1 after a storage failure or a dead worker)."""
    configure_logging(log_format)
    if workers < 1:
        raise ConfigError(f"--workers must be ≥ 1, got {workers}")
    if not settings.api_keys and not insecure_no_auth:
        raise ConfigError(
            "no API key configured; refusing to accept unauthenticated writes",
            hint="pass --api-key-file PATH, set API_KEY or GRAVIX_API_KEYS, "
            "or --insecure-no-auth for a local experiment",
        )
    if insecure_no_auth and not settings.api_keys:
        log.warning(
            "--insecure-no-auth: anyone who can reach %s:%d can write events",
            settings.host,
            settings.port,
        )
    durable.install_fault_plan(settings.fault_plan)
    # The port first: a port in use fails before anything under the data root is made.
    sock = _listener(settings.host, settings.port, workers)
    try:
        # With a store, orphaned files are only sealed here: each worker's uploader takes
        # them to the store in the background, so an unreachable store never stops a start.
        _prepare_root(settings.data_dir, None if settings.store is None else settings.store_url)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        log.info(
            "listening on http://%s:%d (%d worker%s, data in %s, raw to %s as node %s)",
            host,
            sock.getsockname()[1],
            workers,
            "" if workers == 1 else "s",
            settings.data_dir,
            settings.store_url,
            settings.node_id,
        )
        # Made before the workers are forked, so that they share its buckets: the limit is
        # per key for the server, whatever the number of workers.
        limiter = (
            RateLimiter(settings.rate_limit, keys=len(settings.api_keys))
            if settings.rate_limit > 0
            else None
        )

        def factory() -> ServedApp:
            return IngestApp(
                settings, insecure_no_auth=insecure_no_auth, log_format=log_format, limiter=limiter
            )

        return _serve_on(factory, sock, workers)
    finally:
        sock.close()


def _prepare_root(root: Path, store_url: str | None) -> None:
    check_root(root, create=True)
    try:
        durable.makedirs(root)
        links.ensure_inside(root, layout.buffer_root(root))
        _recover_at_start(root, store_url=store_url)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise permission_error(root, exc.filename or root) from exc
        raise StorageError(
            f"cannot prepare the data directory {root}: {exc.strerror}",
            hint="check permissions and free space",
            errno=exc.errno,
        ) from exc


def run_asgi(app_factory: Callable[[], ServedApp], *, host: str, port: int, workers: int) -> int:
    """Serve the app made by ``app_factory`` with the server's HTTP stack (uvicorn, uvloop,
    httptools) in ``workers`` processes; returns the exit status. Benchmarks use it to run
    a reference app on exactly the same stack."""
    sock = _listener(host, port, workers)
    try:
        return _serve_on(app_factory, sock, workers)
    finally:
        sock.close()


def _listener(host: str, port: int, workers: int) -> socket.socket:
    """The bound socket: listening for one worker; for several, a holder of the port whose
    workers each bind their own SO_REUSEPORT listener to it."""
    if workers == 1:
        return _bind(host, port, reuse_port=False, listen=True)
    # SO_REUSEPORT would let the holder share a port that another server of this user
    # listens on with it (another Gravix with --workers): a plain bind first says whether
    # the port is free.
    probe = _bind(host, port, reuse_port=False, listen=False)
    port = probe.getsockname()[1]
    probe.close()
    return _bind(host, port, reuse_port=True, listen=False)


def _serve_on(app_factory: Callable[[], ServedApp], sock: socket.socket, workers: int) -> int:
    if workers == 1:
        return _run_worker(app_factory, sock)
    return _supervise(app_factory, sock, workers)


def _worker_child(
    app_factory: Callable[[], ServedApp], holder: socket.socket, index: int
) -> NoReturn:
    """The forked worker: default signal handlers until uvicorn sets its own, its own
    listener, and ``os._exit`` so it never returns into the supervisor's code."""
    code = 1
    try:
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        host, port = holder.getsockname()[:2]
        holder.close()
        sock = _bind(host, port, reuse_port=True, listen=True)
        code = _run_worker(app_factory, sock)
    except BaseException:
        log.exception("worker %d failed", index)
    finally:
        logging.shutdown()
        os._exit(code)


def _supervise(app_factory: Callable[[], ServedApp], holder: socket.socket, workers: int) -> int:
    """Fork ``workers`` processes, each with its own SO_REUSEPORT listener on the port that
    ``holder`` holds (and so its own active files); forward SIGTERM/SIGINT; if one dies,
    stop the others and fail."""
    children: dict[int, int] = {}
    stopping = False

    def stop_all(sig: int = signal.SIGTERM) -> None:
        for pid in children:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)

    def on_signal(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        stop_all()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for index in range(workers):
            pid = os.fork()
            if pid == 0:
                _worker_child(app_factory, holder, index)
            children[pid] = index
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = children.pop(pid)
            code = os.waitstatus_to_exitcode(wait_status)
            # A worker stopped by the forwarded signal before its own handlers were in
            # place had acknowledged nothing; that is a clean stop too.
            if code != 0 and not (stopping and code == -signal.SIGTERM):
                status = 1
            if not stopping:
                log.error(
                    "worker %d (pid %d) ended with status %d; stopping the others "
                    "(the next start recovers its buffer files)",
                    index,
                    pid,
                    code,
                )
                stopping = True
                status = 1
                stop_all()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return status
