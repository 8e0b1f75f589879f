"""`gravix doctor`: the runbook's troubleshooting list, run as checks.

Each check is a small function of a :class:`Context` that returns one
:class:`CheckResult` (ok / warn / fail, a one-line detail, and a hint naming the
``gravix`` command that fixes what it found). :func:`run_doctor` runs them all; a
check that cannot run (a module missing, an unexpected error) becomes a result
instead of an exception, so one broken part never hides the others.

Doctor only reads: it takes no lock, writes no file and sends the server nothing
that is stored (the key check posts an empty batch, which the server refuses).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from gravix import schema
from gravix.errors import GravixError
from gravix.ops.retention import plan_cleanup
from gravix.query import run_sql
from gravix.rollup import read_manifest, recent_runs
from gravix.settings import DEFAULT_URL, Settings
from gravix.storage import durable, layout
from gravix.storage.orphans import find_orphans

Status = Literal["ok", "warn", "fail"]
OK: Status = "ok"
WARN: Status = "warn"
FAIL: Status = "fail"

# The runbook's "Check Trino" query, run through the query layer instead.
CHECK_SQL = "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10"
BAD_LINES_HINT = (
    "damaged raw lines are left out of the metrics; restore those raw files from a backup "
    "if you have one and `gravix rollup` rebuilds the hours (otherwise those lines are lost)"
)
UNAUTHORIZED_HINT = (
    "send the key the server was started with in header `X-API-Key: <your-secret>`; "
    "check API_KEY / GRAVIX_API_KEYS (or --api-key) of `gravix ingest-server`"
)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


@dataclass(frozen=True)
class DoctorReport:
    data_dir: Path
    url: str
    checks: tuple[CheckResult, ...]
    elapsed_s: float

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}

    def by_name(self) -> dict[str, CheckResult]:
        return {c.name: c for c in self.checks}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "data_dir": str(self.data_dir),
            "url": self.url,
            "counts": self.counts(),
            "elapsed_s": round(self.elapsed_s, 3),
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class Thresholds:
    """When a finding turns from normal into a warning or a failure."""

    # No new raw file for this long while facts are expected: warn.
    raw_stale: timedelta = timedelta(minutes=15)
    # Raw data may wait this long for the next (e.g. hourly, cron-driven) rollup.
    rollup_grace: timedelta = timedelta(hours=1)
    # Newest warehouse bucket older than this: warn (no rollup output lately).
    warehouse_stale: timedelta = timedelta(hours=3)
    # Free space under min_free_bytes fails (the server stops being ready); under
    # this multiple of it, warn.
    disk_warn_factor: float = 4.0
    http_timeout_s: float = 2.0


@dataclass(frozen=True)
class Context:
    settings: Settings
    now: datetime
    limits: Thresholds = field(default_factory=Thresholds)

    @property
    def root(self) -> Path:
        return self.settings.data_dir


Check = Callable[[Context], CheckResult]


# --- helpers ---------------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _hours_text(hours: Iterable[layout.Hour], limit: int = 3) -> str:
    items = sorted(hours)
    shown = ", ".join(str(h) for h in items[:limit])
    return shown + (f" … (+{len(items) - limit})" if len(items) > limit else "")


# --- checks that need only the layout, durable and the file system ---------------------------


def check_data_root(ctx: Context) -> CheckResult:
    root = ctx.root
    if not root.is_dir():
        return CheckResult(
            "data root",
            FAIL,
            f"{root} does not exist",
            "pass the data root with --data-dir (or GRAVIX_DATA_DIR); "
            "`gravix ingest-server --data-dir DIR` creates it",
        )
    areas = [
        p.name
        for p in (layout.buffer_root(root), layout.raw_root(root), layout.warehouse_root(root))
        if p.is_dir()
    ]
    return CheckResult("data root", OK, f"{root.resolve()} ({', '.join(areas) or 'empty'})")


def check_disk(ctx: Context) -> CheckResult:
    usage = shutil.disk_usage(ctx.root)
    floor = ctx.settings.min_free_bytes
    detail = f"{_size(usage.free)} free of {_size(usage.total)} (floor {_size(floor)})"
    hint = (
        "free disk space, or delete old partitions with `gravix cleanup --days N`; "
        "the ingest server stops being ready below the floor"
    )
    if usage.free < floor:
        return CheckResult("disk", FAIL, detail, hint)
    if usage.free < floor * ctx.limits.disk_warn_factor:
        return CheckResult("disk", WARN, detail, hint)
    return CheckResult("disk", OK, detail)


def _newest_raw(root: Path, topic: str) -> tuple[int, float | None]:
    """(hour partitions, mtime of the newest raw file): the newest arrival is in the hour
    directory whose entry list changed last, whatever event hour it holds."""
    hours = layout.raw_hours(root, topic)
    if not hours:
        return 0, None
    newest_dir = max(hours.values(), key=_mtime)
    stamps = [_mtime(f) for f in layout.raw_files(newest_dir)]
    return len(hours), max(stamps) if stamps else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile (cleanup, recovery)
        return 0.0


def check_raw(ctx: Context) -> CheckResult:
    count, newest = _newest_raw(ctx.root, schema.REQUEST_FACTS)
    if newest is None:
        return CheckResult(
            "raw",
            WARN,
            "no raw request facts yet",
            "start `gravix ingest-server` and send facts (try `gravix loadgen`); "
            "sealed buffer files reach raw with `gravix recover`",
        )
    age = ctx.now.timestamp() - newest
    detail = f"newest raw file arrived {_ago(age)} ({_plural(count, 'hour partition')})"
    if age > ctx.limits.raw_stale.total_seconds():
        return CheckResult(
            "raw",
            WARN,
            detail,
            "no facts are arriving: check that `gravix ingest-server` runs and clients "
            "reach it (see the ingestion check); rotation moves files into raw every minute",
        )
    return CheckResult("raw", OK, detail)


def _lock_files(root: Path) -> list[Path]:
    base = layout.locks_dir(root)
    if not base.is_dir():
        return []
    return sorted(
        Path(e.path)
        for e in os.scandir(base)
        if e.name.endswith(".lock") and e.is_file(follow_symlinks=False)
    )


def check_locks(ctx: Context) -> CheckResult:
    held: list[str] = []
    dead: list[str] = []
    dead_detail = command = ""
    here = socket.gethostname()
    for path in _lock_files(ctx.root):
        name = path.stem
        if durable.is_locked(path):
            held.append(f"{name} held by {durable.describe_holder(path)}")
            continue
        try:
            info = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            continue
        pid = info.get("pid") if isinstance(info, dict) else None
        if not isinstance(pid, int) or info.get("host", here) != here:
            continue  # cleanly released, or a holder on another host we cannot judge
        if not durable.pid_alive(pid):
            dead.append(name)
            if len(dead) == 1:
                dead_detail = f"{name} lock left by a dead process {durable.describe_holder(path)}"
                command = _lock_command(name, str(info.get("purpose", "")))
    if dead:
        others = f" (and {', '.join(dead[1:])})" if len(dead) > 1 else ""
        return CheckResult(
            "locks",
            WARN,
            f"{dead_detail}, will be taken over{others}",
            f"that run died; run `gravix {command}` again, which takes the lock over",
        )
    if held:
        return CheckResult("locks", OK, "; ".join(held))
    return CheckResult("locks", OK, "no lock held")


def _lock_command(name: str, purpose: str) -> str:
    """The command whose run left a lock: several commands share the rollup lock, and
    their purpose says which one held it."""
    for word, command in (("cleanup", "cleanup"), ("recover", "recover"), ("rollup", "rollup")):
        if word in purpose or word in name:
            return command
    return "recover" if "recovery" in name or "recovery" in purpose else name


# --- checks that use the other modules through their contracts -------------------------------


def check_buffer(ctx: Context) -> CheckResult:
    # A sealed file being published right now is locked by its publisher: not an orphan.
    orphans = [p for p in find_orphans(ctx.root) if not durable.is_locked(p)]
    active = 0
    base = layout.buffer_root(ctx.root)
    if base.is_dir():
        for topic in schema.TOPICS:
            d = layout.buffer_dir(ctx.root, topic)
            if d.is_dir():
                active += sum(
                    1
                    for e in os.scandir(d)
                    if e.name.startswith(layout.ACTIVE_PREFIX) and e.is_file()
                )
    if orphans:
        size = sum(p.stat().st_size for p in orphans if p.exists())
        names = ", ".join(p.name for p in orphans[:2]) + (" …" if len(orphans) > 2 else "")
        return CheckResult(
            "buffer",
            FAIL,
            f"{_plural(len(orphans), 'orphaned buffer file')} ({_size(size)}) not in raw: {names}",
            "run `gravix recover` (an ingest server also recovers them when it starts)",
        )
    return CheckResult(
        "buffer", OK, f"no orphaned files ({_plural(active, 'active file')} held by live servers)"
    )


@dataclass(frozen=True)
class PendingHour:
    table: str
    hour: layout.Hour
    reason: str  # new | changed | missing, as rollup.plan_hours names them
    newest_mtime: float  # when the newest raw file of the hour arrived


def _last_full_plans(root: Path) -> dict[str, float]:
    """Per table, when the latest recorded incremental rollup started (floored to the
    second): that run planned every hour of the table after this moment."""
    out: dict[str, float] = {}
    for run in recent_runs(root, limit=50):  # newest first
        if run.get("mode") != "incremental":
            continue
        try:
            started = datetime.strptime(str(run["started_at"]), "%Y-%m-%dT%H:%M:%SZ")
        except (KeyError, ValueError):
            continue
        for table in run.get("tables") or []:
            out.setdefault(str(table), started.replace(tzinfo=UTC).timestamp())
    return out


def pending_hours(root: Path) -> list[PendingHour]:
    """The hours ``rollup.plan_hours`` would rebuild (apart from ``removed``).

    Raw files enter and leave an hour directory only by rename and unlink, which update
    the directory's mtime. The latest incremental rollup compared every hour with its
    manifest after it started, and rebuilt those that differed; so an hour whose directory
    has not changed since that start, and whose manifest and output exist, is up to date,
    and three ``stat`` calls show it. The other hours are compared file by file with the
    rollup's manifest (``rollup.read_manifest``), as the planner does. On a month of
    minute-rotated raw files this is a small fraction of ``plan_hours``'s walk; a test
    holds the two to the same answer."""
    planned = _last_full_plans(root)
    out: list[PendingHour] = []
    for table in schema.TABLES:
        topic = schema.TABLE_SOURCE[table]
        since = planned.get(table)
        for hour, hour_dir in layout.raw_hours(root, topic).items():
            if since is not None and _unchanged(root, table, hour, hour_dir, since):
                continue
            files: dict[str, int] = {}
            newest = 0.0
            with suppress(FileNotFoundError), os.scandir(hour_dir) as entries:
                for e in entries:
                    if (
                        e.name.endswith(layout.JSONL)
                        and not e.name.startswith(".")
                        and e.is_file(follow_symlinks=False)
                    ):
                        st = e.stat(follow_symlinks=False)
                        files[e.name] = st.st_size
                        newest = max(newest, st.st_mtime)
            if not files:
                continue
            manifest = read_manifest(root, table, hour)
            if manifest is None:
                reason = "new"
            elif manifest.get("files") != files:
                reason = "changed"
            elif int(manifest.get("facts", 0) or 0) > 0 and not _output(root, table, hour).exists():
                reason = "missing"
            else:
                continue
            out.append(PendingHour(table, hour, reason, newest))
    return out


def _unchanged(root: Path, table: str, hour: layout.Hour, hour_dir: Path, since: float) -> bool:
    try:
        if os.stat(hour_dir).st_mtime >= since:
            return False
        os.stat(layout.rollup_manifest_path(root, table, hour))
    except FileNotFoundError:
        return False
    return _output(root, table, hour).exists()


def _output(root: Path, table: str, hour: layout.Hour) -> Path:
    if table == schema.SERVICE_EVENTS_DAILY:
        return layout.warehouse_day_file(root, table, hour.day)
    return layout.warehouse_hour_file(root, table, hour)


def check_rollup(ctx: Context) -> CheckResult:
    limit = ctx.now.timestamp() - ctx.limits.rollup_grace.total_seconds()
    pending = pending_hours(ctx.root)
    # Raw data may wait up to the grace for the next scheduled rollup.
    due = [p for p in pending if p.newest_mtime <= limit or p.reason == "missing"]
    grace = f"{ctx.limits.rollup_grace.total_seconds() / 60:.0f} min"
    if due:
        parts = []
        for reason, text in (
            ("new", "never rolled up"),
            ("changed", "rolled up before late facts arrived"),
            ("missing", "with their Parquet output missing"),
        ):
            hours = {p.hour for p in due if p.reason == reason}
            if hours:
                parts.append(f"{_plural(len(hours), 'hour')} {text} ({_hours_text(hours)})")
        return CheckResult(
            "rollup",
            FAIL,
            "; ".join(parts),
            "run `gravix rollup` (incremental: it recomputes exactly these hours)",
        )
    if pending:
        waiting = len({p.hour for p in pending})
        return CheckResult(
            "rollup",
            OK,
            f"{_plural(waiting, 'hour')} with fresh raw data waiting for the next rollup "
            f"(< {grace})",
        )
    return CheckResult("rollup", OK, "every raw hour is rolled up")


def check_bad_lines(ctx: Context) -> CheckResult:
    runs: list[dict[str, Any]] = list(recent_runs(ctx.root, limit=10))
    if not runs:
        return CheckResult("bad lines", OK, "no rollup run recorded yet")
    total = sum(int(r.get("bad_lines") or 0) for r in runs)
    detail = f"{total} bad raw lines skipped in the last {_plural(len(runs), 'rollup run')}"
    if not total:
        return CheckResult("bad lines", OK, detail)
    hours: dict[str, int] = {}
    for run in runs:
        by_hour = run.get("bad_lines_by_hour")
        if isinstance(by_hour, dict):
            for key, count in by_hour.items():
                hours[str(key)] = hours.get(str(key), 0) + int(count or 0)
    worst = sorted(hours.items(), key=lambda kv: -kv[1])[:2]
    if worst:
        detail += (
            " ("
            + ", ".join(f"{k.split()[-1]}: {n}" for k, n in worst)
            + (", …)" if len(hours) > 2 else ")")
        )
    return CheckResult("bad lines", WARN, detail, BAD_LINES_HINT)


def _parquet_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for table in schema.TABLES:
        for day_dir in layout.warehouse_days(root, table).values():
            with suppress(FileNotFoundError), os.scandir(day_dir) as entries:
                files.extend(
                    Path(e.path)
                    for e in entries
                    if e.name.endswith(layout.PARQUET)
                    and not e.name.startswith(".")
                    and e.is_file(follow_symlinks=False)
                )
    return files


def _newest_hour_file(root: Path) -> Path | None:
    table = schema.REQUEST_METRICS_MINUTE
    for day_dir in reversed(layout.warehouse_days(root, table).values()):
        names = sorted(e.name for e in os.scandir(day_dir) if layout.is_hour_file(e.name))
        if names:
            return day_dir / names[-1]
    return None


def check_warehouse(ctx: Context) -> CheckResult:
    import polars as pl

    files = _parquet_files(ctx.root)
    if not files:
        return CheckResult(
            "warehouse",
            WARN,
            "no Parquet files yet",
            "run `gravix rollup` to build the warehouse from raw",
        )
    base = layout.warehouse_root(ctx.root)
    expected = set(schema.REQUEST_METRICS_COLUMNS)
    metrics_dir = layout.warehouse_table_dir(ctx.root, schema.REQUEST_METRICS_MINUTE)
    broken: list[str] = []
    # Every footer is read (what a query needs first); the newest hour file, the one
    # dashboards show, is decoded in full below.
    for path in files:
        try:
            columns = set(pl.read_parquet_schema(path))
        except (OSError, pl.exceptions.PolarsError) as exc:
            if path.exists():  # else removed meanwhile by cleanup or recovery
                broken.append(f"{path.relative_to(base)} ({str(exc).splitlines()[0][:60]})")
            continue
        if metrics_dir in path.parents and not expected <= columns:
            missing = ", ".join(sorted(expected - columns)[:3])
            broken.append(f"{path.relative_to(base)} (columns missing: {missing})")
    newest: datetime | None = None
    newest_file = _newest_hour_file(ctx.root)
    if newest_file is not None and not broken:
        try:
            value = pl.read_parquet(newest_file)["bucket_start"].max()
        except (OSError, pl.exceptions.PolarsError) as exc:
            broken.append(f"{newest_file.relative_to(base)} ({str(exc).splitlines()[0][:60]})")
        else:
            if isinstance(value, datetime):
                newest = value if value.tzinfo else value.replace(tzinfo=UTC)
    if broken:
        return CheckResult(
            "warehouse",
            FAIL,
            f"{_plural(len(broken), 'unusable Parquet file')} of {len(files)}: {broken[0]}"
            + (" …" if len(broken) > 1 else ""),
            "run `gravix recover --deep` to quarantine them and rebuild those hours from raw",
        )
    if newest is None:
        return CheckResult("warehouse", OK, f"{_plural(len(files), 'Parquet file')} readable")
    age = (ctx.now - newest).total_seconds()
    detail = (
        f"{_plural(len(files), 'Parquet file')} readable; newest bucket "
        f"{newest:%Y-%m-%d %H:%M} UTC ({_ago(age)})"
    )
    if age > ctx.limits.warehouse_stale.total_seconds():
        return CheckResult(
            "warehouse",
            WARN,
            detail,
            "no recent metrics: run `gravix rollup` (and see the raw check)",
        )
    return CheckResult("warehouse", OK, detail)


def check_query(ctx: Context) -> CheckResult:
    if not layout.warehouse_days(ctx.root, schema.REQUEST_METRICS_MINUTE):
        return CheckResult(
            "query",
            WARN,
            "nothing to query yet: request_metrics_minute has no partitions",
            "run `gravix rollup` so request_metrics_minute has data",
        )
    try:
        frame = run_sql(ctx.root, CHECK_SQL)
    except GravixError as exc:
        hint = exc.hint or ""
        if not hint or "gravix doctor" in hint:  # we are the doctor: name the fix itself
            hint = (
                "if the warehouse check fails too, `gravix recover --deep` rebuilds the damaged "
                f'files; otherwise see `gravix query "{CHECK_SQL}"`'
            )
        return CheckResult("query", FAIL, f"check query failed: {exc.message[:160]}", hint)
    rows = int(frame.height)
    if rows == 0:
        return CheckResult(
            "query",
            WARN,
            "check query returned no rows",
            "run `gravix rollup` so request_metrics_minute has data",
        )
    return CheckResult("query", OK, f"check query returned {_plural(rows, 'row')}")


def _plan_count(plan: Any) -> tuple[int, int]:
    """(raw, warehouse) day partitions a cleanup plan would delete; its bookkeeping
    partitions follow those and are not counted."""
    areas = [str(getattr(p, "area", "")) for p in getattr(plan, "partitions", [])]
    return areas.count("raw"), areas.count("warehouse")


def check_retention(ctx: Context) -> CheckResult:
    days = ctx.settings.retention_days
    wdays = ctx.settings.warehouse_retention_days
    plan = plan_cleanup(ctx.root, days=days, warehouse_days=wdays, today=ctx.now.date())
    raw, wh = _plan_count(plan)
    limits = f"raw {days} d, warehouse {wdays} d"
    if raw or wh:
        parts = ([f"{_plural(raw, 'raw partition')}"] if raw else []) + (
            [f"{_plural(wh, 'warehouse partition')}"] if wh else []
        )
        return CheckResult(
            "retention",
            WARN,
            f"{' and '.join(parts)} older than the retention ({limits})",
            f"run `gravix cleanup --days {days} --warehouse-days {wdays}` (daily, e.g. from cron)",
        )
    return CheckResult("retention", OK, f"nothing older than the retention ({limits})")


# --- ingestion --------------------------------------------------------------------------------


def _refused(url: str, timeout: float) -> str | None:
    """Why nothing accepts a TCP connection at ``url``'s address, or None if something
    does: the common "no server" answer without loading an HTTP client."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # let the HTTP client report what is wrong with it
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None


def check_ingestion(ctx: Context) -> CheckResult:
    url = ctx.settings.url
    configured = url != DEFAULT_URL
    start_hint = "start it with `gravix ingest-server` (or pass the right --url)"
    reason = _refused(url, ctx.limits.http_timeout_s)
    if reason is None:
        import httpx

        try:
            with httpx.Client(base_url=url, timeout=ctx.limits.http_timeout_s) as client:
                live = client.get("/live")
                ready = client.get("/ready")
                keys = _key_results(client, ctx.settings.api_keys)
        except httpx.HTTPError as exc:
            reason = str(exc).splitlines()[0][:80] or type(exc).__name__
    if reason is not None:
        if not configured:
            return CheckResult(
                "ingestion",
                WARN,
                f"no server configured; none answers at {url} ({reason})",
                "pass --url (or GRAVIX_URL) to check a running `gravix ingest-server`",
            )
        return CheckResult("ingestion", FAIL, f"no answer from {url} ({reason})", start_hint)
    if live.status_code != 200:
        return CheckResult("ingestion", FAIL, f"{url}/live answered {live.status_code}", start_hint)
    if ready.status_code != 200:
        return CheckResult(
            "ingestion",
            FAIL,
            f"{url} is live but not ready ({ready.status_code}: {_error_text(ready)})",
            "the server's buffer is not writable or its disk is below the floor: free space "
            "(`gravix cleanup` deletes old partitions) and check its data directory",
        )
    if not keys:
        return CheckResult(
            "ingestion",
            WARN,
            f"{url} is live and ready; no API key given, so not checked",
            "pass --api-key (or set API_KEY) to check the key clients send",
        )
    rejected = [i for i, code in enumerate(keys) if code == 401]
    odd = [code for code in keys if code not in (200, 400, 401)]
    if rejected:
        which = "the API key" if len(keys) == 1 else f"{len(rejected)} of {len(keys)} API keys"
        return CheckResult(
            "ingestion",
            FAIL,
            f"{url} is live and ready but rejects {which} (401 Unauthorized)",
            UNAUTHORIZED_HINT,
        )
    if odd:
        return CheckResult(
            "ingestion",
            WARN,
            f"{url} is live and ready; the key probe answered {odd[0]}",
            "check the server log of `gravix ingest-server`",
        )
    return CheckResult("ingestion", OK, f"{url} is live and ready and accepts the API key")


def _error_text(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    text = body.get("error") if isinstance(body, dict) else None
    return str(text or response.text.strip() or response.reason_phrase)[:120]


def _key_results(client: Any, keys: tuple[str, ...]) -> list[int]:
    # An empty batch proves the key is accepted (400 "none accepted", not 401) and
    # stores nothing.
    return [
        client.post(
            "/api/v1/facts/batch",
            content=b"[]",
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        ).status_code
        for key in keys
    ]


# --- running ----------------------------------------------------------------------------------

CHECKS: tuple[tuple[str, Check], ...] = (
    ("ingestion", check_ingestion),
    ("buffer", check_buffer),
    ("disk", check_disk),
    ("raw", check_raw),
    ("rollup", check_rollup),
    ("bad lines", check_bad_lines),
    ("warehouse", check_warehouse),
    ("query", check_query),
    ("retention", check_retention),
    ("locks", check_locks),
)


def _run_check(name: str, check: Check, ctx: Context) -> CheckResult:
    try:
        return check(ctx)
    except GravixError as exc:
        return CheckResult(name, FAIL, exc.message, exc.hint or "")
    except Exception as exc:  # a check that breaks is itself a finding, never a crash
        return CheckResult(
            name,
            FAIL,
            f"check could not run: {type(exc).__name__}: {exc}"[:200],
            "report this with the output of `gravix doctor --json`",
        )


def run_doctor(
    *,
    settings: Settings,
    now: datetime | None = None,
    thresholds: Thresholds | None = None,
    only: Iterable[str] | None = None,
) -> DoctorReport:
    """Run every check (or those named in ``only``) against ``settings.data_dir`` and
    ``settings.url``; never raises for what it finds."""
    started = time.perf_counter()
    ctx = Context(
        settings=settings, now=now or datetime.now(UTC), limits=thresholds or Thresholds()
    )
    wanted = set(only) if only is not None else None
    results: list[CheckResult] = []
    root_result = _run_check("data root", check_data_root, ctx)
    results.append(root_result)
    for name, check in CHECKS:
        if wanted is not None and name not in wanted:
            continue
        if root_result.status == FAIL and name != "ingestion":
            continue
        results.append(_run_check(name, check, ctx))
    return DoctorReport(
        data_dir=settings.data_dir,
        url=settings.url,
        checks=tuple(results),
        elapsed_s=time.perf_counter() - started,
    )


__all__ = [
    "CHECKS",
    "CHECK_SQL",
    "CheckResult",
    "Context",
    "DoctorReport",
    "Thresholds",
    "run_doctor",
]
