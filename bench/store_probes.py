"""Three measurements behind SCALING.md that are counts, not speeds (so not in ``make bench``):

requests   the S3 requests of one confirmed object (write, then read back) by object size,
           from the request log of moto's server;
killed     what a process killed in the middle of writing a 64 MiB object leaves in the
           bucket, and what the rewrite of the same object leaves;
warehouse  ``request_metrics_minute`` bytes per row against events per row: one hour of
           synthetic facts (the rollup benchmark's model) rolled up by ``gravix rollup``.

    python -m bench.store_probes requests killed warehouse
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from bench.bench_rollup import STATUSES, _uuid7
from bench.bench_store import ENV, _moto

BUCKET = "probe"
MIB = 2**20
# One request of moto's log (the method may be wrapped in colour codes).
REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) /probe/p/raw/t/object-([0-9.]+)\.jsonl\??(\S*)')
WRITE = textwrap.dedent("""
    import os, sys
    from gravix.settings import load_settings
    from gravix.storage.store import open_store, write_confirmed
    settings = load_settings(store="s3://probe/p", data_dir=sys.argv[1])
    write_confirmed(open_store(settings), sys.argv[2], os.urandom(int(float(sys.argv[3]) * 2**20)))
""")


def _store(base: Path) -> tuple[subprocess.Popen[bytes], dict[str, str], Any]:
    import boto3

    from gravix.tools.serverproc import free_port

    port = free_port()
    moto = _moto(port, base / "moto.log")
    env = {**os.environ, **ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    client = boto3.client(
        "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    return moto, env, client


def _write(env: dict[str, str], base: Path, key: str, mib: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITE, str(base / "data"), key, str(mib)], env=env
    )


def requests(base: Path) -> None:
    moto, env, _client = _store(base)
    try:
        for mib in (0.01, 1, 8, 30, 42, 64):
            assert _write(env, base, f"raw/t/object-{mib}.jsonl", mib).wait() == 0
    finally:
        os.kill(moto.pid, signal.SIGTERM)
        moto.wait(30)
    kinds: dict[str, Counter[str]] = {}
    for line in (base / "moto.log").read_text().splitlines():
        m = re.search(
            r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) /probe/p/raw/t/object-([0-9.]+)\.jsonl\??(\S*)', line
        )
        if m:
            method, query = m.group(1), m.group(3)
            kind = "create" if query == "uploads" else "part" if "partNumber" in query else None
            kind = kind or ("complete" if "uploadId" in query else method)
            kinds.setdefault(m.group(2), Counter())[kind] += 1
    for mib, counted in kinds.items():
        print(f"{mib} MiB: {dict(counted)}, {sum(counted.values())} requests")


def _parts(client: Any, upload: dict[str, str]) -> list[dict[str, Any]]:
    found = client.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    return list(found.get("Parts", []))


def killed(base: Path) -> None:
    moto, env, c = _store(base)
    key = "raw/t/killed.jsonl"
    try:
        child = _write(env, base, key, 64)
        uploads: list[dict[str, str]] = []
        while not uploads:
            uploads = c.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
            time.sleep(0.05)
        up = uploads[0]
        while not _parts(c, up):
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        time.sleep(2)  # parts already sent finish arriving at the store
        for when in ("after the kill", "after the rewrite"):
            ups = c.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
            parts = [p["Size"] for u in ups for p in _parts(c, u)]
            objects = c.list_objects_v2(Bucket=BUCKET).get("KeyCount")
            print(f"{when}: {len(ups)} incomplete multipart upload(s) holding {len(parts)} "
                  f"part(s), {sum(parts) / MIB:.0f} MiB; {objects} object(s)")  # fmt: skip
            if when == "after the kill":
                assert _write(env, base, key, 64).wait() == 0
    finally:
        os.kill(moto.pid, signal.SIGTERM)
        moto.wait(30)


def _hour(root: Path, series: int, per_row: int) -> int:
    """One hour: ``series`` (service, path) pairs x 60 minutes x ``per_row`` facts."""
    rng = random.Random(series * 7 + per_row)
    base_ms = int(datetime(2026, 2, 16, 10, tzinfo=UTC).timestamp() * 1000)
    hour_dir = root / "raw/request_facts/event_day=2026-02-16/hour=10"
    hour_dir.mkdir(parents=True)
    lines = []
    for minute in range(60):
        for s in range(series):
            for _ in range(per_row):
                ms = base_ms + minute * 60_000 + rng.randrange(60_000)
                stamp = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
                lines.append(
                    f'{{"event_id":"{_uuid7(rng, ms)}","event_time":"{stamp}{ms % 1000:03d}Z",'
                    f'"service":"svc-{s % 12:02d}","method":"GET","path_template":"/r{s // 12}",'
                    f'"status_code":{rng.choice(STATUSES)},'
                    f'"latency_ms":{round(rng.lognormvariate(3.0, 1.1), 3)!r}}}'
                )
    (hour_dir / "00000000000000000001-1-aaaaaaaa.jsonl").write_text("\n".join(lines) + "\n")
    return len(lines)


def warehouse(base: Path) -> None:
    for series, per_row in ((240, 10), (240, 100), (24, 1000), (6, 5000)):
        root = base / f"s{series}-e{per_row}"
        facts = _hour(root, series, per_row)
        rollup = [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(root), "--json"]
        subprocess.run(rollup, check=True, capture_output=True)
        (parquet,) = root.glob("warehouse/request_metrics_minute/*/*.parquet")
        rows, buckets = duckdb.sql(
            f"SELECT count(*), avg(len(lat_idx)) FROM read_parquet('{parquet}')"
        ).fetchall()[0]
        size = parquet.stat().st_size
        print(f"{per_row} events/row: {facts:,} facts, {rows:,} rows, {size:,} bytes, "
              f"{size / rows:.1f} bytes/row, {buckets:.0f} histogram buckets/row")  # fmt: skip


if __name__ == "__main__":
    probes = {"requests": requests, "killed": killed, "warehouse": warehouse}
    for name in sys.argv[1:] or list(probes):
        with tempfile.TemporaryDirectory(prefix=f"gravix-probe-{name}-") as tmp:
            print(f"== {name}")
            probes[name](Path(tmp))
