"""`gravix query` over an S3 store (DESIGN §11) against the same questions over the same
files on the local disk, in the same run.

The week's data root of ``bench_query`` (rolled up with the real rollup) has its warehouse
copied into moto's S3 server as objects of the same names. The three questions of
``bench_query`` (service health over the week, top endpoints over 24 hours as the preset and
as SQL) are answered in-process, each engine in its own fresh process: one warm-up call,
then the median of several. The reference is the same call on the data root; both answers
must be equal. Beside it, the store's answer against DuckDB's on the local files (the
reference of ``bench_query``).

moto is a Python server on the same two cores, answering each LIST and ranged GET itself:
an S3 endpoint elsewhere costs this machine none of that CPU but adds its network round
trips, so the ratio is a measure of the request pattern here, not of a given provider.

    python -m bench store_read
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.bench_query import _LABELS, _data_roots, _run_worker, _top_sql
from bench.bench_store import ENV, _moto

BUCKET = "gravix-bench"
URL = f"s3://{BUCKET}/warehouse-read"


def _copy(root: Path, endpoint: str) -> int:
    """The root's warehouse into the store; returns the number of objects."""
    from gravix.settings import load_settings
    from gravix.storage import layout
    from gravix.storage.store import open_store

    settings = load_settings(store=URL, environ={**ENV, "AWS_ENDPOINT_URL": endpoint})
    store = open_store(settings)
    files = [p for p in layout.warehouse_root(root).rglob("*") if p.is_file()]
    for path in files:
        store.write(layout.object_key(root, path), path.read_bytes())
    return len(files)


def worker(case: str, root_text: str, days: int, endpoint: str) -> None:
    """One question on the store, timed as ``bench_query.worker`` times it on a root."""
    import os
    import resource
    import statistics
    import time

    from bench.bench_query import REPEATS, _cases
    from gravix.query import open_root, run_sql, service_health, top_endpoints
    from gravix.settings import load_settings

    os.environ.update({**ENV, "AWS_ENDPOINT_URL": endpoint})
    root = open_root(load_settings(store=URL))
    since, until, step = _cases(Path(root_text), days)[case]

    def call() -> Any:
        if case == "sql":
            return run_sql(root, _top_sql("request_metrics_minute", since, until, ""))
        if case == "health":
            return service_health(
                root=root, service="frontend", since=since, until=until, step_minutes=step
            ).frame
        return top_endpoints(root=root, since=since, until=until, limit=10).frame

    result = call()  # warm-up, as bench_query's worker does
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = [result.height, int(result["requests"].sum())]
    print(json.dumps({"seconds": statistics.median(times), "rss_mb": rss_mb, "summary": summary}))


def _run_store_worker(case: str, root: Path, days: int, endpoint: str) -> dict[str, Any]:
    code = (
        "from bench.bench_store_read import worker; "
        f"worker({case!r}, {str(root)!r}, {days}, {endpoint!r})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _rows(case: str, root: Path, days: int, endpoint: str) -> list[dict[str, Any]]:
    store = _run_store_worker(case, root, days, endpoint)
    local = _run_worker("gravix", case, root, days)
    duck = _run_worker("duckdb", case, root, days)
    if not store["summary"] == local["summary"] == duck["summary"]:
        raise AssertionError(f"{case}: answers differ: {store}, {local}, {duck}")
    label = _LABELS[case].format(days=days)
    ratio = store["seconds"] / local["seconds"]
    return [
        {
            "name": f"store (moto) {label}, vs the data root",
            "value": store["seconds"],
            "unit": "s",
            "reference": local["seconds"],
            "ratio": ratio,
            "target": "(reported)",
            "peak_rss_mb": round(store["rss_mb"], 1),
            "reference_peak_rss_mb": round(local["rss_mb"], 1),
        },
        {
            "name": f"store (moto) {label}, vs DuckDB on the data root",
            "value": store["seconds"],
            "unit": "s",
            "reference": duck["seconds"],
            "ratio": store["seconds"] / duck["seconds"],
            "target": "(reported)",
        },
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    from gravix.tools.serverproc import free_port

    root, days = _data_roots(quick)[0]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        moto = _moto(port, Path(tmp) / "moto.log")
        try:
            import boto3

            boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=ENV["AWS_REGION"],
                aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
            ).create_bucket(Bucket=BUCKET)
            objects = _copy(root, endpoint)
            rows = [
                row
                for case in ("health", "top", "sql")
                for row in _rows(case, root, days, endpoint)
            ]
        finally:
            moto.terminate()
            moto.wait(10)
    for row in rows:
        row["objects"] = objects
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
