"""Retention: delete raw and warehouse partitions whose event day is older than N days,
then compact the closed days that remain (:mod:`gravix.rollup.compact`: a day of hour files
becomes one file).

A partition is judged by the date in its directory name (``event_day=YYYY-MM-DD``), never
by file times. The buffer is never touched. Symlinks are never followed: one found where a
partition or file should be is reported and left in place. Cleanup holds the rollup's lock
while it deletes and compacts, so it never touches a partition a rollup is writing.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

from gravix import schema
from gravix.errors import ConfigError, StorageError, UnsafePath
from gravix.ops.partitions import (
    RAW,
    STATE,
    WAREHOUSE,
    CleanupPlan,
    CleanupReport,
    Partition,
    Progress,
)
from gravix.ops.store_retention import run_store_cleanup
from gravix.rollup.compact import closed_days, compact_closed_days
from gravix.settings import DEFAULT_LEASE_SECONDS, Settings, StoreConfig
from gravix.storage import durable, guard, layout, links
from gravix.storage.store import open_store

# The lock every rollup run holds (gravix.rollup.LOCK_NAME); taking it keeps cleanup and a
# rollup from working on the same partitions at the same time.
ROLLUP_LOCK = "rollup"
DEFAULT_LOCK_TIMEOUT = 600.0


def _walk(partition: Partition, skipped: list[tuple[Path, str]]) -> None:
    """Fill in the files and directories under a partition, never following a symlink."""
    stack = [partition.path]
    dirs: list[Path] = []
    while stack:
        directory = stack.pop()
        dirs.append(directory)
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = Path(entry.path)
                if entry.is_symlink():
                    skipped.append((path, "symlink (not followed, left in place)"))
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                else:
                    partition.files.append(path)
                    partition.bytes += entry.stat(follow_symlinks=False).st_size
    # Children were pushed after their parents, so reversed order is deepest first.
    partition.dirs = dirs[::-1]


def _day_partitions(
    root: Path,
    area: str,
    name: str,
    base: Path,
    cutoff: date,
    plan: CleanupPlan,
) -> None:
    if base.is_symlink():
        plan.skipped.append((base, "symlink (not followed, left in place)"))
        return
    if not base.is_dir():
        return
    try:
        links.ensure_inside(root, base)
    except UnsafePath:
        plan.skipped.append((base, "resolves outside the data root"))
        return
    with os.scandir(base) as entries:
        found = sorted(entries, key=lambda e: e.name)
    for entry in found:
        day = layout.parse_day_dir(entry.name)
        if day is None or day >= cutoff:
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            plan.skipped.append((path, "symlink (not followed, left in place)"))
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        partition = Partition(area, name, day, path)
        _walk(partition, plan.skipped)
        plan.partitions.append(partition)


def _check_days(days: int, warehouse_days: int) -> None:
    for flag, value in (("--days", days), ("--warehouse-days", warehouse_days)):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if warehouse_days < days:
        # An incremental rollup rebuilds metrics whose raw facts are still there, so metrics
        # kept for less time than raw would come back after every cleanup.
        raise ConfigError(
            f"--warehouse-days ({warehouse_days}) is shorter than --days ({days})",
            hint="keep warehouse metrics at least as long as raw facts (--warehouse-days ≥ "
            "--days); the rollup would rebuild deleted metrics from the raw facts kept",
        )


def plan_cleanup(
    root: Path, *, days: int, warehouse_days: int, today: date | None = None
) -> CleanupPlan:
    """Every partition older than the cutoffs: raw by ``days``, warehouse (and the rollup's
    records of it) by ``warehouse_days``."""
    _check_days(days, warehouse_days)
    root = Path(root)
    plan = CleanupPlan(
        root=root,
        today=today or datetime.now(UTC).date(),
        days=days,
        warehouse_days=warehouse_days,
    )
    for topic in schema.TOPICS:
        _day_partitions(root, RAW, topic, layout.raw_topic_dir(root, topic), plan.raw_cutoff, plan)
    for table in schema.WAREHOUSE_TABLES:
        _day_partitions(
            root,
            WAREHOUSE,
            table,
            layout.warehouse_table_dir(root, table),
            plan.warehouse_cutoff,
            plan,
        )
    # A day's rollup records go with its metrics: while metrics outlive their raw facts the
    # records tell the rollup that the input was removed on purpose.
    for table in schema.TABLES:
        _day_partitions(
            root, STATE, table, layout.rollup_state_dir(root, table), plan.warehouse_cutoff, plan
        )
    plan.compact = [(t, d) for t, d in closed_days(root, plan.today) if d >= plan.warehouse_cutoff]
    return plan


# --- applying ---------------------------------------------------------------------------------


def _apply(plan: CleanupPlan, report: CleanupReport, progress: Progress | None) -> None:
    total = len(plan.partitions)
    for done, partition in enumerate(plan.partitions):
        if progress is not None:
            progress(f"{partition.area}/{partition.name}", done, total)
        for path in partition.files:
            try:
                size = os.stat(path, follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
            # One directory fsync per directory (below) instead of one per file.
            durable.unlink(path, sync_dir=False)
            report.deleted_files += 1
            report.deleted_bytes += size
        for directory in partition.dirs:
            if durable.rmdir_if_empty(directory):
                report.removed_dirs += 1
            elif directory.is_dir():
                durable.fsync_dir(directory)
    if progress is not None:
        progress("partitions", total, total)


def run_cleanup(
    *,
    root: Path,
    days: int,
    warehouse_days: int,
    dry_run: bool = False,
    progress: Progress | None = None,
    today: date | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    store: StoreConfig | None = None,
    node_id: str = "",
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> CleanupReport:
    """Plan, then (unless ``dry_run``) delete, holding the rollup lock while deleting.
    With ``store`` the partitions are that object store's, deleted under its rollup lease
    (:mod:`gravix.ops.store_retention`)."""
    root = Path(root)
    _check_days(days, warehouse_days)
    if store is not None:
        return run_store_cleanup(
            open_store(Settings(data_dir=root, store=store)),
            root,
            days=days,
            warehouse_days=warehouse_days,
            dry_run=dry_run,
            progress=progress,
            today=today,
            node_id=node_id,
            lease_seconds=lease_seconds,
            lock_timeout=lock_timeout,
        )
    with guard.guarded(root):
        return _cleanup(root, days, warehouse_days, dry_run, progress, today, lock_timeout)


def _cleanup(
    root: Path,
    days: int,
    warehouse_days: int,
    dry_run: bool,
    progress: Progress | None,
    today: date | None,
    lock_timeout: float,
) -> CleanupReport:
    if dry_run:
        plan = plan_cleanup(root, days=days, warehouse_days=warehouse_days, today=today)
        return CleanupReport(plan=plan, dry_run=True)
    lock = durable.FileLock(layout.lock_path(root, ROLLUP_LOCK), "cleanup")
    with lock.acquire(wait=True, timeout=lock_timeout):
        # Planned under the lock, so it sees what the rollup it waited for has written.
        plan = plan_cleanup(root, days=days, warehouse_days=warehouse_days, today=today)
        report = CleanupReport(plan=plan, dry_run=False)
        try:
            _apply(plan, report, progress)
            report.compacted = compact_closed_days(root, today=plan.today)
        except OSError as exc:
            raise StorageError(
                f"cleanup stopped: {exc}",
                hint="fix the file system problem and run `gravix cleanup` again; "
                "it continues where it stopped",
                errno=exc.errno,
            ) from exc
    return report
