"""`gravix dashboard` against DuckDB on the same warehouse files, and the page in Chromium.

A data root holding 7 days of facts — one for every minute of 12 services × 15 paths,
1.8M facts, with errors and a lognormal latency spread — is generated once into
``bench-results/cache/`` and rolled up with the real rollup. Two answers are timed, each
for the whole 7 days and all services:

* series — the page's main question: per 1-hour step (168 points, the step the page
  chooses for 7 days), requests, 5xx, 4xx and p50/p95/p99 merged from the histograms of
  ``request_metrics_hour``; and the same at 15-minute steps (672 points, as a user asks
  with ``step=900``), merged from the minute rows;
* endpoints — the endpoints over the 7 days ranked by server errors, with merged
  percentiles: the page's question (the top 10, so only ten endpoints' histograms are
  added) and every endpoint (180 rows, every histogram added).

References, each in its own fresh process, in the same run:

* DuckDB in-process computing the same counts per step or endpoint from the same Parquet
  files (the figure the target is set against), and
* DuckDB computing the counts *and* the merged percentiles (histograms unnested, summed by
  index and read with the same rank rule), the whole answer; and, beside them for the
  answers made of whole hours, DuckDB computing the counts from ``request_metrics_hour``.

"warm" is the median of several calls after one warm-up in the same process: the
dashboard keeps each day's and hour's merged aggregates in memory, keyed by the identity of
its files (``gravix.dashboard.pieces``), as the page's refresh and a second viewer find
them; "no cache" reads and merges every piece again on every call.

"cold" is a started server's first answer: ``gravix dashboard`` is started as a process
(it does its imports and prepares its files before it listens), ``/live`` is polled until
it answers (that touches no data), and the time is that of the first HTTP request for the
answer — with nothing cached, every file read and merged — until its JSON body is in.
Against it, DuckDB's first answer in a fresh process once ``duckdb`` is imported and
connected. Each is the median of three fresh processes. Reported beside it: from process
start to that first answer, imports included, for both.

Every answer is timed twice: on the root as the rollup leaves it (one file per hour and
table, 168 per table), and on a copy whose closed days are joined into one file per day
and table, as the runbook's daily `gravix cleanup` leaves a data root.

Finally the page's first complete render (every panel drawn) in headless Chromium, in a
fresh browser, on the same 7 days.
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

from bench.bench_query import _duck_merged

CACHE = Path("bench-results") / "cache"
SERVICES = tuple(f"svc-{i:02d}" for i in range(12))
PATHS = tuple(
    (m, p)
    for m, p in [
        ("GET", "/"),
        ("GET", "/api/items"),
        ("GET", "/api/items/{id}"),
        ("POST", "/api/items"),
        ("PUT", "/api/items/{id}"),
        ("DELETE", "/api/items/{id}"),
        ("GET", "/api/cart"),
        ("POST", "/api/cart/items"),
        ("POST", "/api/checkout"),
        ("GET", "/api/orders"),
        ("GET", "/api/orders/{id}"),
        ("POST", "/api/payments"),
        ("GET", "/api/search"),
        ("GET", "/health"),
        ("GET", "/static/{asset}"),
    ]
)
END = datetime(2026, 2, 20, 0, 0, tzinfo=UTC)
REPEATS = 5
COLD_RUNS = 3
CHROMIUM = Path("/usr/bin/chromium")


def _uuid7(ms: int, rng: random.Random) -> str:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _build(root: Path, days: int) -> None:
    from gravix import schema
    from gravix.rollup import run_rollup
    from gravix.storage import layout

    rng = random.Random(5)
    start = END - timedelta(days=days)
    for h in range(days * 24):
        hour_start = start + timedelta(hours=h)
        lines: list[str] = []
        for m in range(60):
            minute = hour_start + timedelta(minutes=m)
            for service in SERVICES:
                for method, path in PATHS:
                    moment = minute + timedelta(milliseconds=rng.randrange(60_000))
                    r = rng.random()
                    status = 503 if r < 0.02 else (404 if r < 0.06 else 200)
                    latency = round(rng.lognormvariate(3.2, 0.9), 3)
                    stamp = (
                        moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
                    )
                    lines.append(
                        f'{{"event_id":"{_uuid7(int(moment.timestamp() * 1000), rng)}",'
                        f'"event_time":"{stamp}","service":"{service}","method":"{method}",'
                        f'"path_template":"{path}","status_code":{status},"latency_ms":{latency}}}\n'
                    )
        out = layout.raw_file_path(
            root, schema.REQUEST_FACTS, layout.Hour.of(hour_start), f"b{h:05d}"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(lines))
    run_rollup(root=root)


def _data_root(quick: bool) -> tuple[Path, int]:
    days = 1 if quick else 7
    root = CACHE / f"dashboard-{days}d-{len(SERVICES)}x{len(PATHS)}"
    marker = root / ".complete"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        _build(root, days)
        marker.write_text("ok\n")
    from gravix.rollup import run_rollup

    run_rollup(root=root)  # incremental: builds what a root cached by an older version lacks
    return root, days


# --- DuckDB: the same answers in SQL -------------------------------------------------------------


MINUTES, HOURS = "request_metrics_minute", "request_metrics_hour"


def _step(case: str, days: int) -> int:
    """A series' step: 15 minutes when asked for, else the page's default for the window
    (at most 300 points: an hour for 7 days, 5 minutes for one)."""
    return 900 if case == "series-15m" else 3600 if days == 7 else 300


def _source(root: Path, step: int | None, table: str = MINUTES) -> str:
    from gravix.storage import layout

    glob = layout.warehouse_glob(root, table)
    if step is None:
        return f"read_parquet('{glob}', hive_partitioning = true)"
    return (
        f"(SELECT *, to_timestamp(floor(epoch(bucket_start) / {step}) * {step}) AS t "
        f"FROM read_parquet('{glob}', hive_partitioning = true))"
    )


def _where(since: datetime, until: datetime) -> str:
    last = (until - timedelta(seconds=1)).date()
    return (
        f"event_day BETWEEN DATE '{since.date()}' AND DATE '{last}' "
        f"AND bucket_start >= TIMESTAMPTZ '{since.isoformat()}' "
        f"AND bucket_start < TIMESTAMPTZ '{until.isoformat()}'"
    )


def _duck_sql(
    case: str, full: bool, root: Path, since: datetime, until: datetime, step: int, table: str
) -> str:
    series = case.startswith("series")
    keys = "t" if series else "service, method, path_template"
    source = _source(root, step if series else None, table)
    if full:
        body = _duck_merged(keys, _where(since, until), source, f"t.{keys.replace(', ', ', t.')}")
        order = "t" if series else "errors DESC, requests DESC, service, method, path_template"
        return f"SELECT * FROM ({body}) ORDER BY {order}{_limit(case)}"
    counts = (
        f"SELECT {keys}, sum(request_count) AS requests, sum(error_count) AS errors, "
        f"sum(client_error_count) AS client_errors FROM {source} WHERE {_where(since, until)} "
        "GROUP BY ALL"
    )
    order = "t" if series else "errors DESC, requests DESC, service, method, path_template"
    return f"SELECT * FROM ({counts}) ORDER BY {order}{_limit(case)}"


def _limit(case: str) -> str:
    return " LIMIT 10" if case == "endpoints-top" else ""


# --- the worker: one engine, one question, in a fresh process ----------------------------------


def worker(engine: str, case: str, root_text: str, days: int, cached: bool = False) -> None:
    import resource

    root = Path(root_text)
    since, until, step = END - timedelta(days=days), END, _step(case, days)
    if engine == "gravix":
        from gravix.dashboard import Data
        from gravix.dashboard.params import parse_query

        data = Data(root, cache_size=64 if cached else 0)
        query = parse_query(_params(case, days))

        def call() -> Any:
            return data.endpoints(query) if case.startswith("endpoints") else data.series(query)

        def summary(answer: Any) -> list[int]:
            return _summary(case, answer)
    else:
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")  # stdout carries the result
        table = HOURS if engine == "duckdb-hour" else MINUTES
        sql = _duck_sql(case, engine == "duckdb-full", root, since, until, step, table)

        def call() -> Any:
            return con.execute(sql).fetchall()

        def summary(rows: Any) -> list[int]:
            index = 3 if case.startswith("endpoints") else 1
            return [len(rows), int(sum(r[index] for r in rows))]

    started = time.perf_counter()  # imported and connected: DuckDB is up
    result = call()
    cold = time.perf_counter() - started
    process = _process_age()
    times = []
    for _ in range(REPEATS):
        begun = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - begun)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": statistics.median(times),
                "cold": cold,
                "process": process,
                "rss_mb": rss_mb,
                "summary": summary(result),
            }
        )
    )


def _process_age() -> float:
    """Seconds since this process started (the kernel's start time, 10 ms resolution)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def _params(case: str, days: int) -> dict[str, str]:
    params = {"from": (END - timedelta(days=days)).isoformat(), "to": END.isoformat()}
    if case.startswith("endpoints"):
        params["limit"] = "10" if case == "endpoints-top" else "1000"
    if case == "series-15m":
        params["step"] = "900"
    return params


def _summary(case: str, answer: dict[str, Any]) -> list[int]:
    rows = answer["rows"] if case.startswith("endpoints") else answer["points"]
    return [len(rows), sum(r["requests"] for r in rows)]


def _server_cold(case: str, root: Path, days: int) -> dict[str, Any]:
    """A fresh ``gravix dashboard``: its first answer once it is up, and from its start."""
    import httpx

    from gravix.tools.serverproc import HOST, free_port, server_env

    port = free_port()
    args = [sys.executable, "-m", "gravix", "dashboard", "--data-dir", str(root)]
    begun = time.perf_counter()
    proc = subprocess.Popen(
        [*args, "--host", HOST, "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=server_env(),
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=300.0) as http:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"gravix dashboard did not start ({proc.poll()})")
                try:
                    if http.get("/live").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.01)
            up = time.perf_counter()
            route = "endpoints" if case.startswith("endpoints") else "series"
            response = http.get(f"/api/v1/{route}", params=_params(case, days))
            done = time.perf_counter()
            response.raise_for_status()
            answer = response.json()
    finally:
        proc.terminate()
        proc.wait(30)
    return {"cold": done - up, "process": done - begun, "summary": _summary(case, answer)}


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cold": statistics.median(r["cold"] for r in runs),
        "process": statistics.median(r["process"] for r in runs),
        "summary": runs[0]["summary"],
    }


def _run_worker(
    engine: str, case: str, root: Path, days: int, cached: bool = False
) -> dict[str, Any]:
    code = (
        "from bench.bench_dashboard import worker; "
        f"worker({engine!r}, {case!r}, {str(root)!r}, {days}, {cached!r})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _hour_table_figures(
    case: str, root: Path, days: int, ours: dict[str, Any], cold: dict[str, Any]
) -> list[tuple[str, float, float, str, float | None]]:
    """The same counts by DuckDB from ``request_metrics_hour`` (one row per hour and
    endpoint), beside the reference that reads the minutes: a 15-minute step cannot be
    read from hours, so that series has none."""
    if case.startswith("series") and _step(case, days) % 3600:
        return []
    hours = _run_worker("duckdb-hour", case, root, days)
    hours_cold = _median_of([_run_worker("duckdb-hour", case, root, days) for _ in range(3)])
    if hours["summary"] != ours["summary"]:
        raise AssertionError(f"{case}: answers differ: {ours['summary']} vs {hours['summary']}")
    against = "DuckDB reading request_metrics_hour, same counts"
    return [
        ("warm", ours["seconds"], hours["seconds"], against, None),
        (
            "cold: a started server's first answer once it listens",
            cold["cold"],
            hours_cold["cold"],
            against + ", first answer once connected",
            None,
        ),
    ]


def _compacted(root: Path, days: int) -> Path:
    """The same warehouse with its closed days joined into one file per day and table, as
    the daily `gravix cleanup` of the runbook leaves a data root (raw request facts are not
    copied: the dashboard reads the warehouse, and raw service events for markers)."""
    from gravix import schema
    from gravix.rollup.compact import compact_closed_days
    from gravix.storage import layout

    copy = root.with_name(root.name + "-compacted")
    marker = copy / ".complete"
    if not marker.exists():
        shutil.rmtree(copy, ignore_errors=True)
        for area in (
            layout.warehouse_root(root),
            layout.state_root(root),
            layout.raw_topic_dir(root, schema.SERVICE_EVENTS),
        ):
            if area.exists():
                shutil.copytree(area, copy / area.relative_to(root))
        report = compact_closed_days(copy, today=END.date())
        if not report.days:
            raise AssertionError(f"nothing was compacted in {copy}")
        marker.write_text("ok\n")
    return copy


def _answer_rows(root: Path, days: int, where: str = "") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for case in ("series", "series-15m", "endpoints-top", "endpoints"):
        ours = _run_worker("gravix", case, root, days, cached=True)
        bare = _run_worker("gravix", case, root, days)
        counts = _run_worker("duckdb", case, root, days)
        full = _run_worker("duckdb-full", case, root, days)
        cold = _median_of([_server_cold(case, root, days) for _ in range(COLD_RUNS)])
        duck_cold = _median_of([_run_worker("duckdb", case, root, days) for _ in range(COLD_RUNS)])
        for ref in (counts, full, bare, cold):
            if ours["summary"] != ref["summary"]:
                raise AssertionError(
                    f"{case}: answers differ: {ours['summary']} vs {ref['summary']}"
                )
        name = {
            "endpoints-top": "endpoints, the page's top 10 by server errors",
            "endpoints": "endpoints, every one (180) ranked",
        }.get(case, case)
        if case.startswith("series"):
            step = _step(case, days)
            size = f"{step // 3600}-hour" if step % 3600 == 0 else f"{step // 60}-minute"
            name = f"series, {size} steps" + (" (the default)" if case == "series" else "")
        label = f"dashboard {name}, {days} days, all services{where}"
        figures = [
            ("warm", ours["seconds"], counts["seconds"], "DuckDB, same counts", 1.0),
            ("warm", ours["seconds"], full["seconds"], "DuckDB, counts + merged percentiles", 1.0),
            (
                "no cache, every piece read again",
                bare["seconds"],
                counts["seconds"],
                "DuckDB, same counts",
                None,
            ),
            (
                "no cache, every piece read again",
                bare["seconds"],
                full["seconds"],
                "DuckDB, counts + merged percentiles",
                None,
            ),
            (
                "cold: a started server's first answer once it listens",
                cold["cold"],
                duck_cold["cold"],
                "DuckDB's first answer once connected",
                2.0,
            ),
            (
                "process start to first answer, imports included",
                cold["process"],
                duck_cold["process"],
                "DuckDB, import included",
                None,
            ),
            *_hour_table_figures(case, root, days, ours, cold),
        ]
        for kind, value, reference, against, target in figures:
            ratio = value / reference
            rows.append(
                {
                    "name": f"{label}, {kind} (vs {against})",
                    "value": value,
                    "unit": "s",
                    "reference": reference,
                    "ratio": ratio,
                    "target": f"ratio ≤ {target:g}" if target else "(reported)",
                    "ok": ratio <= target if target else None,
                    "peak_rss_mb": round(ours["rss_mb"], 1),
                }
            )
    return rows


def _render_rows(root: Path, days: int) -> list[dict[str, Any]]:
    """The page's first complete render: a fresh headless Chromium opens the dashboard on
    the 7 days and waits until every panel is drawn."""
    if not CHROMIUM.exists():
        return [{"name": "page render: skipped (apt-get install -y chromium)", "value": None}]
    from playwright.sync_api import sync_playwright

    from gravix.dashboard import running
    from gravix.settings import load_settings

    since = (END - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = END.strftime("%Y-%m-%dT%H:%M:%SZ")
    settings = load_settings(data_dir=root, dashboard_port=0, environ={})
    firsts, warms, timings = [], [], []
    args = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
    with running(settings=settings) as url, sync_playwright() as play:
        for _ in range(3):
            browser = play.chromium.launch(executable_path=str(CHROMIUM), args=args)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            for attempt in range(2):
                started = time.perf_counter()
                page.goto(f"{url}?from={since}&to={until}")
                page.wait_for_selector("body[data-state=ready]", state="attached", timeout=120_000)
                (firsts if attempt == 0 else warms).append(time.perf_counter() - started)
                if attempt == 0:
                    timings.append(page.evaluate("window.gravixTimings"))
            browser.close()
    first, warm = statistics.median(firsts), statistics.median(warms)
    detail = timings[len(timings) // 2]
    note = (
        f" (data {detail['fetched'] / 1000:.2f} s, "
        f"plotly.js parsed {detail['plotlyReady'] / 1000:.2f} s, "
        f"drawn {detail['rendered'] / 1000:.2f} s after navigation)"
    )
    return [
        {
            "name": f"page first complete render, {days} days, fresh browser" + note,
            "value": first,
            "unit": "s",
            "target": "< 1.5 s",
            "ok": first < 1.5,
        },
        {
            "name": f"page render, {days} days, reload (browser cache warm)",
            "value": warm,
            "unit": "s",
            "target": "< 1.5 s",
            "ok": warm < 1.5,
        },
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    root, days = _data_root(quick)
    compacted = _compacted(root, days)
    return (
        _answer_rows(root, days, ", hour files")
        + _answer_rows(compacted, days, ", closed days compacted (after `gravix cleanup`)")
        + _render_rows(root, days)
    )


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
