"""An ingest node with its raw going to an S3 store (DESIGN §11), measured against the same
node keeping raw on its own disk, in the same run.

(a) durably acknowledged events/s on the batch route (NDJSON x1000, 8 connections, one
    worker) with ``--store s3://…`` on moto's S3 server (loopback), rotation every 2 s so
    that uploads run during the measurement; reference: the same load on the same server
    without a store (sealed files renamed into the local raw/). Measured in alternation,
    ROUNDS times; the ratio is the median of the per-round ratios.
(b) events/s per core: the server's own CPU time per event (moto's is not counted), with
    upload on; the figure that sizes a deployment, steadier than throughput on a shared
    machine.
(c) upload latency: upload and confirmation (read back, checksum) of one sealed file, mean
    and the histogram's p95 bucket, from the node's /metrics; and the bytes and objects
    that one node writes per hour at the measured rate and the default rotation (60 s).

moto is a Python server on the same two cores: an S3 endpoint elsewhere costs the node
nothing of its CPU, so (a) is a floor; (b) is what the node itself spends.

    python -m bench store
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_ingest import API_KEY, BATCH_SIZE, _loadgen, _ok_rate, _tree_cpu_seconds

ROUNDS = 3
ROTATE_SECONDS = 2.0
DEFAULT_ROTATE_SECONDS = 60.0
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_REGION": "us-east-1",
}


def _moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1.0)
            return proc
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto did not start") from None
            time.sleep(0.1)


def _metrics(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        m = re.match(r"^(gravix_[a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if m:
            name = m.group(1) + (m.group(2) or "")
            out[name] = out.get(name, 0.0) + float(m.group(3))
    return out


def _p95_bucket(metrics: dict[str, float]) -> float | None:
    """The upper bound of the histogram bucket that holds the 95th percentile."""
    count = metrics.get("gravix_upload_seconds_count", 0.0)
    buckets = sorted(
        (float(m.group(1)), value)
        for name, value in metrics.items()
        if (m := re.match(r'gravix_upload_seconds_bucket\{le="([0-9.e+-]+)"\}', name))
    )
    for bound, cumulative in buckets:
        if count and cumulative >= 0.95 * count:
            return bound
    return None


def _measure(
    root: Path, store_args: list[str], env: dict[str, str], seconds: float
) -> dict[str, Any]:
    from gravix.tools.serverproc import free_port, start_server

    port = free_port()
    server = start_server(
        root,
        "--rotate-seconds", str(ROTATE_SECONDS), *store_args,
        api_key=API_KEY, port=port, env=env, log_path=root.parent / f"server-{port}.log",
    )  # fmt: skip
    try:
        stats = _loadgen(port, "batch", 8, seconds, server.proc.pid)
        drain_started = time.perf_counter()
        cpu = _tree_cpu_seconds(server.proc.pid)
        while store_args and _metrics(port)["gravix_upload_backlog_files"] > 0:
            if time.perf_counter() - drain_started > 120:
                raise RuntimeError("the upload backlog did not drain in 120 s")
            time.sleep(0.2)
        stats["drain_seconds"] = time.perf_counter() - drain_started
        stats["drain_cpu_seconds"] = _tree_cpu_seconds(server.proc.pid) - cpu
        stats["metrics"] = _metrics(port)
    finally:
        code = server.stop(timeout=120)
    if code != 0:
        raise RuntimeError(f"ingest-server exited with {code}")
    return stats


def run(quick: bool) -> list[dict[str, Any]]:
    seconds = 3.0 if quick else 8.0
    rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="gravix-bench-store-") as tmp:
        base = Path(tmp)
        from gravix.tools.serverproc import free_port

        port = free_port()
        moto = _moto(port, base / "moto.log")
        env = {**ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        try:
            import boto3

            boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                         aws_access_key_id="bench", aws_secret_access_key="bench",
                         ).create_bucket(Bucket="bench")  # fmt: skip
            for index in range(1 if quick else ROUNDS):
                store_args = ["--store", f"s3://bench/r{index}", "--node-id", "bench-1"]
                upload = _measure(base / f"s3-{index}", store_args, env, seconds)
                local = _measure(base / f"local-{index}", [], env, seconds)
                rounds.append((upload, local))
        finally:
            os.kill(moto.pid, signal.SIGTERM)
            moto.wait(30)
    return _rows(rounds)


def _rows(rounds: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    rates = [
        (_ok_rate(u, 200)[0] * BATCH_SIZE, _ok_rate(lo, 200)[0] * BATCH_SIZE) for u, lo in rounds
    ]
    ratios = [u / lo for u, lo in rates]
    middle = sorted(range(len(rounds)), key=lambda i: ratios[i])[len(rounds) // 2]
    upload = rounds[middle][0]
    bad = sum(_ok_rate(u, 200)[1] for u, _ in rounds)
    cpu_us = [
        u["server_cpu_seconds"] / max(u["responses"] * BATCH_SIZE, 1) * 1e6 for u, _ in rounds
    ]
    local_cpu_us = [
        lo["server_cpu_seconds"] / max(lo["responses"] * BATCH_SIZE, 1) * 1e6 for _, lo in rounds
    ]
    m = upload["metrics"]
    events_per_s = statistics.median(u for u, _ in rates)
    bytes_per_event = m['gravix_stored_bytes_total{topic="request_facts"}'] / max(
        m['gravix_events_accepted_total{topic="request_facts"}'], 1
    )
    mean_upload = m["gravix_upload_seconds_sum"] / max(m["gravix_upload_seconds_count"], 1)
    mib_per_file = (
        m["gravix_uploaded_bytes_total"] / max(m["gravix_uploaded_files_total"], 1) / 2**20
    )
    return [
        {
            "name": "(a) batch route with upload to S3 (moto), 1 worker, rotation 2 s",
            "value": events_per_s,
            "unit": "events/s",
            "reference": statistics.median(lo for _, lo in rates),
            "ratio": ratios[middle],
            "ratios_by_round": [round(r, 3) for r in ratios],
            "non_2xx": bad,
            "ok": bad == 0,
        },
        {
            "name": "(b) events/s per core of the node, upload on (server CPU only)",
            "value": 1e6 / statistics.median(cpu_us),
            "unit": "events/s/core",
            "reference": 1e6 / statistics.median(local_cpu_us),
            "ratio": statistics.median(local_cpu_us) / statistics.median(cpu_us),
            "server_cpu_us_per_event": round(statistics.median(cpu_us), 3),
            "local_cpu_us_per_event": round(statistics.median(local_cpu_us), 3),
        },
        {
            "name": f"(c) upload + confirm of one sealed file (mean; {mib_per_file:.1f} MiB each)",
            "value": mean_upload,
            "unit": "s",
            "p95_bucket_s": _p95_bucket(m),
            "files": m["gravix_uploaded_files_total"],
            "objects": m["gravix_uploaded_objects_total"],
            "failures": m["gravix_upload_failures_total"],
            "drain_after_load_s": round(upload["drain_seconds"], 2),
            "mib_per_s_uploaded": round(mib_per_file / max(mean_upload, 1e-9), 1),
        },
        {
            "name": "(c') per node per hour at rate (a), rotation 60 s (1 object per rotation "
            "and event hour; 64 MiB rotation cuts files first above that size)",
            "value": events_per_s * bytes_per_event * 3600 / 2**30,
            "unit": "GiB/hour",
            "bytes_per_event": round(bytes_per_event, 1),
            "objects_per_hour": 3600
            / DEFAULT_ROTATE_SECONDS
            * max(1.0, events_per_s * bytes_per_event * DEFAULT_ROTATE_SECONDS / 2**26),
        },
    ]
