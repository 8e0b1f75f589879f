"""Ingestion throughput, measured against references in the same run.

(a) durably acknowledged events/s on ``/api/v1/facts/batch``: NDJSON batches of 1000
    from 8 keep-alive connections;
(b) single-event requests/s on ``/api/v1/facts`` from 32 connections;
(c) the same HTTP stack (``gravix.ingest.process.run_asgi``: uvicorn, uvloop, httptools, same
    worker count) answering a route that reads the body and does no work, 32 connections;
    (b) and (c) are measured in alternation, five times, and (b)/(c) is the median of
    the five ratios;
(d) one write + fdatasync per event on the same disk;
(b') as (b) with the data root on tmpfs, where fdatasync returns at once: what handling a
    request costs when nothing waits for the disk (skipped where /dev/shm is not tmpfs).

Beside each figure: the server's CPU time per event or request (steadier than throughput
when other work shares the machine), and for (b) the mean fdatasync latency and requests
per group commit seen by the server: with 32 closed-loop connections (b) can never exceed
32 / fsync latency, whatever the CPU cost.

The load generator is a separate process driving raw asyncio protocol connections with
pre-built requests, so it costs little CPU next to the server (both share the machine).

    python -m bench ingest
    python -m bench.bench_ingest loadgen --port 8090 --kind batch --conns 8 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
BATCH_SIZE = 1000
SERVICES = ("frontend", "checkout", "cart", "search", "auth", "payments")
PATHS = ("/", "/checkout", "/cart/{id}", "/search", "/login", "/api/v1/items/{id}")


# --- events -------------------------------------------------------------------------------------


def _uuid7(ms: int) -> str:
    raw = bytearray(ms.to_bytes(6, "big") + secrets.token_bytes(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _fact(i: int, now_ms: int) -> bytes:
    ms = now_ms - (i % 60_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
    doc = {
        "event_id": _uuid7(ms),
        "event_time": stamp,
        "service": SERVICES[i % len(SERVICES)],
        "method": "GET" if i % 4 else "POST",
        "path_template": PATHS[i % len(PATHS)],
        "status_code": 500 if i % 97 == 0 else 200,
        "latency_ms": round(1 + (i * 7919 % 3000) / 10, 1),
        "user_agent_family": "Chrome",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _request(path: str, body: bytes, ctype: str, port: int) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def build_requests(kind: str, port: int, count: int) -> list[bytes]:
    now_ms = int(time.time() * 1000)
    if kind == "batch":
        out = []
        for b in range(count):
            lines = [_fact(b * BATCH_SIZE + i, now_ms) for i in range(BATCH_SIZE)]
            out.append(
                _request(
                    "/api/v1/facts/batch", b"\n".join(lines) + b"\n", "application/x-ndjson", port
                )
            )
        return out
    return [
        _request("/api/v1/facts", _fact(i, now_ms), "application/json", port) for i in range(count)
    ]


# --- load generator (runs in its own process) -----------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive connection: send a request, parse the response, send the next."""

    def __init__(
        self,
        requests: list[bytes],
        offset: int,
        stats: dict[str, Any],
        deadline: float,
        done: asyncio.Future[None],
    ) -> None:
        self.requests = requests
        self.index = offset
        self.stats = stats
        self.deadline = deadline
        self.done = done
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.transport.write(self.requests[self.index % len(self.requests)])
        self.index += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            start = head.lower().find(b"content-length:")
            length = int(
                head[
                    start + 15 : head.find(b"\r\n", start)
                    if head.find(b"\r\n", start) > 0
                    else len(head)
                ]
            )
            if len(self.buf) < end + 4 + length:
                return
            status = int(head[9:12])
            self.buf = self.buf[end + 4 + length :]
            self.stats["responses"] += 1
            self.stats["status"][status] = self.stats["status"].get(status, 0) + 1
            if time.perf_counter() >= self.deadline:
                assert self.transport is not None
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(None)
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _drive(
    port: int, requests: list[bytes], conns: int, seconds: float, warmup: float, server_pid: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    warm: dict[str, Any] = {"responses": 0, "status": {}}
    done_w = [loop.create_future() for _ in range(conns)]
    end_w = time.perf_counter() + warmup
    for i in range(conns):
        await loop.create_connection(
            lambda i=i: _Client(requests, i * 7, warm, end_w, done_w[i]), "127.0.0.1", port
        )
    await asyncio.gather(*done_w)
    stats: dict[str, Any] = {"responses": 0, "status": {}}
    cpu = _tree_cpu_seconds(server_pid) if server_pid else 0.0
    futures = [loop.create_future() for _ in range(conns)]
    started = time.perf_counter()
    deadline = started + seconds
    for i in range(conns):
        await loop.create_connection(
            lambda i=i: _Client(requests, i * 13, stats, deadline, futures[i]), "127.0.0.1", port
        )
    await asyncio.gather(*futures)
    stats["seconds"] = time.perf_counter() - started
    if server_pid:
        stats["server_cpu_seconds"] = _tree_cpu_seconds(server_pid) - cpu
    return stats


def loadgen_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--kind", choices=["batch", "single"], required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--server-pid", type=int, default=0, help="measure this process tree's CPU")
    args = p.parse_args(argv)
    import uvloop

    requests = build_requests(args.kind, args.port, 40 if args.kind == "batch" else 4000)
    stats = uvloop.run(
        _drive(args.port, requests, args.conns, args.seconds, args.warmup, args.server_pid)
    )
    sys.stdout.write(json.dumps(stats) + "\n")
    return 0


# --- the no-work reference app --------------------------------------------------------------------


class NoWorkApp:
    """Reads the request body and answers 201 with a small JSON document: the cost of the
    HTTP stack alone."""

    exit_code = 0

    def __init__(self) -> None:
        self.request_exit = lambda: None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    await send({"type": message["type"] + ".complete"})
                    if message["type"] == "lifespan.shutdown":
                        return
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        body = b'{"accepted":1}'
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def noop_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    from gravix.ingest.logs import configure_logging
    from gravix.ingest.process import run_asgi

    configure_logging("text")
    return run_asgi(NoWorkApp, host="127.0.0.1", port=args.port, workers=args.workers)


# --- orchestration --------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(port: int, proc: subprocess.Popen[bytes], path: str = "/live") -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("server did not come up")


def _tree_peak_rss_mb(pid: int) -> float:
    import psutil

    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total / 2**20


def _tree_cpu_seconds(pid: int) -> float:
    import psutil

    total = 0.0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _loadgen(port: int, kind: str, conns: int, seconds: float, pid: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_ingest",
            "loadgen",
            "--port",
            str(port),
            "--kind",
            kind,
            "--conns",
            str(conns),
            "--seconds",
            str(seconds),
            "--server-pid",
            str(pid),
        ],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _commit_stats(port: int) -> dict[str, float]:
    """Mean fdatasync latency and requests per group commit, from one worker's /metrics."""
    import httpx

    totals: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        for name in ("gravix_fsync_seconds_sum", "gravix_fsync_seconds_count",
                     "gravix_group_commit_requests_sum"):  # fmt: skip
            if line.startswith(name + "{"):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    count = totals.get("gravix_fsync_seconds_count", 0.0) or 1.0
    return {
        "mean_fsync_ms": totals.get("gravix_fsync_seconds_sum", 0.0) / count * 1000,
        "mean_requests_per_commit": totals.get("gravix_group_commit_requests_sum", 0.0) / count,
    }


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def measure_server(
    data_dir: Path, workers: int, kind: str, conns: int, seconds: float
) -> tuple[dict[str, Any], float]:
    from gravix.tools.serverproc import free_port, start_server

    port = free_port()
    log = data_dir.parent / f"server-{port}.log"
    server = start_server(
        data_dir, "--workers", str(workers), api_key=API_KEY, port=port, log_path=log
    )
    try:
        stats = _loadgen(port, kind, conns, seconds, server.proc.pid)
        stats.update(_commit_stats(port))
        rss = _tree_peak_rss_mb(server.proc.pid)
    finally:
        code = server.stop(timeout=120)
    if code != 0:
        raise RuntimeError(f"ingest-server exited with {code}; see {log}")
    return stats, rss


def measure_noop(workers: int, conns: int, seconds: float) -> tuple[dict[str, Any], float]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_ingest",
            "noop-server",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        _wait_up(port, proc)
        stats = _loadgen(port, "single", conns, seconds, proc.pid)
        rss = _tree_peak_rss_mb(proc.pid)
    finally:
        _stop(proc)
    return stats, rss


def measure_fsync_per_event(directory: Path, seconds: float) -> float:
    """Events/s when every event is its own write + fdatasync (no group commit)."""
    line = _fact(1, int(time.time() * 1000)) + b"\n"
    path = directory / "fsync-per-event.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    count = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            os.write(fd, line)
            os.fdatasync(fd)
            count += 1
    finally:
        os.close(fd)
        path.unlink()
    return count / (time.perf_counter() - started)


TMPFS = Path("/dev/shm")
ROUNDS = 5  # alternating (b) and (c) measurements
ROUND_SECONDS = 5.0  # each; shorter, more rounds track the machine's swings better


def _is_tmpfs(path: Path) -> bool:
    """True if ``path`` is a mounted tmpfs (per /proc/mounts)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(m.split()[1:3] == [str(path), "tmpfs"] for m in mounts if len(m.split()) > 2)


def _ok_rate(stats: dict[str, Any], ok_status: int) -> tuple[float, int]:
    ok = int(stats["status"].get(str(ok_status), 0))
    bad = int(stats["responses"]) - ok
    return ok / float(stats["seconds"]), bad


def _cpu_us(stats: dict[str, Any], units: float) -> float:
    """Server CPU time per unit (request or event), microseconds: steadier than throughput
    on a shared machine, where other processes take CPU from both server and load."""
    return float(stats["server_cpu_seconds"]) / max(units, 1.0) * 1e6


def run(quick: bool) -> list[dict[str, Any]]:
    seconds = 3.0 if quick else 8.0
    workers = 2
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gravix-bench-") as tmp:
        base = Path(tmp)
        fsync_rate = measure_fsync_per_event(base, 2.0 if quick else 4.0)
        batch_stats, batch_rss = measure_server(base / "a", workers, "batch", 8, seconds)
        wide_stats, _ = measure_server(base / "a4", 4, "batch", 8, seconds)
        wide_rate = _ok_rate(wide_stats, 200)[0] * BATCH_SIZE
        batch_rate, batch_bad = _ok_rate(batch_stats, 200)
        events_rate = batch_rate * BATCH_SIZE
        # (b) and (c) alternate, ROUNDS times: other work on a shared machine comes and goes
        # within seconds, so each (b) is compared with the (c) measured right after it, and
        # the median of those ratios is reported (beside the median rates).
        rounds = []
        round_seconds = 3.0 if quick else ROUND_SECONDS
        for index in range(ROUNDS):
            b_stats, b_rss = measure_server(
                base / f"b{index}", workers, "single", 32, round_seconds
            )
            c_stats, c_rss = measure_noop(workers, 32, round_seconds)
            rounds.append((b_stats, b_rss, c_stats, c_rss))
        ratios = [_ok_rate(b, 201)[0] / _ok_rate(c, 201)[0] for b, _, c, _ in rounds]
        middle = sorted(range(ROUNDS), key=lambda i: ratios[i])[ROUNDS // 2]
        single_stats, single_rss, noop_stats, noop_rss = rounds[middle]
        single_ratio = ratios[middle]
        single_rate = statistics.median(_ok_rate(b, 201)[0] for b, _, _, _ in rounds)
        noop_rate = statistics.median(_ok_rate(c, 201)[0] for _, _, c, _ in rounds)
        single_bad = sum(_ok_rate(b, 201)[1] for b, _, _, _ in rounds)
        memory_rate = memory_cpu = None
        if _is_tmpfs(TMPFS):
            with tempfile.TemporaryDirectory(prefix="gravix-bench-", dir=TMPFS) as shm:
                memory_stats, _ = measure_server(Path(shm) / "b", workers, "single", 32, seconds)
            memory_rate = _ok_rate(memory_stats, 201)[0]
            memory_cpu = _cpu_us(memory_stats, memory_stats["responses"])
    rows.append(
        {
            "name": f"(a) batch route, NDJSON x{BATCH_SIZE}, 8 conns, {workers} workers",
            "value": events_rate,
            "unit": "events/s",
            "reference": fsync_rate,
            "ratio": events_rate / fsync_rate,
            "target": "≥ 300,000 events/s",
            "ok": events_rate >= 300_000 and batch_bad == 0,
            "peak_rss_mb": round(batch_rss, 1),
            "non_2xx": batch_bad,
            "server_cpu_us_per_event": _cpu_us(batch_stats, batch_stats["responses"] * BATCH_SIZE),
        }
    )
    rows.append(
        {
            "name": "(a') batch route as (a), 4 workers (fsync waits overlap CPU work)",
            "value": wide_rate,
            "unit": "events/s",
            "reference": fsync_rate,
            "ratio": wide_rate / fsync_rate,
            "server_cpu_us_per_event": _cpu_us(wide_stats, wide_stats["responses"] * BATCH_SIZE),
        }
    )
    rows.append(
        {
            "name": f"(b) single-event route, 32 conns, {workers} workers (median of {ROUNDS})",
            "value": single_rate,
            "unit": "requests/s",
            "reference": noop_rate,
            "ratio": single_ratio,
            "ratios_by_round": [round(r, 3) for r in ratios],
            "target": "≥ 0.70 × (c)",
            "ok": single_ratio >= 0.7 and single_bad == 0,
            "peak_rss_mb": round(single_rss, 1),
            "non_2xx": single_bad,
            "server_cpu_us_per_request": _cpu_us(single_stats, single_stats["responses"]),
            "mean_fsync_ms": round(single_stats["mean_fsync_ms"], 2),
            "mean_requests_per_commit": round(single_stats["mean_requests_per_commit"], 1),
            # Each request waits for at least one fdatasync: 32 closed-loop connections can
            # never exceed 32 / fsync latency, however cheap the request is.
            "fsync_latency_ceiling": 32 / max(single_stats["mean_fsync_ms"], 1e-3) * 1000,
        }
    )
    if memory_rate is not None:
        rows.append(
            {
                "name": "(b') as (b), data root in memory (tmpfs: fdatasync returns at once)",
                "value": memory_rate,
                "unit": "requests/s",
                "reference": noop_rate,
                "ratio": memory_rate / noop_rate,
                "server_cpu_us_per_request": memory_cpu,
            }
        )
    rows.append(
        {
            "name": f"(c) same HTTP stack, no-work route, 32 conns, {workers} workers (median)",
            "value": noop_rate,
            "unit": "requests/s",
            "peak_rss_mb": round(noop_rss, 1),
            "server_cpu_us_per_request": _cpu_us(noop_stats, noop_stats["responses"]),
        }
    )
    rows.append(
        {
            "name": "(d) one write + fdatasync per event, same disk",
            "value": fsync_rate,
            "unit": "events/s",
        }
    )
    rows.append(
        {
            "name": "(b) vs (d): group commit over fsync per event",
            "value": single_rate / fsync_rate,
            "unit": "x",
        }
    )
    rows.append(
        {
            "name": "machine load average (1 min) at the end",
            "value": os.getloadavg()[0],
            "unit": "runnable",
        }
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "loadgen":
        sys.exit(loadgen_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "noop-server":
        sys.exit(noop_main(sys.argv[2:]))
    for row in run(quick="--quick" in sys.argv):
        print(row)
