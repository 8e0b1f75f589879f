"""Rollup on an object store: ``gravix rollup --store s3://…`` against the same rollup on a
data root and against DuckDB doing the same job on the same raw files (``bench_rollup``).

The raw files of ``bench_rollup``'s day (1,000,000 facts, 300,000 with ``--quick``) are put
into a bucket of moto's S3 server on loopback under the same names, once (not timed). Each
contender runs in its own subprocess, measured by ``bench_rollup``'s wrapper (wall time,
CPU, peak memory of the process tree), ``ATTEMPTS`` times, alternating:

* store: ``gravix rollup --store …`` over the whole day as a window (every hour rebuilt:
  listing, manifest reads, each hour's raw objects copied to a work directory, built, its
  Parquet object and manifest PUT);
* data root: ``gravix rollup`` over the same window on a fresh data root (reference 1);
* DuckDB: the same job on the local files (reference 2, ``bench_rollup``'s statement).

moto is a Python server on the same two cores, so every byte it serves costs this machine
CPU that an S3 endpoint elsewhere would not; the store run's wall time is an upper bound.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from statistics import median
from typing import Any

from bench.bench_rollup import CACHE, DAY, Measured, _cache, _duckdb, _fresh_root, _run
from bench.bench_store import ENV, _moto

ATTEMPTS = 3
BUCKET = "bench-rollup"
PREFIX = "gravix"


def _upload(cache: Path, endpoint: str) -> int:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=ENV["AWS_REGION"])
    client.create_bucket(Bucket=BUCKET)
    files = sorted(p for p in (cache / "raw").rglob("*.jsonl"))

    def put(path: Path) -> int:
        name = "/".join(path.relative_to(cache).parts)
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=path.read_bytes())
        return path.stat().st_size

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(put, files))


def _window() -> list[str]:
    end = DAY + timedelta(days=1)
    return ["--start-time", f"{DAY}T00:00:00Z", "--end-time", f"{end}T00:00:00Z"]


def _gravix(root: Path, *extra: str) -> Measured:
    cmd = [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(root), "--json"]
    return _run([*cmd, "--table", "request_metrics_minute", *_window(), *extra])


def run(quick: bool) -> list[dict[str, Any]]:
    facts = 300_000 if quick else 1_000_000
    cache = _cache(facts)
    base = CACHE / "store-runs"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    port = 18000 + os.getpid() % 1000
    moto = _moto(port, base / "moto.log")
    saved = {k: os.environ.get(k) for k in ENV}
    try:
        os.environ.update(ENV)
        endpoint = f"http://127.0.0.1:{port}"
        raw_bytes = _upload(cache, endpoint)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        store, local, duck = [], [], []
        for attempt in range(ATTEMPTS):
            store.append(_gravix(base / f"runner-{attempt}", "--store", f"s3://{BUCKET}/{PREFIX}"))
            local.append(_gravix(_fresh_root(cache, f"store-ref-{attempt}")))
            duck.append(_duckdb(_fresh_root(cache, f"store-duck-{attempt}")))
            time.sleep(1)
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        moto.terminate()
        moto.wait(30)
    return _rows(store, local, duck, raw_bytes)


def _rows(
    store: list[Measured], local: list[Measured], duck: list[Measured], raw_bytes: int
) -> list[dict[str, Any]]:
    s_doc, l_doc = json.loads(store[0].stdout), json.loads(local[0].stdout)
    if (s_doc["rows"], s_doc["facts"]) != (l_doc["rows"], l_doc["facts"]):
        raise RuntimeError(f"store and data root differ: {s_doc['rows']} vs {l_doc['rows']}")
    s_time, l_time = median(r.seconds for r in store), median(r.seconds for r in local)
    d_time = median(r.seconds for r in duck)
    s_rss, l_rss = max(r.rss_mb for r in store), max(r.rss_mb for r in local)
    return [
        {
            "name": "rollup on the store (moto) vs on a data root, 1 day, median",
            "value": s_time,
            "unit": "s",
            "reference": l_time,
            "ratio": s_time / l_time,
            "peak_rss_mb": s_rss,
            "facts": s_doc["facts"],
            "raw_mb": raw_bytes / 2**20,
            "all_wall_s": [r.seconds for r in store],
            "all_reference_wall_s": [r.seconds for r in local],
        },
        {
            "name": "rollup on the store (moto) vs DuckDB on local files",
            "value": s_time,
            "unit": "s",
            "reference": d_time,
            "ratio": s_time / d_time,
            "all_reference_wall_s": [r.seconds for r in duck],
        },
        {
            "name": "rollup on the store: CPU user+sys of gravix (moto not counted)",
            "value": median(r.cpu for r in store),
            "unit": "s",
            "reference": median(r.cpu for r in local),
            "ratio": median(r.cpu for r in store) / median(r.cpu for r in local),
        },
        {
            "name": "rollup on the store: peak memory, process tree",
            "value": s_rss,
            "unit": "MiB",
            "reference": l_rss,
            "ratio": s_rss / l_rss,
            "target": "bounded by the hours in flight, as on a data root (ratio near 1)",
            "peak_rss_mb": s_rss,
        },
    ]
