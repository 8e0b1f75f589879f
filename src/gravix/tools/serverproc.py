"""One way to run ``gravix ingest-server`` in a subprocess, for the demo, the benchmarks
and the tests: a free loopback port, wait for ``/ready``, its log captured to a file, a
graceful stop (SIGTERM, the server drains and rotates) with a timeout, and a kill.

The API key reaches the server in its environment (``API_KEY``), not on its command
line, where ``ps`` would show it. The server runs in its own session, so a Ctrl-C meant
for the caller does not reach it before the caller stops it in order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from gravix.errors import GravixError

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port that was free a moment ago (another process may take it: a server
    that exits before it is ready is started again on a new one by :func:`running_server`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(env: Mapping[str, str] | None = None, api_key: str | None = None) -> dict[str, str]:
    """The inherited environment without Gravix settings, plus ``env`` and the key."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_") and k != "API_KEY"}
    base.update(env or {})
    if api_key is not None:
        base["API_KEY"] = api_key
    return base


@dataclass
class ServerProcess:
    """A started ``gravix ingest-server``; the caller stops or kills it."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    api_key: str | None
    log: IO[bytes]  # the server's stdout and stderr
    log_path: Path | None = None  # None: a temporary file, gone once stopped
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def client(self, **options: object) -> httpx.Client:
        """An httpx client with the base URL and the API key header set."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30.0, **options)  # type: ignore[arg-type]

    def log_text(self, limit: int | None = None) -> str:
        if self.log_path is not None:
            text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        elif self.log.closed:
            text = ""
        else:
            self.log.seek(0)
            text = self.log.read().decode(errors="replace")
        return text if limit is None else text[-limit:]

    def wait_ready(self, timeout: float = READY_TIMEOUT, path: str = "/ready") -> None:
        """Return once ``path`` answers 200; raise if the server exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise GravixError(
                    f"the ingest server exited with {code} before it was ready:\n"
                    f"{self.log_text(4000)}"
                )
            with suppress(httpx.TransportError):
                if httpx.get(f"{self.url}{path}", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise GravixError(
            f"the ingest server was not ready after {timeout:g}s:\n{self.log_text(4000)}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait for the graceful exit; returns the exit code. A server that
        ignores it is killed, and that is an error."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise GravixError(
                f"the ingest server ignored SIGTERM for {timeout:g}s",
                hint="`gravix recover` moves whatever it left in the buffer into raw",
            ) from None
        finally:
            self._close_log()

    def kill(self) -> int:
        """SIGKILL the server (its whole process group, workers included)."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self.log_path is None and self.proc.poll() is not None:
            self.log.close()


def start_server(
    data_dir: Path,
    *extra_args: str,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
    wait: bool = True,
    ready_timeout: float = READY_TIMEOUT,
) -> ServerProcess:
    """Start ``gravix ingest-server --data-dir DATA_DIR`` on ``port`` (a free one when
    None) with ``extra_args``; its output goes to ``log_path`` (a temporary file when
    None). With ``wait``, return once it is ready (killing it if it never is)."""
    port = port or free_port()
    args = [sys.executable, "-m", "gravix", "ingest-server", "--data-dir", str(data_dir)]
    args += ["--host", HOST, "--port", str(port), *extra_args]
    # Closed by stop() or kill(); it outlives this call because the server writes to it.
    log = log_path.open("w+b") if log_path is not None else tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=server_env(env, api_key),
        start_new_session=True,
    )
    if log_path is not None:
        log.close()  # the child holds its own descriptor; log_text() reads the path
    server = ServerProcess(proc, port, data_dir, api_key, log, log_path, args)
    if wait:
        try:
            server.wait_ready(ready_timeout)
        except BaseException:
            server.kill()
            raise
    return server


@contextmanager
def running_server(
    data_dir: Path, *extra_args: str, attempts: int = 3, **options: object
) -> Iterator[ServerProcess]:
    """A ready server for the ``with`` block, stopped gracefully afterwards (killed if it
    ignores SIGTERM). A server that exits before it is ready may have lost its free port
    to another process: it is started again on a new port, up to ``attempts`` times."""
    for attempt in range(attempts):
        try:
            server = start_server(data_dir, *extra_args, **options)  # type: ignore[arg-type]
            break
        except GravixError:
            if attempt == attempts - 1:
                raise
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()
        else:
            server.kill()  # already ended: reap it and close its log
