"""Rollup: raw facts → the warehouse tables of DESIGN §6, under the semantics of §7.

The unit of work is one hour of event time for one table. An hour's input is every raw
file of its partition; facts are de-duplicated by ``event_id`` within the hour (an event's
hour is fixed by its ``event_time``, so every copy of it lands in the same hour).

``request_metrics_minute`` has one Parquet file per hour (``part-HH.parquet``), written to
a temporary sibling and renamed over the old one: a reader sees the hour's old rows or its
new rows, never none and never both.

``service_events_daily`` has one row per (event_day, service, event_type), so it has one
file per day (``part-day.parquet``). When any hour of a day needs work, the whole day is
recomputed: each raw hour of the day is read, de-duplicated and aggregated on its own, and
only those small per-hour aggregates are combined into the day's rows, so memory stays
bounded by the largest hour. The day file is replaced atomically as above.

After an hour's output is durable its manifest (``state/rollup/<table>/…/hour=HH.json``)
records the raw files (names and sizes) it was built from. A crash between output and
manifest only leaves the hour planned again, and recomputing from the same files gives
the same rows. With no window, :func:`run_rollup` is incremental: it rebuilds exactly the
hours whose raw file set differs from their manifest.

An hour whose raw files are all gone (raw retention is shorter than the warehouse's) is
planned as ``removed``: its warehouse rows are kept, and its manifest is rewritten with an
empty file set so it is not planned again. (A later rebuild of a ``service_events_daily``
day can only count the hours of that day whose raw files remain.)

One rollup runs at a time per data root (``FileLock(lock_path(root, LOCK_NAME))``); the
lock is held by :func:`run_rollup` and :func:`rebuild_hours`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import date, datetime
from functools import partial
from pathlib import Path

from gravix import schema
from gravix.rollup.build import HourResult, build_event_day, keep_removed
from gravix.rollup.executor import Executor, HourTask, open_executor
from gravix.rollup.plan import (
    REQUESTED,
    PlannedHour,
    choose_tables,
    plan_table,
    window_plan,
)
from gravix.rollup.runlog import append_run, recent_runs
from gravix.rollup.store_run import run_store_rollup
from gravix.rollup.summary import (
    Progress,
    RollupSummary,
    SortedPlan,
    Ticker,
    new_summary,
    run_document,
)
from gravix.settings import DEFAULT_LEASE_SECONDS, StoreConfig
from gravix.storage import durable, guard, layout
from gravix.storage.layout import Hour

LOCK_NAME = "rollup"


def _hour_tasks(root: Path, hours: list[PlannedHour]) -> list[HourTask]:
    """One task per hour, but one per compacted day for the hours of such a day: they
    rewrite the day's one file, so they must not run at the same time in two workers.
    (Compaction runs under the rollup lock, so which days are compacted holds for the run.)"""
    tasks: list[HourTask] = []
    by_day: dict[date, list[PlannedHour]] = {}
    for planned in hours:
        if any(
            layout.warehouse_day_file(root, table, planned.hour.day).exists()
            for table in schema.TABLE_OUTPUTS[planned.table]
        ):
            by_day.setdefault(planned.hour.day, []).append(planned)
        else:
            tasks.append(HourTask(root, (planned,)))
    tasks.extend(HourTask(root, tuple(day)) for day in by_day.values())
    return tasks


def _execute(
    root: Path, plan: list[PlannedHour], progress: Progress | None, executor: Executor
) -> list[HourResult]:
    results: list[HourResult] = []
    tick, work = Ticker(progress, len(plan)), SortedPlan.of(plan)
    for planned in work.removed:
        results.append(keep_removed(root, planned))
        tick(f"{planned.table} {planned.hour}")
    hourly, daily = work.hourly, work.daily
    built: list[HourResult] = []
    for result in executor.run(_hour_tasks(root, hourly)):  # in the order they finish
        built.append(result)
        tick(f"{result.table} {result.hour}")
    results.extend(sorted(built, key=lambda r: r.hour))
    for day, hours in sorted(daily.items()):
        label = f"{schema.SERVICE_EVENTS_DAILY} {day.isoformat()}"
        results.extend(build_event_day(root, day, hours, partial(tick, label)))
    return results


# --- runs log -------------------------------------------------------------------------------


def _record_run(root: Path, summary: RollupSummary) -> None:
    append_run(root, run_document(summary))


# --- entry points ---------------------------------------------------------------------------


def _sweep_temporaries(root: Path, tables: Iterable[str]) -> None:
    """Temporaries left by a killed run (we hold the lock, so none is in use)."""
    for table in tables:
        outputs = [layout.warehouse_table_dir(root, out) for out in schema.TABLE_OUTPUTS[table]]
        for base in (*outputs, layout.rollup_state_dir(root, table)):
            if not base.is_dir():
                continue
            for dirpath, _dirs, names in os.walk(base):
                for name in names:
                    path = Path(dirpath) / name
                    if layout.is_tmp(path):
                        durable.unlink(path)


def _lock(root: Path, purpose: str) -> durable.FileLock:
    guard.check_root(root)
    return durable.FileLock(layout.lock_path(root, LOCK_NAME), purpose).acquire()


def run_rollup(
    *,
    root: Path,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    tables: Iterable[str] | str | None = None,
    progress: Progress | None = None,
    executor: str | Executor | None = None,
    store: StoreConfig | None = None,
    node_id: str = "",
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> RollupSummary:
    """``gravix rollup``: with a window, rebuild every hour it touches (widened to whole
    hours); without one, rebuild exactly the hours whose raw file set changed. The hours
    of request_metrics_minute run on ``executor`` (``local`` or ``dask://HOST:PORT``).
    With ``store`` the raw objects, the tables and the manifests are in that object store
    (:mod:`gravix.rollup.store_run`), and ``root`` holds only the work directories."""
    summary = new_summary(tables, start, end)
    if store is not None:
        return run_store_rollup(
            root, store, summary, progress, executor, node_id=node_id, lease_seconds=lease_seconds
        )
    chosen = summary.tables
    runner = open_executor(executor)
    windowed = summary.mode == "window"
    started = time.perf_counter()
    with guard.explain_permissions(root):
        lock = _lock(root, "gravix rollup")
        try:
            _sweep_temporaries(root, chosen)
            if windowed:
                plan, summary.hours_without_raw = window_plan(
                    root, chosen, summary.start, summary.end
                )
            else:
                plan = [p for t in chosen for p in plan_table(root, t)]
            summary.hours = _execute(root, plan, progress, runner)
            summary.seconds = time.perf_counter() - started
            _record_run(root, summary)
        finally:
            lock.release()
    return summary


def rebuild_hours(
    root: Path,
    table: str,
    hours: list[Hour],
    progress: Progress | None = None,
    executor: str | Executor | None = None,
) -> RollupSummary:
    """Rebuild the given hours of ``table`` from raw (e.g. after recovery quarantined a
    corrupt Parquet file). Takes the rollup lock."""
    (table,) = choose_tables(table)
    summary = RollupSummary(mode="rebuild", tables=[table])
    started = time.perf_counter()
    with guard.explain_permissions(root):
        lock = _lock(root, "rebuild hours")
        try:
            _sweep_temporaries(root, [table])
            plan = [PlannedHour(table, h, REQUESTED) for h in sorted(set(hours))]
            summary.hours = _execute(root, plan, progress, open_executor(executor))
            summary.seconds = time.perf_counter() - started
            _record_run(root, summary)
        finally:
            lock.release()
    return summary


__all__ = [
    "LOCK_NAME",
    "HourResult",
    "PlannedHour",
    "RollupSummary",
    "rebuild_hours",
    "recent_runs",
    "run_rollup",
]
