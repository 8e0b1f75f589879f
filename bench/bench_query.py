"""`gravix query` against DuckDB on the same warehouse files, and `gravix --help` wall time.

Two data roots, 7 and 30 days of facts (4 services × 6 endpoints, with errors and a lognormal
latency spread), are generated once into ``bench-results/cache/`` and rolled up with the real
rollup. Three questions are timed on each:

* service health — one service over the whole root (7 or 30 days): request rate, error rate
  and p50/p95/p99 merged from the minute histograms, per hour;
* top endpoints — every endpoint over the last 24 hours, ranked by errors, with merged
  percentiles (the preset), and the same ranking as a user writes it in SQL (sums only).

The reference is DuckDB answering the same question in SQL over the same Parquet files (Hive
partitions pruned on ``event_day`` the same way, histograms unnested, summed by index and
read with the same rank rule): the minute table, the files a user's DuckDB reads. The
presets read whole hours from ``request_metrics_hour``, so DuckDB answering from that table
is reported beside it (and the SQL question is also timed with both engines reading it).
In-process, each engine runs in its own fresh subprocess — one warm-up call, then the median
of at least five calls and of half a second of calls — so each gets a clean peak RSS and the
same treatment. Whole-process, ``gravix
query … --json`` is timed against a Python process that imports DuckDB and runs the same SQL
(median of several runs each). A month must not cost much more than a week: each 30-day
answer is also set against its 7-day one.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

CACHE = Path("bench-results") / "cache"
SERVICES = ("frontend", "checkout", "catalog", "payments")
ENDPOINTS = (
    ("GET", "/"),
    ("GET", "/api/items"),
    ("GET", "/api/items/{id}"),
    ("POST", "/api/cart"),
    ("POST", "/api/checkout"),
    ("GET", "/health"),
)
END = datetime(2026, 2, 20, 0, 0, tzinfo=UTC)
REPEATS = 5
MIN_SECONDS = 0.5  # per engine and question, in-process
MAX_CALLS = 200


def _uuid7(ms: int, rng: random.Random) -> str:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _build(root: Path, days: int, per_minute: int) -> None:
    from gravix import schema
    from gravix.rollup import run_rollup
    from gravix.storage import layout

    rng = random.Random(5)
    start = END - timedelta(days=days)
    hours = days * 24
    for h in range(hours):
        hour_start = start + timedelta(hours=h)
        lines: list[str] = []
        for m in range(60):
            minute = hour_start + timedelta(minutes=m)
            for _ in range(per_minute):
                moment = minute + timedelta(milliseconds=rng.randrange(60_000))
                service = rng.choice(SERVICES)
                method, path = rng.choice(ENDPOINTS)
                r = rng.random()
                status = 503 if r < 0.02 else (404 if r < 0.05 else 200)
                latency = round(rng.lognormvariate(3.2, 0.9), 3)
                stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
                lines.append(
                    f'{{"event_id":"{_uuid7(int(moment.timestamp() * 1000), rng)}",'
                    f'"event_time":"{stamp}","service":"{service}","method":"{method}",'
                    f'"path_template":"{path}","status_code":{status},"latency_ms":{latency}}}\n'
                )
        path_out = layout.raw_file_path(
            root, schema.REQUEST_FACTS, layout.Hour.of(hour_start), f"bench-{h:05d}"
        )
        path_out.parent.mkdir(parents=True, exist_ok=True)
        path_out.write_text("".join(lines))
    run_rollup(root=root)


def _data_root(days: int, per_minute: int) -> Path:
    """The cached root, as an operator's routine leaves it: rolled up, and cleaned up (which
    joins each closed day into one file; a no-op once done)."""
    from gravix.ops.retention import run_cleanup
    from gravix.rollup import run_rollup

    root = CACHE / f"query-{days}d-{per_minute}pm"
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        _build(root, days, per_minute)
        marker.write_text("ok\n")
    run_rollup(root=root)  # incremental: builds what a root cached by an older version lacks
    run_cleanup(root=root, days=days + 1, warehouse_days=days + 1, today=END.date())
    return root


def _data_roots(quick: bool) -> list[tuple[Path, int]]:
    """The week's root and the month's, with as many facts per minute."""
    sizes = ((2, 40), (5, 40)) if quick else ((7, 150), (30, 150))
    return [(_data_root(days, per_minute), days) for days, per_minute in sizes]


# --- the reference: the same questions in DuckDB SQL ---------------------------------------------


def _duck_merged(keys: str, where: str, source: str, select: str) -> str:
    from gravix.schema import sketch

    g = sketch.GAMMA
    per = 2**sketch.SCALE

    def pct(name: str, q: float) -> str:
        first = "least(greatest(0.0, t.lo), t.hi)"
        value = f"pow(2.0, q.{name}_i / {per}.0) * {2 * g / (1 + g)!r}"
        chosen = f"least(greatest({value}, t.lo), t.hi)"
        rank = f"greatest(1, ceil({q} * t.n))"
        return f"CASE WHEN t.z >= {rank} THEN {first} ELSE {chosen} END AS {name}"

    return f"""
    WITH rows AS (SELECT {keys}, request_count, error_count, client_error_count, latency_min_ms,
                         latency_max_ms, lat_zero_count, lat_idx, lat_cnt
                  FROM {source} WHERE {where}),
    t AS (SELECT {keys}, sum(request_count) AS n, sum(error_count) AS e,
                 sum(client_error_count) AS ce, min(latency_min_ms) AS lo,
                 max(latency_max_ms) AS hi, sum(lat_zero_count) AS z
          FROM rows GROUP BY ALL),
    h AS (SELECT {keys}, i, sum(c) AS c
          FROM (SELECT {keys}, unnest(lat_idx) AS i, unnest(lat_cnt) AS c FROM rows)
          GROUP BY ALL),
    run AS (SELECT h.*, t.n, t.z + sum(h.c) OVER (PARTITION BY {keys} ORDER BY h.i) AS running
            FROM h JOIN t USING ({keys})),
    q AS (SELECT {keys},
                 min(i) FILTER (WHERE running >= greatest(1, ceil(0.5 * n))) AS p50_i,
                 min(i) FILTER (WHERE running >= greatest(1, ceil(0.95 * n))) AS p95_i,
                 min(i) FILTER (WHERE running >= greatest(1, ceil(0.99 * n))) AS p99_i
          FROM run GROUP BY ALL)
    SELECT {select}, t.n AS requests, t.e AS errors, t.e / t.n AS error_rate,
           t.ce AS client_errors, {pct("p50", 0.5)}, {pct("p95", 0.95)}, {pct("p99", 0.99)}
    FROM t LEFT JOIN q USING ({keys})
    """


def _days(since: datetime, until: datetime) -> str:
    last = (until - timedelta(seconds=1)).date()
    return f"event_day BETWEEN DATE '{since.date()}' AND DATE '{last}'"


MINUTES, HOURS = "request_metrics_minute", "request_metrics_hour"


def _duck_health(root: Path, since: datetime, until: datetime, step: int, table: str) -> str:
    from gravix.storage import layout

    o, s = int(since.timestamp()), step * 60
    source = (
        f"(SELECT *, to_timestamp({o} + floor((epoch(bucket_start) - {o}) / {s}) * {s})"
        f" AS b FROM read_parquet('{layout.warehouse_glob(root, table)}',"
        " hive_partitioning = true))"
    )
    where = (
        _days(since, until) + f" AND bucket_start >= TIMESTAMPTZ '{since.isoformat()}'"
        f" AND bucket_start < TIMESTAMPTZ '{until.isoformat()}' AND service = 'frontend'"
    )
    body = _duck_merged("b", where, source, f"t.b, t.n / {s} AS rate")
    return f"SELECT * FROM ({body}) ORDER BY b"


def _duck_top(root: Path, since: datetime, until: datetime, table: str) -> str:
    from gravix.storage import layout

    source = f"read_parquet('{layout.warehouse_glob(root, table)}', hive_partitioning = true)"
    where = (
        _days(since, until) + f" AND bucket_start >= TIMESTAMPTZ '{since.isoformat()}'"
        f" AND bucket_start < TIMESTAMPTZ '{until.isoformat()}'"
    )
    body = _duck_merged(
        "service, method, path_template", where, source, "t.service, t.method, t.path_template"
    )
    return (
        f"SELECT * FROM ({body}) ORDER BY errors DESC, error_rate DESC, requests DESC, "
        "service, method, path_template LIMIT 10"
    )


# --- the worker: one engine, one question, in a fresh process ------------------------------------


def _cases(root: Path, days: int) -> dict[str, tuple[datetime, datetime, int]]:
    return {
        "health": (END - timedelta(days=days), END, 60),
        "top": (END - timedelta(hours=24), END, 0),
        "sql": (END - timedelta(hours=24), END, 0),
    }


def _top_sql(table: str, since: datetime, until: datetime, literal: str) -> str:
    """Top endpoints over a window as a user writes it in SQL: sums only, no percentiles."""
    return (
        "SELECT service, method, path_template, sum(request_count) AS requests, "
        "sum(error_count) AS errors, sum(error_count) / sum(request_count) AS error_rate "
        f"FROM {table} WHERE bucket_start >= {literal}'{since:%Y-%m-%d %H:%M:%S}' "
        f"AND bucket_start < {literal}'{until:%Y-%m-%d %H:%M:%S}' "
        "GROUP BY service, method, path_template "
        "ORDER BY errors DESC, requests DESC, service, method, path_template LIMIT 10"
    )


def _duck_sql(case: str, root: Path, days: int, table: str = MINUTES) -> str:
    """The reference's SQL for one question, over the minute table (or the hour table)."""
    from gravix.storage import layout

    since, until, step = _cases(root, days)[case]
    source = f"read_parquet('{layout.warehouse_glob(root, table)}', hive_partitioning = true)"
    return {
        "health": lambda: _duck_health(root, since, until, step, table),
        "top": lambda: _duck_top(root, since, until, table),
        "sql": lambda: _top_sql(source, since, until, "TIMESTAMPTZ "),
    }[case]()


def worker(engine: str, case: str, root_text: str, days: int, table: str = MINUTES) -> None:
    """One engine answering one question; ``table`` is the table DuckDB reads (and the
    table gravix's SQL names: its presets choose their rows themselves)."""
    import resource

    root = Path(root_text)
    since, until, step = _cases(root, days)[case]
    if engine == "gravix":
        from gravix.query import run_sql, service_health, top_endpoints

        def call() -> Any:
            if case == "sql":
                return run_sql(root, _top_sql(table, since, until, ""))
            if case == "health":
                return service_health(
                    root=root, service="frontend", since=since, until=until, step_minutes=step
                ).frame
            return top_endpoints(root=root, since=since, until=until, limit=10).frame

        def summary(frame: Any) -> list[Any]:
            return [frame.height, int(frame["requests"].sum())]
    else:
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # a bar on stdout breaks the result
        sql = _duck_sql(case, root, days, table)

        def call() -> Any:
            return con.execute(sql).fetchall()

        def summary(rows: Any) -> list[Any]:
            requests = -3 if case == "sql" else -7
            return [len(rows), int(sum(r[requests] for r in rows))]

    result = call()  # warm-up: file listing and metadata caches, as for a user's second query
    times: list[float] = []
    # at least REPEATS calls, and a short question is called until it has run for a while:
    # the median of five 6 ms calls moves with any other process on the machine
    while len(times) < REPEATS or (sum(times) < MIN_SECONDS and len(times) < MAX_CALLS):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"seconds": statistics.median(times), "rss_mb": rss_mb, "summary": summary(result)}
        )
    )


def duck_process(case: str, root_text: str, days: int) -> None:
    """The whole-process reference: import DuckDB, run the question's SQL once, print it."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    rows = con.execute(_duck_sql(case, Path(root_text), days)).fetchall()
    print(json.dumps(rows, default=str))


def _gravix_args(case: str, root: Path, days: int) -> list[str]:
    """`gravix query` as a user types it for the same question."""
    since, until, step = _cases(root, days)[case]
    window = ["--since", since.isoformat(), "--until", until.isoformat()]
    common = ["--data-dir", str(root), "--json"]
    if case == "sql":
        return ["query", _top_sql("request_metrics_minute", since, until, ""), *common]
    if case == "health":
        return ["query", "--preset", "health", "--service", "frontend", *window,
                "--step", str(step), *common]  # fmt: skip
    return ["query", "--preset", "top-endpoints", *window, "--limit", "10", *common]


def _run_worker(
    engine: str, case: str, root: Path, days: int, table: str = MINUTES
) -> dict[str, Any]:
    code = (
        "from bench.bench_query import worker; "
        f"worker({engine!r}, {case!r}, {str(root)!r}, {days}, {table!r})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _timed(cmd: list[str], runs: int = 9) -> tuple[float, float]:
    """Median wall and median CPU (user + system) seconds of a command. On a busy machine
    the CPU time is what the wall time would be on an idle one."""
    import resource

    subprocess.run(cmd, capture_output=True, check=True)  # a first start writes bytecode
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def _help_rows() -> list[dict[str, Any]]:
    gravix = Path(sys.executable).with_name("gravix")
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, gravix.cli; print(' '.join(m for m in ('polars', 'pyarrow', 'duckdb', "
            "'uvicorn', 'httpx', 'msgspec', 'numpy', 'prometheus_client', 'markdown_it') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    wall, cpu = _timed([str(gravix), "--help"])
    bare_wall, bare_cpu = _timed([sys.executable, "-c", "pass"])
    note = f" (heavy imports: {', '.join(heavy)})" if heavy else ""
    return [
        {
            "name": "gravix --help wall time" + note,
            "value": wall,
            "unit": "s",
            "reference": bare_wall,
            "ratio": wall / bare_wall,
            "target": "< 0.2 s (reference: bare interpreter start)",
            "ok": wall < 0.2,
        },
        {
            "name": "gravix --help CPU time" + note,
            "value": cpu,
            "unit": "s",
            "reference": bare_cpu,
            "ratio": cpu / bare_cpu if bare_cpu else None,
            "target": "< 0.2 s (reference: bare interpreter start)",
            "ok": cpu < 0.2,
        },
    ]


_LABELS = {
    "health": "preset: service health, 1 service, {days} days",
    "top": "preset: top endpoints, 24 hours of {days} days",
    "sql": "SQL: top endpoints by errors, 24 hours of {days} days",
}


def _in_process(case: str, root: Path, days: int) -> list[dict[str, Any]]:
    """The question against DuckDB reading the minute table (the files a user's DuckDB
    reads: the target), and, reported beside it, against DuckDB reading the hour table
    (for SQL, both engines read the hour table)."""
    ours = _run_worker("gravix", case, root, days)
    ref = _run_worker("duckdb", case, root, days)
    hours = _run_worker("duckdb", case, root, days, HOURS)
    ours_hours = _run_worker("gravix", case, root, days, HOURS) if case == "sql" else ours
    for other in (ref, hours, ours_hours):
        if ours["summary"] != other["summary"]:
            raise AssertionError(f"{case}: answers differ: {ours['summary']} vs {other['summary']}")
    name = "in-process " + _LABELS[case].format(days=days)
    ratio = ours["seconds"] / ref["seconds"]
    hour_ratio = ours_hours["seconds"] / hours["seconds"]
    return [
        {
            "name": name,
            "value": ours["seconds"],
            "unit": "s",
            "reference": ref["seconds"],
            "ratio": ratio,
            "target": "ratio ≤ 1.0 vs DuckDB in-process",
            "ok": ratio <= 1.0,
            "peak_rss_mb": round(ours["rss_mb"], 1),
            "reference_peak_rss_mb": round(ref["rss_mb"], 1),
        },
        {
            "name": name
            + (", over request_metrics_hour" if case == "sql" else "")
            + " (vs DuckDB reading request_metrics_hour)",
            "value": ours_hours["seconds"],
            "unit": "s",
            "reference": hours["seconds"],
            "ratio": hour_ratio,
            "target": "(reported)",
            "ok": None,
            "peak_rss_mb": round(ours_hours["rss_mb"], 1),
            "reference_peak_rss_mb": round(hours["rss_mb"], 1),
        },
    ]


def _whole_process(case: str, root: Path, days: int) -> dict[str, Any]:
    gravix = Path(sys.executable).with_name("gravix")
    wall, cpu = _timed([str(gravix), *_gravix_args(case, root, days)], runs=REPEATS)
    code = (
        f"from bench.bench_query import duck_process; duck_process({case!r}, {str(root)!r}, {days})"
    )
    ref_wall, ref_cpu = _timed([sys.executable, "-c", code], runs=REPEATS)
    ratio = wall / ref_wall
    return {
        "name": "process " + _LABELS[case].format(days=days),
        "value": wall,
        "unit": "s",
        "reference": ref_wall,
        "ratio": ratio,
        "target": "ratio ≤ 1.5 vs a DuckDB process",
        "ok": ratio <= 1.5,
        "cpu_s": round(cpu, 3),
        "reference_cpu_s": round(ref_cpu, 3),
        "cpu_ratio": round(cpu / ref_cpu, 3) if ref_cpu else None,
    }


def _month_rows(rows: list[dict[str, Any]], week: int, month: int) -> list[dict[str, Any]]:
    """Each month answer set against the same question's week answer."""
    by_name = {row["name"]: row for row in rows}
    out = []
    for kind in ("in-process ", "process "):
        for case in ("health", "top", "sql"):
            w = by_name[kind + _LABELS[case].format(days=week)]
            m = by_name[kind + _LABELS[case].format(days=month)]
            ratio = m["value"] / w["value"]
            out.append(
                {
                    "name": f"{kind}{case}: {month} days vs {week} days",
                    "value": m["value"],
                    "unit": "s",
                    "reference": w["value"],
                    "ratio": ratio,
                    "target": "ratio ≤ 2.0 vs the week",
                    "ok": ratio <= 2.0,
                }
            )
    return out


def run(quick: bool) -> list[dict[str, Any]]:
    roots = _data_roots(quick)
    rows: list[dict[str, Any]] = []
    for root, days in roots:
        for case in ("health", "top", "sql"):
            rows.extend(_in_process(case, root, days))
    for root, days in roots:
        rows.extend(_whole_process(case, root, days) for case in ("health", "top", "sql"))
    rows.extend(_month_rows(rows, roots[0][1], roots[1][1]))
    rows.extend(_help_rows())
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
