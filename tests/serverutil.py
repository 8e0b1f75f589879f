"""A real `gravix ingest-server` in a subprocess on a free loopback port, for any test.

    with running_server(data_root) as server:
        httpx.post(f"{server.url}/api/v1/facts", json=fact, headers=server.headers)

The server's stderr (access and error logs) goes to a file beside the data root, readable
with ``server.log_text()``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from gravix.errors import GravixError
from gravix.ingest.buffer import BufferObserver, CommitStats, TopicBuffer
from gravix.tools import serverproc
from gravix.tools.serverproc import ServerProcess as RunningServer
from gravix.tools.serverproc import free_port


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


def server_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inherited environment without Gravix settings, plus ``env``."""
    return serverproc.server_env(env)


def start_server(
    data_dir: Path,
    *extra_args: str,
    api_key: str | None = "test-key",
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    wait: bool = True,
) -> RunningServer:
    """Start a server (not a context manager: the caller stops or kills it). The key goes
    on the command line, as an operator passes it, with its log beside the data root."""
    port = port or free_port()
    args = ["--api-key", api_key] if api_key is not None else []
    server = serverproc.start_server(
        data_dir,
        *args,
        *extra_args,
        env=env,
        port=port,
        log_path=data_dir.parent / f"ingest-server-{port}-{time.monotonic_ns()}.log",
        wait=wait,
    )
    server.api_key = api_key
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
            except GravixError:
                server.kill()
