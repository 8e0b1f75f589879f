"""Building hours whose raw objects, Parquet objects and manifests live in an object store
(DESIGN §11), with the very code that builds them under a data root.

A task copies the raw objects it reads into a private work directory on the local disk
(``state/work/<pid>-<token>/``, a small data root of its own), builds there exactly as
:mod:`gravix.rollup.build` does, then puts what the build wrote into the store under the
same names: every warehouse file first (each object replaced by one PUT: readers see the
old object or the new, never neither), then, for an hour left without rows, the removal
of its old object (its own: an hour object, or the daily table's day), and the manifests
last. A task that dies before its manifests are in
the store leaves the hour planned again, as on a data root; the work directory goes when
the task ends, and one left by a killed process is swept by the next run. Disk and memory
stay bounded by the hours in flight.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date
from functools import cache
from pathlib import Path

from gravix import schema
from gravix.rollup.build import HourResult, build_event_day, build_request_hour, keep_removed
from gravix.rollup.plan import MISSING, PlannedHour
from gravix.rollup.store_plan import key
from gravix.settings import Settings, StoreConfig
from gravix.storage import durable, layout
from gravix.storage.layout import Hour
from gravix.storage.store import Store, open_store


@cache
def store_for(config: StoreConfig) -> Store:
    """One store client per process and store (a worker builds many hours)."""
    return open_store(Settings(store=config))


@contextmanager
def work_dir(root: Path) -> Iterator[Path]:
    """A fresh private work directory under the data root, removed afterwards."""
    work = layout.store_work_dir(root, f"{os.getpid()}-{secrets.token_hex(6)}")
    durable.makedirs(work)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sweep_work_dirs(root: Path) -> int:
    """Remove the work directories of processes that died (their pid leads the name)."""
    base = layout.store_work_dir(root)
    if not base.is_dir():
        return 0
    removed = 0
    for entry in os.scandir(base):
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not durable.pid_alive(int(pid)) and not entry.is_symlink():
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


def fetch(store: Store, work: Path, prefix: str) -> int:
    """Copy every object under ``prefix`` into ``work`` under its own name; the bytes."""
    # an object gone since it was listed is not part of the build
    return sum(_copy(store, work, info.key) for info in store.list(prefix))


def _copy(store: Store, work: Path, name: str) -> int:
    """Copy object ``name`` into ``work`` under its own name; its bytes (0 when the store
    no longer holds it)."""
    try:
        data = store.read(name)
    except FileNotFoundError:
        return 0
    path = layout.object_path(work, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def _fetch_raw(store: Store, work: Path, topic: str, hour: Hour) -> None:
    fetch(store, work, key(work, layout.raw_hour_dir(work, topic, hour)) + "/")


def publish(store: Store, work: Path) -> list[str]:
    """Put what a build wrote under ``work`` into the store: the warehouse files of every
    table, then the removal of the old output of an hour built without rows, then the
    manifests. The object names written."""
    written: list[str] = []
    for table in schema.WAREHOUSE_TABLES:
        for directory in layout.warehouse_days(work, table).values():
            for path in sorted(directory.iterdir()):
                if path.name.endswith(layout.PARQUET) and not layout.is_tmp(path):
                    store.write(key(work, path), path.read_bytes())
                    written.append(key(work, path))
    manifests = [
        (table, hour, path)
        for table in schema.TABLES
        for hour, path in sorted(layout.manifest_hours(work, table).items())
    ]
    for table, hour, _path in manifests:
        for out in schema.TABLE_OUTPUTS[table]:
            own = layout.table_outputs(work, out, hour)[0]  # never a compacted day's file
            if not own.exists():
                store.delete(key(work, own))
    for _table, _hour, path in manifests:
        store.write(key(work, path), path.read_bytes())
        written.append(key(work, path))
    return written


def build_store_hours(
    root: Path, config: StoreConfig, hours: tuple[PlannedHour, ...]
) -> list[HourResult]:
    """Build hours of request_metrics_minute from the store into the store (a task of the
    executor, in a worker process or in the rollup's own)."""
    store = store_for(config)
    results: list[HourResult] = []
    for planned in hours:
        with work_dir(root) as work:
            _fetch_raw(store, work, schema.REQUEST_FACTS, planned.hour)
            if planned.reason == MISSING:
                _fetch_minutes(store, work, planned.hour)
            results.append(build_request_hour(work, planned))
            publish(store, work)
            _name_objects(work, results[-1:])
    return results


def _fetch_minutes(store: Store, work: Path, hour: Hour) -> None:
    """The hour's minute rows, for an hour whose hour-table object is missing: the build
    then adds only that object, from the raw objects or, when retention removed them, from
    these rows (never an empty rebuild that would remove the minute rows too)."""
    for path in layout.table_outputs(work, schema.REQUEST_METRICS_MINUTE, hour):
        _copy(store, work, key(work, path))


def _name_objects(work: Path, results: list[HourResult]) -> None:
    """Report outputs by their object names (the work directory is about to go)."""
    for result in results:
        if result.output is not None:
            result.output = Path(key(work, result.output))


def build_store_event_day(
    root: Path,
    store: Store,
    day: date,
    planned: dict[Hour, PlannedHour],
    report: Callable[[], None],
) -> list[HourResult]:
    """One day of service_events_daily: every raw hour of that day is fetched (the day's
    rows come from all of them), built as on a data root, and published."""
    with work_dir(root) as work:
        topic = schema.SERVICE_EVENTS
        fetch(store, work, key(work, layout.raw_day_dir(work, topic, day)) + "/")
        results = build_event_day(work, day, planned, report)
        publish(store, work)
        _name_objects(work, results)
    return results


def keep_removed_on_store(
    root: Path, store: Store, planned: PlannedHour, outputs: set[str]
) -> HourResult:
    """An hour whose raw objects are all gone: its rows stay, and its manifest is rewritten
    with an empty file set, by :func:`gravix.rollup.build.keep_removed` itself (which is
    shown the hour's manifest and which of its outputs the store holds)."""
    with work_dir(root) as work:
        manifest = layout.rollup_manifest_path(work, planned.table, planned.hour)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            manifest.write_bytes(store.read(key(work, manifest)))
        for path in layout.warehouse_outputs(work, planned.table, planned.hour):
            if key(work, path) in outputs:  # a stand-in: only its name is read
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
        result = keep_removed(work, planned)
        store.write(key(work, manifest), manifest.read_bytes())
        _name_objects(work, [result])
    return result
