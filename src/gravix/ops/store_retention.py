"""Retention on an object store (DESIGN §11): the cutoffs and partitions of
:mod:`gravix.ops.retention`, judged by the event day in each object's name, so that a store
and a data root holding the same days lose the same days.

Cleanup deletes under the store's rollup lease (:mod:`gravix.storage.lease`), waiting for
a running rollup as it waits for the lock on a data root, and plans again once it holds
it. Closed days are not compacted on a store: compaction swaps directories, which a store
does not have, and an hour object is already one GET; hour objects stay.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from gravix import schema
from gravix.ops.partitions import (
    RAW,
    STATE,
    WAREHOUSE,
    CleanupPlan,
    CleanupReport,
    Partition,
    Progress,
)
from gravix.storage import layout, lease
from gravix.storage.store import Store

PURPOSE = "gravix cleanup"


def _partitions(
    store: Store, area: str, name: str, prefix: str, cutoff: date, plan: CleanupPlan
) -> None:
    """The objects under ``prefix`` whose ``event_day=`` is before ``cutoff``, by day."""
    by_day: dict[date, Partition] = {}
    for info in store.list(prefix):
        day = layout.parse_day_dir(info.key[len(prefix) :].split("/", 1)[0])
        if day is None or day >= cutoff:
            continue
        where = Path(prefix + layout.day_dir_name(day))
        partition = by_day.setdefault(day, Partition(area, name, day, where))
        partition.files.append(Path(info.key))
        partition.bytes += info.size
    plan.partitions.extend(by_day[day] for day in sorted(by_day))


def plan_store_cleanup(
    store: Store, root: Path, *, days: int, warehouse_days: int, today: date | None = None
) -> CleanupPlan:
    """Every partition of the store older than the cutoffs, as
    :func:`gravix.ops.retention.plan_cleanup` finds them under a data root."""
    plan = CleanupPlan(
        root=root,
        today=today or datetime.now(UTC).date(),
        days=days,
        warehouse_days=warehouse_days,
        store=store.url,
    )

    def prefix(directory: Path) -> str:
        return layout.object_key(root, directory) + "/"

    for topic in schema.TOPICS:
        _partitions(store, RAW, topic, layout.raw_object_prefix(topic), plan.raw_cutoff, plan)
    for table in schema.WAREHOUSE_TABLES:
        where = prefix(layout.warehouse_table_dir(root, table))
        _partitions(store, WAREHOUSE, table, where, plan.warehouse_cutoff, plan)
    for table in schema.TABLES:
        where = prefix(layout.rollup_state_dir(root, table))
        _partitions(store, STATE, table, where, plan.warehouse_cutoff, plan)
    return plan


def run_store_cleanup(
    store: Store,
    root: Path,
    *,
    days: int,
    warehouse_days: int,
    dry_run: bool,
    progress: Progress | None,
    today: date | None,
    node_id: str,
    lease_seconds: float,
    lock_timeout: float,
) -> CleanupReport:
    """Plan, then (unless ``dry_run``) delete the objects, holding the store's lease."""
    if dry_run:
        plan = plan_store_cleanup(
            store, root, days=days, warehouse_days=warehouse_days, today=today
        )
        return CleanupReport(plan=plan, dry_run=True)
    with lease.acquire(
        store, purpose=PURPOSE, node=node_id, seconds=lease_seconds, wait=lock_timeout
    ) as held:
        plan = plan_store_cleanup(
            store, root, days=days, warehouse_days=warehouse_days, today=today
        )
        report = CleanupReport(plan=plan, dry_run=False)
        total = len(plan.partitions)
        for done, partition in enumerate(plan.partitions):
            if progress is not None:
                progress(f"{partition.area}/{partition.name}", done, total)
            held.check()
            for name in partition.files:
                store.delete(str(name))
                report.deleted_files += 1
            report.deleted_bytes += partition.bytes
        if progress is not None:
            progress("partitions", total, total)
    return report
