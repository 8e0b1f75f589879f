"""Rollup benchmark: ``gravix rollup`` against DuckDB doing the same job on the same raw files.

One day of synthetic request facts (3,000,000 by default, 300,000 with ``--quick``) is
generated once into ``bench-results/rollup-cache/``. Each run gets a fresh data root whose
raw files are hard links to the cache. Both contenders run in their own subprocess; wall
time and peak RSS (``wait4``) are measured for each:

* gravix: ``gravix rollup --table request_metrics_minute`` (de-duplication, minute buckets,
  counts, exact p50/p95/p99, histograms, one ZSTD Parquet file per hour, manifests);
* DuckDB: one SQL statement reading the same NDJSON files, ``DISTINCT ON (event_id)``, the
  minute group-by with exact ``quantile_cont`` p50/p95/p99, the same latency histogram
  (bucket ``⌈log2(v)·32⌉ − 1`` counted with ``histogram()``, zeros apart), ZSTD Parquet
  partitioned by day. The same statement without the histogram is measured too, so the
  ratio against the job as this benchmark first measured it stays visible.

The contenders alternate, ``ATTEMPTS`` times each, so both meet the same load from whatever
else runs on the machine; the medians are compared, and the load average is reported.
Peak memory is that of the process and all its descendants (the rollup's worker processes),
sampled every 10 ms: each process's own pages (RSS less its resident file-backed pages),
plus the file-backed pages once (the largest of any process: the workers map the same
polars and pyarrow libraries, which the machine holds once); never less than the largest
single process's own peak (``wait4``). The plain sum of the RSS, which counts the libraries
once per worker, is reported beside it.

More runs: one hour and six hours of the same day (peak RSS stays flat as the window grows:
memory is bounded by the hours in flight), and a backfill of seven days (7,000,000 facts),
whose time per fact is compared with the one-day run's (its raw files are read once first,
as the one-day run's attempts find theirs in the page cache); the first of those seven days
alone is timed too, because its hours are a third as dense as the one-day run's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / "bench-results" / "rollup-cache"
DAY = date(2026, 2, 16)
FILES_PER_HOUR = 12
ATTEMPTS = 5
WEEK_DAYS = 7
WEEK_FACTS = 7_000_000
SERVICES = tuple(f"svc-{i:02d}" for i in range(12))
ROUTES = tuple(
    (m, f"/api/v1/{name}{suffix}")
    for name in ("items", "cart", "users", "orders", "search")
    for m, suffix in (("GET", ""), ("GET", "/{id}"), ("POST", ""), ("DELETE", "/{id}"))
)
STATUSES = (200,) * 20 + (201, 204, 304, 400, 401, 404, 429, 500, 502, 503)

DUCKDB_SQL = """
SET TimeZone = 'UTC';
SET enable_progress_bar = false;
COPY (
  WITH facts AS (
    SELECT DISTINCT ON (event_id) *
    FROM read_json('{glob}', format = 'newline_delimited', columns = {{
      event_id: 'VARCHAR', event_time: 'TIMESTAMPTZ', service: 'VARCHAR',
      method: 'VARCHAR', path_template: 'VARCHAR', status_code: 'BIGINT',
      latency_ms: 'DOUBLE', user_agent_family: 'VARCHAR'}}, ignore_errors = true)
  ), metrics AS (
    SELECT date_trunc('minute', event_time) AS bucket_start, service, method, path_template,
      count(*) AS request_count,
      count(*) FILTER (WHERE status_code >= 500) AS error_count,
      count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) AS client_error_count,
      sum(latency_ms) AS latency_sum_ms, min(latency_ms) AS latency_min_ms,
      max(latency_ms) AS latency_max_ms,
      quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q{hist_agg}
    FROM facts GROUP BY ALL
  )
  SELECT bucket_start, service, method, path_template, request_count, error_count,
    client_error_count, error_count / request_count AS error_rate, latency_sum_ms,
    latency_min_ms, latency_max_ms, q[1] AS p50_latency_ms, q[2] AS p95_latency_ms,
    q[3] AS p99_latency_ms{hist_cols}, CAST(bucket_start AS DATE) AS event_day
  FROM metrics ORDER BY service, bucket_start
) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_day));
"""
# The latency histogram of DESIGN §6 (scale 5), as DuckDB computes it in the same pass.
HIST_AGG = """,
      count(*) FILTER (WHERE latency_ms = 0) AS lat_zero_count,
      histogram(CAST(ceil(log2(latency_ms) * 32) - 1 AS INTEGER)) FILTER (WHERE latency_ms > 0)
        AS hist"""
HIST_COLS = """, CAST(5 AS TINYINT) AS lat_scale, lat_zero_count,
    map_keys(hist) AS lat_idx, map_values(hist) AS lat_cnt"""


def _uuid7(rng: random.Random, ms: int) -> str:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
    value |= rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _generate_day(target: Path, day: date, per_hour: int) -> None:
    """Canonical lines for ``per_hour`` distinct facts in each hour of ``day``, ~1% sent twice."""
    rng = random.Random(20260216 + (day - DAY).days)
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for hour in range(24):
        hour_dir = target / "raw" / "request_facts" / f"event_day={day}" / f"hour={hour:02d}"
        hour_dir.mkdir(parents=True, exist_ok=True)
        base_ms = int((day_start + timedelta(hours=hour)).timestamp() * 1000)
        files: list[list[str]] = [[] for _ in range(FILES_PER_HOUR)]
        for n in range(per_hour):
            ms = base_ms + rng.randrange(3_600_000)
            method, path = ROUTES[rng.randrange(len(ROUTES))]
            moment = datetime.fromtimestamp(ms / 1000, UTC)
            stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
            latency = round(rng.lognormvariate(3.0, 1.1), 3)
            line = (
                f'{{"event_id":"{_uuid7(rng, ms)}","event_time":"{stamp}",'
                f'"service":"{SERVICES[rng.randrange(len(SERVICES))]}","method":"{method}",'
                f'"path_template":"{path}","status_code":{STATUSES[rng.randrange(len(STATUSES))]},'
                f'"latency_ms":{latency!r},"user_agent_family":"Chrome"}}'
            )
            slot = n * FILES_PER_HOUR // per_hour  # files in time order, like rotation
            files[slot].append(line)
            if rng.random() < 0.01:
                files[min(slot + 1, FILES_PER_HOUR - 1)].append(line)
        for i, lines in enumerate(files):
            (hour_dir / f"{base_ms:020d}-{i:04d}.jsonl").write_text("\n".join(lines) + "\n")


def _generate(target: Path, facts: int, days: int) -> None:
    per_hour = facts // (24 * days)
    with ProcessPoolExecutor() as pool:
        list(pool.map(_generate_day, repeat(target), _days(days), repeat(per_hour)))


def _days(days: int) -> list[date]:
    return [DAY + timedelta(days=n) for n in range(days)]


def _cache(facts: int, days: int = 1) -> Path:
    target = CACHE / (f"facts-{facts}" if days == 1 else f"facts-{facts}-{days}d")
    done = target / "complete"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        _generate(target, facts, days)
        done.write_text("ok\n")
    return target


def _fresh_root(cache: Path, name: str) -> Path:
    root = CACHE / "runs" / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(cache / "raw"), str(root / "raw")], check=True)
    return root


_WRAPPER = """
import resource, subprocess, sys, tempfile, time, json
import psutil
out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=out, stderr=err)
top, tree, naive = psutil.Process(proc.pid), 0, 0
while proc.poll() is None:  # the process and its workers, every 10 ms
    own, files, total = 0, 0, 0
    try:
        for p in [top, *top.children(recursive=True)]:
            info = p.memory_info()
            own += info.rss - info.shared
            files = max(files, info.shared)
            total += info.rss
    except psutil.Error:
        pass
    tree, naive = max(tree, own + files), max(naive, total)
    time.sleep(0.01)
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
out.seek(0), err.seek(0)
sys.stderr.write(err.read().decode())
print(json.dumps({"rc": proc.returncode, "seconds": seconds,
                  "rss_mb": max(usage.ru_maxrss / 1024, tree / 2**20),
                  "rss_sum_mb": max(usage.ru_maxrss / 1024, naive / 2**20),
                  "cpu": usage.ru_utime + usage.ru_stime, "stdout": out.read().decode()}))
"""


@dataclass
class Measured:
    seconds: float  # wall time
    rss_mb: float  # peak memory of the process tree, shared file pages counted once
    rss_sum_mb: float  # peak of the plain sum of the tree's RSS (libraries counted per process)
    cpu: float  # user + system seconds, all threads: robust to other load on the machine
    stdout: str


def _run(cmd: list[str]) -> Measured:
    """Run ``cmd`` under a small wrapper process that measures exactly that child."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, check=False)
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({result['rc']}): {proc.stderr.decode()[-2000:]}")
    return Measured(
        result["seconds"], result["rss_mb"], result["rss_sum_mb"], result["cpu"], result["stdout"]
    )


def _gravix(root: Path, *extra: str) -> Measured:
    cmd = [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(root)]
    return _run([*cmd, "--table", "request_metrics_minute", "--json", *extra])


def _duckdb(root: Path, histogram: bool = True) -> Measured:
    glob = root / "raw" / "request_facts" / "*" / "*" / "*.jsonl"
    out = root / "duckdb-out"
    sql = DUCKDB_SQL.format(
        glob=glob,
        out=out,
        hist_agg=HIST_AGG if histogram else "",
        hist_cols=HIST_COLS if histogram else "",
    )
    script = (
        "import duckdb, sys\n"
        "con = duckdb.connect()\n"
        f"con.execute({sql!r})\n"
        f"print(con.execute(\"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')\")"
        ".fetchone()[0])\n"
    )
    return _run([sys.executable, "-c", script])


def _load() -> float:
    return os.getloadavg()[0]


def _day_rows(
    gravix_runs: list[Measured], duck_runs: list[Measured], plain_runs: list[Measured]
) -> list[dict[str, Any]]:
    g_time, d_time = median(r.seconds for r in gravix_runs), median(r.seconds for r in duck_runs)
    p_time = median(r.seconds for r in plain_runs)
    g_cpu, d_cpu = median(r.cpu for r in gravix_runs), median(r.cpu for r in duck_runs)
    g_rss, d_rss = max(r.rss_mb for r in gravix_runs), max(r.rss_mb for r in duck_runs)
    g_sum, d_sum = max(r.rss_sum_mb for r in gravix_runs), max(r.rss_sum_mb for r in duck_runs)
    summary = json.loads(gravix_runs[0].stdout)
    facts = int(summary["facts"])
    return [
        {
            "name": "rollup wall time (1 day), median",
            "value": g_time,
            "unit": "s",
            "reference": d_time,
            "ratio": g_time / d_time,
            "target": "ratio ≤ 1.0 vs DuckDB",
            "ok": g_time <= d_time,
            "peak_rss_mb": g_rss,
            "facts": facts,
            "lines": summary["lines"],
            "rows": summary["rows"],
            "all_wall_s": [r.seconds for r in gravix_runs],
            "all_reference_wall_s": [r.seconds for r in duck_runs],
        },
        {
            "name": "rollup wall time vs DuckDB without histograms",
            "value": g_time,
            "unit": "s",
            "reference": p_time,
            "ratio": g_time / p_time,
            "all_reference_wall_s": [r.seconds for r in plain_runs],
        },
        {
            "name": "rollup CPU time, user+sys (1 day), median",
            "value": g_cpu,
            "unit": "s",
            "reference": d_cpu,
            "ratio": g_cpu / d_cpu,
            "cores_used": g_cpu / g_time,
            "reference_cores_used": d_cpu / d_time,
        },
        {
            "name": "rollup throughput",
            "value": facts / g_time,
            "unit": "facts/s",
            "reference": facts / d_time,
            "ratio": d_time / g_time,
        },
        {
            "name": "rollup peak memory, process tree (1 day)",
            "value": g_rss,
            "unit": "MiB",
            "reference": d_rss,
            "ratio": g_rss / d_rss,
            "target": "ratio ≤ 0.6 vs DuckDB",
            "ok": g_rss <= 0.6 * d_rss,
            "peak_rss_mb": g_rss,
        },
        {
            "name": "rollup peak RSS summed over the tree (1 day)",
            "value": g_sum,
            "unit": "MiB",
            "reference": d_sum,
            "ratio": g_sum / d_sum,
            "peak_rss_mb": g_sum,
        },
    ]


def _read_once(cache: Path) -> None:
    """Read every raw file once, so the week's single run starts from the page cache as the
    one-day run's median does (its attempts read the same files again and again)."""
    for path in sorted((cache / "raw").rglob("*.jsonl")):
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass


def _week_rows(day_seconds: float, day_facts: int, quick: bool) -> list[dict[str, Any]]:
    facts = WEEK_FACTS // 10 if quick else WEEK_FACTS
    cache = _cache(facts, WEEK_DAYS)
    _read_once(cache)
    week = _gravix(_fresh_root(cache, "gravix-week"))
    next_day = DAY + timedelta(days=1)
    first = ("--start-time", f"{DAY}T00:00:00Z", "--end-time", f"{next_day}T00:00:00Z")
    one = _gravix(_fresh_root(cache, "gravix-week-day1"), *first)
    week_facts, one_facts = json.loads(week.stdout)["facts"], json.loads(one.stdout)["facts"]
    per_fact, reference = week.seconds / week_facts, day_seconds / day_facts
    return [
        {
            "name": "backfill 7 days: time per fact vs the 1-day run",
            "value": per_fact * 1e6,
            "unit": "µs/fact",
            "reference": reference * 1e6,
            "ratio": per_fact / reference,
            "target": "ratio ≤ 1.1",
            "ok": per_fact <= 1.1 * reference,
            "peak_rss_mb": week.rss_mb,
            "facts": week_facts,
            "seconds": week.seconds,
        },
        {
            "name": "backfill 7 days: time per fact vs its first day alone",
            "value": per_fact * 1e6,
            "unit": "µs/fact",
            "reference": one.seconds / one_facts * 1e6,
            "ratio": per_fact / (one.seconds / one_facts),
            "peak_rss_mb": week.rss_mb,
            "reference_peak_rss_mb": one.rss_mb,
            "reference_seconds": one.seconds,
        },
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    facts = 300_000 if quick else 3_000_000
    cache = _cache(facts)
    loads = [_load()]
    gravix_runs: list[Measured] = []
    duck_runs: list[Measured] = []
    plain_runs: list[Measured] = []
    for attempt in range(ATTEMPTS):
        duck_runs.append(_duckdb(_fresh_root(cache, f"duckdb-{attempt}")))
        gravix_runs.append(_gravix(_fresh_root(cache, f"gravix-{attempt}")))
        if attempt % 2 == 0:
            plain_runs.append(_duckdb(_fresh_root(cache, f"plain-{attempt}"), histogram=False))
        loads.append(_load())
    summary = json.loads(gravix_runs[0].stdout)
    duck_rows = int(duck_runs[0].stdout.strip().splitlines()[-1])
    if summary["rows"] != duck_rows:
        raise RuntimeError(f"row counts differ: gravix {summary['rows']}, DuckDB {duck_rows}")
    rows = _day_rows(gravix_runs, duck_runs, plain_runs)
    window = ("--start-time", f"{DAY}T12:00:00Z", "--end-time", f"{DAY}T13:00:00Z")
    one_hour = _gravix(_fresh_root(cache, "gravix-hour"), *window)
    window = ("--start-time", f"{DAY}T00:00:00Z", "--end-time", f"{DAY}T06:00:00Z")
    six_hours = _gravix(_fresh_root(cache, "gravix-6h"), *window)
    g_rss = rows[0]["peak_rss_mb"]
    rows.append(
        {
            "name": "rollup peak RSS 24 h / 6 h window",
            "value": g_rss,
            "unit": "MiB",
            "reference": six_hours.rss_mb,
            "ratio": g_rss / six_hours.rss_mb,
            "target": "memory bounded by the hours in flight (ratio near 1)",
            "peak_rss_mb": g_rss,
            "one_hour_rss_mb": one_hour.rss_mb,
            "one_hour_seconds": one_hour.seconds,
            "six_hours_seconds": six_hours.seconds,
        }
    )
    shutil.rmtree(CACHE / "runs", ignore_errors=True)
    rows.extend(_week_rows(rows[0]["value"], rows[0]["facts"], quick))
    loads.append(_load())
    shutil.rmtree(CACHE / "runs", ignore_errors=True)
    for row in rows:
        row["load_average_1m"] = loads
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
