"""The checks of `gravix doctor`: the runbook's troubleshooting list.

Each check is a small function of a :class:`Context` that returns one :class:`CheckResult`
(ok / warn / fail, a one-line detail, and a hint naming the ``gravix`` command that fixes
what it found). Checks only read: they take no lock and write no file. The ingestion
check, which talks to a server, is in :mod:`gravix.ops.probe`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from gravix import schema
from gravix.errors import GravixError
from gravix.ops.retention import plan_cleanup
from gravix.query import run_sql
from gravix.rollup import plan_hours, recent_runs
from gravix.rollup.plan import MISSING, REMOVED
from gravix.settings import Settings
from gravix.storage import durable, guard, layout
from gravix.storage.orphans import find_orphans
from gravix.units import format_size

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


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str
    hint: str = ""


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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _hours_text(hours: Iterable[layout.Hour], limit: int = 3) -> str:
    items = sorted(hours)
    shown = ", ".join(str(h) for h in items[:limit])
    return shown + (f" … (+{len(items) - limit})" if len(items) > limit else "")


# --- checks that need only the layout, durable and the file system ---------------------------


def check_data_root(ctx: Context) -> CheckResult:
    root = ctx.root
    if not root.exists():
        return CheckResult(
            "data root",
            FAIL,
            f"{root} does not exist",
            "pass the data root with --data-dir (or GRAVIX_DATA_DIR); "
            "`gravix ingest-server --data-dir DIR` creates it",
        )
    guard.check_root(root)  # a file, or a symlink under the root: the check fails with it
    areas = [
        p.name
        for p in (layout.buffer_root(root), layout.raw_root(root), layout.warehouse_root(root))
        if p.is_dir()
    ]
    return CheckResult("data root", OK, f"{root.resolve()} ({', '.join(areas) or 'empty'})")


def check_disk(ctx: Context) -> CheckResult:
    usage = shutil.disk_usage(ctx.root)
    floor = ctx.settings.min_free_bytes
    detail = (
        f"{format_size(usage.free)} free of {format_size(usage.total)} (floor {format_size(floor)})"
    )
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
            f"{_plural(len(orphans), 'orphaned buffer file')} ({format_size(size)}) not in raw: "
            f"{names}",
            "run `gravix recover` (an ingest server also recovers them when it starts)",
        )
    return CheckResult(
        "buffer", OK, f"no orphaned files ({_plural(active, 'active file')} held by live servers)"
    )


def check_rollup(ctx: Context) -> CheckResult:
    """Hours the rollup planner would build (``rollup.plan_hours``; raw hours whose files
    are all gone keep their rows and are not a finding)."""
    limit = ctx.now.timestamp() - ctx.limits.rollup_grace.total_seconds()
    pending = [p for p in plan_hours(ctx.root, since_last_run=True) if p.reason != REMOVED]
    # Raw data may wait up to the grace for the next scheduled rollup.
    due = [p for p in pending if p.newest_mtime <= limit or p.reason == MISSING]
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
