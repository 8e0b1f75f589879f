"""``gravix rollup --store``: the rollup of :mod:`gravix.rollup.run` when raw/, warehouse/
and the rollup's manifests and runs log live in an object store (DESIGN §11).

The semantics are those of DESIGN §7, on the same object names: an hour is rebuilt when its
raw object set (names and sizes) differs from its manifest; its Parquet object is replaced
by one PUT; the manifest follows the output. One rollup runs at a time per store, under a
lease (:mod:`gravix.storage.lease`) taken before planning, renewed while the run lasts and
checked before each hour's result is accepted; a run that has lost it stops.

The hours of request_metrics_minute run as tasks of the executor, each in a private work
directory (:mod:`gravix.rollup.store_build`): under the data root for the local pool, in
the worker's own local directory on a Dask cluster, whose workers then need nothing but
the store. A store does not take the local compaction of closed days (it renames
directories): hour objects stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path

from gravix import schema
from gravix.rollup.build import HourResult
from gravix.rollup.executor import Executor, HourTask, open_executor
from gravix.rollup.plan import REQUESTED, PlannedHour
from gravix.rollup.runlog import append_run
from gravix.rollup.store_build import (
    build_store_event_day,
    keep_removed_on_store,
    store_for,
    sweep_work_dirs,
    work_dir,
)
from gravix.rollup.store_plan import StoreView, key, look, plan_store_table, store_window_plan
from gravix.rollup.summary import Progress, RollupSummary, SortedPlan, Ticker, run_document
from gravix.settings import StoreConfig
from gravix.storage import guard, layout, lease
from gravix.storage.layout import Hour
from gravix.storage.store import Store

PURPOSE = "gravix rollup"


def _execute(
    root: Path,
    config: StoreConfig,
    view: StoreView,
    plan: list[PlannedHour],
    progress: Progress | None,
    runner: Executor,
    held: lease.Lease,
) -> list[HourResult]:
    store = store_for(config)
    results: list[HourResult] = []
    tick, work = Ticker(progress, len(plan)), SortedPlan.of(plan)
    for planned in work.removed:
        held.check()
        results.append(keep_removed_on_store(root, store, planned, view.outputs))
        tick(f"{planned.table} {planned.hour}")
    hourly, daily = work.hourly, work.daily
    built: list[HourResult] = []
    for result in runner.run([HourTask(root, (p,), store=config) for p in hourly]):
        held.check()  # a run that lost its lease accepts no more hours
        built.append(result)
        tick(f"{result.table} {result.hour}")
    results.extend(sorted(built, key=lambda r: r.hour))
    for day, hours in sorted(daily.items()):
        held.check()
        label = f"{schema.SERVICE_EVENTS_DAILY} {day.isoformat()}"
        results.extend(build_store_event_day(root, store, day, hours, partial(tick, label)))
    return results


def _record_run(root: Path, store: Store, summary: RollupSummary) -> None:
    """Append the run to the store's runs log (read, extended, written back whole)."""
    with work_dir(root) as work:
        path = layout.rollup_runs_path(work)
        path.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            path.write_bytes(store.read(key(work, path)))
        append_run(work, run_document(summary))
        store.write(key(work, path), path.read_bytes())


Planner = Callable[[StoreView], list[PlannedHour]]


def run_under_lease(
    root: Path,
    config: StoreConfig,
    summary: RollupSummary,
    planner: Planner,
    held: lease.Lease,
    progress: Progress | None = None,
    executor: str | Executor | None = None,
) -> RollupSummary:
    """Plan with ``planner`` over one look at the store, build, record the run; the caller
    holds the lease."""
    runner = open_executor(executor)
    store = store_for(config)
    started = time.perf_counter()
    sweep_work_dirs(root)
    view = look(store, root, summary.tables)
    plan = planner(view)
    summary.hours = _execute(root, config, view, plan, progress, runner, held)
    summary.seconds = time.perf_counter() - started
    held.check()
    _record_run(root, store, summary)
    return summary


def run_store_rollup(
    root: Path,
    config: StoreConfig,
    summary: RollupSummary,
    progress: Progress | None,
    executor: str | Executor | None,
    *,
    node_id: str,
    lease_seconds: float,
) -> RollupSummary:
    """``gravix rollup --store``: incremental, or the window of ``summary``."""
    open_executor(executor)  # a bad spec is refused before the lease is taken

    def planner(view: StoreView) -> list[PlannedHour]:
        if summary.mode == "window":
            plan, summary.hours_without_raw = store_window_plan(
                view, summary.tables, summary.start, summary.end
            )
            return plan
        return [p for t in summary.tables for p in plan_store_table(root, view, t)]

    with guard.guarded(root, create=True):
        store = store_for(config)
        with lease.acquire(store, purpose=PURPOSE, node=node_id, seconds=lease_seconds) as held:
            return run_under_lease(root, config, summary, planner, held, progress, executor)


def rebuild_store_hours(
    root: Path,
    config: StoreConfig,
    table: str,
    hours: list[Hour],
    held: lease.Lease,
    progress: Progress | None = None,
) -> RollupSummary:
    """Rebuild the given hours of ``table`` from the store's raw objects (recover), under
    the caller's lease."""
    summary = RollupSummary(mode="rebuild", tables=[table])

    def planner(view: StoreView) -> list[PlannedHour]:
        return [PlannedHour(table, h, REQUESTED) for h in sorted(set(hours))]

    return run_under_lease(root, config, summary, planner, held, progress)
