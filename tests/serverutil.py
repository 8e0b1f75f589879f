"""A real `gravix ingest-server` in a subprocess on a free loopback port, for any test.

    with running_server(data_root) as server:
        httpx.post(f"{server.url}/api/v1/facts", json=fact, headers=server.headers)

The server's stderr (access and error logs) goes to a file beside the data root, readable
with ``server.log_text()``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gravix.ingest.buffer import BufferObserver, CommitStats, TopicBuffer

READY_TIMEOUT = 30.0


def uuid7(ms: int | None = None) -> str:
    """A random UUID version 7 (lower-case) for a given Unix time in milliseconds."""
    ms = int(time.time() * 1000) if ms is None else ms
    raw = bytearray(ms.to_bytes(6, "big") + secrets.token_bytes(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stamp(seconds_ago: float = 0.0) -> str:
    """An event time ``seconds_ago`` before now, in the stored form (UTC, ms, Z)."""
    t = time.time() - seconds_ago
    ms = int(t * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def fact(**overrides: object) -> dict[str, object]:
    """A valid RequestFact (snake_case), with fields replaced by ``overrides``."""
    doc: dict[str, object] = {
        "event_id": uuid7(),
        "event_time": stamp(),
        "service": "frontend",
        "method": "GET",
        "path_template": "/checkout",
        "status_code": 200,
        "latency_ms": 12.5,
    }
    doc.update(overrides)
    return doc


def service_event(**overrides: object) -> dict[str, object]:
    """A valid ServiceEvent (snake_case), with fields replaced by ``overrides``."""
    doc: dict[str, object] = {
        "event_id": uuid7(),
        "event_time": stamp(),
        "service": "frontend",
        "event_type": "deploy_started",
    }
    doc.update(overrides)
    return doc


def ndjson(docs: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in docs)


async def _keep_alive_client(port: int, requests: list[bytes], statuses: list[int]) -> None:
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            statuses.append(int(head[9:12]))
    finally:
        writer.close()


def hammer(
    port: int, path: str, bodies: list[list[bytes]], api_key: str | None = "test-key"
) -> list[int]:
    """Send ``bodies[i]`` (JSON documents) one after another over keep-alive connection i,
    all connections at once, with a light raw-socket client; returns every status."""
    import asyncio

    def request(body: bytes) -> bytes:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        if api_key:
            head += f"X-API-Key: {api_key}\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    statuses: list[int] = []

    async def main() -> None:
        await asyncio.gather(
            *(_keep_alive_client(port, [request(b) for b in conn], statuses) for conn in bodies)
        )

    asyncio.run(main())
    return statuses


async def open_buffer(
    root: Path,
    *,
    commits: list[CommitStats] | None = None,
    fatal: list[BaseException] | None = None,
    rotate_seconds: float = 3600,
    rotate_bytes: int = 2**30,
) -> TopicBuffer:
    """A started request-facts buffer whose commits and fatal errors land in the lists."""
    observer = BufferObserver(
        on_commit=None if commits is None else lambda _t, stats: commits.append(stats),
        on_fatal=None if fatal is None else lambda _t, error: fatal.append(error),
    )
    buf = TopicBuffer(
        root,
        "request_facts",
        rotate_seconds=rotate_seconds,
        rotate_bytes=rotate_bytes,
        observer=observer,
    )
    await buf.start()
    return buf


def raw_lines(data_dir: Path, topic: str) -> list[dict[str, object]]:
    """Every line of every raw file of a topic, parsed (independently of gravix code)."""
    out: list[dict[str, object]] = []
    for path in sorted((data_dir / "raw" / topic).glob("event_day=*/hour=*/*.jsonl")):
        out.extend(json.loads(line) for line in path.read_bytes().splitlines() if line)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inherited environment without Gravix settings, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_") and k != "API_KEY"}
    base.update(env or {})
    return base


@dataclass
class RunningServer:
    url: str
    api_key: str | None
    proc: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client with the base URL and the API key header set."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"ingest-server exited with {code} before it was ready:\n{self.log_text()}"
                )
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"ingest-server not ready after {timeout}s:\n{self.log_text()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the graceful exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"ingest-server ignored SIGTERM for {timeout}s") from None

    def kill(self) -> int:
        """SIGKILL the server (the whole process group, workers included)."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()


def start_server(
    data_dir: Path,
    *extra_args: str,
    api_key: str | None = "test-key",
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    wait: bool = True,
) -> RunningServer:
    """Start a server (not a context manager: the caller stops or kills it)."""
    port = port or free_port()
    args = [
        sys.executable,
        "-m",
        "gravix",
        "ingest-server",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if api_key is not None:
        args += ["--api-key", api_key]
    args += list(extra_args)
    log_path = data_dir.parent / f"ingest-server-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=server_env(env),
            start_new_session=True,
        )
    server = RunningServer(
        url=f"http://127.0.0.1:{port}",
        api_key=api_key,
        proc=proc,
        data_dir=data_dir,
        port=port,
        log_path=log_path,
        args=args,
    )
    if wait:
        try:
            server.wait_ready()
        except BaseException:
            server.kill()
            raise
    return server


@contextmanager
def running_server(
    data_dir: Path,
    *extra_args: str,
    api_key: str | None = "test-key",
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Start `gravix ingest-server` on a free loopback port and wait for /ready; on exit
    stop it with SIGTERM (graceful: drain, fsync, rotate) unless it already ended."""
    server = start_server(data_dir, *extra_args, api_key=api_key, env=env)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            try:
                server.stop()
            except RuntimeError:
                server.kill()
