"""``gravix recover --store``: what a crash can leave in an object store (DESIGN §11), and
the node's own buffer files.

* Buffer files stay on the node's disk: orphaned active files of dead server processes are
  sealed (:func:`gravix.storage.orphans.recover_buffers` with the store), and the node's
  uploader takes every sealed file to the store when its server runs.
* A rollup lease whose holder died before its expiry: taken over (its generation removed)
  and released, so the next rollup starts at once. A live lease is waited for.
* Hours whose manifest and Parquet object disagree: the object is missing, unreadable, or
  holds another number of rows than the manifest recorded (a crash between the PUT of an
  hour's object and the PUT of its manifest). They are rebuilt from raw now, under the
  lease; an hour whose raw objects are gone is reported and left as it is.
* Hours never rolled up, or whose raw objects changed (a manifest that a crash kept from
  being written included), are reported: the next ``gravix rollup --store`` builds them.

Every Parquet object a manifest names is read once to check its footer: this costs a read
of the warehouse, as the Parquet check of ``gravix recover`` on a data root does.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gravix import schema
from gravix.report import to_json
from gravix.rollup.plan import CHANGED, MISSING, NEW
from gravix.rollup.store_plan import StoreView, key, look, plan_store_table
from gravix.rollup.store_run import rebuild_store_hours
from gravix.settings import Settings, StoreConfig
from gravix.storage import layout, lease
from gravix.storage.layout import Hour
from gravix.storage.orphans import BufferRecoveryReport, recover_buffers
from gravix.storage.store import Store, open_store

Progress = Callable[[str, int, int], None]
PURPOSE = "gravix recover"


@dataclass
class HourProblem:
    """An hour whose manifest and Parquet object disagree."""

    table: str
    hour: Hour
    problem: str
    rebuildable: bool


@dataclass
class StoreRecoverReport:
    """What ``gravix recover --store`` found and did (or, in a dry run, would do)."""

    store: str
    data_dir: Path
    dry_run: bool
    buffers: BufferRecoveryReport | None = None  # None: this machine has no buffer
    dead_lease: lease.LeaseState | None = None
    lease_removed: bool = False
    pending: dict[str, list[Hour]] = field(default_factory=dict)
    problems: list[HourProblem] = field(default_factory=list)
    parquet_checked: int = 0
    rebuilt: list[dict[str, Any]] = field(default_factory=list)


def _rows(store: Store, name: str) -> tuple[int | None, str | None]:
    """The row count in an object's Parquet footer, or why it cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(io.BytesIO(store.read(name))).num_rows, None
    except FileNotFoundError:
        return None, "its Parquet object is missing"
    except (pa.ArrowException, OSError) as exc:
        return None, f"its Parquet object is unreadable: {exc}"[:200]


def _check_outputs(store: Store, root: Path, view: StoreView, report: StoreRecoverReport) -> None:
    """Compare every manifest that names an output with that object's footer."""
    footers: dict[str, tuple[int | None, str | None]] = {}
    for table in schema.TABLES:
        wanted = "day_rows" if table == schema.SERVICE_EVENTS_DAILY else "rows"
        raw = view.raw[schema.TABLE_SOURCE[table]]
        for hour, manifest in sorted(view.manifests[table].items()):
            if (
                manifest is None
                or not manifest.get("output")
                or hour in report.pending.get(table, [])
            ):
                continue
            name = key(root, layout.warehouse_outputs(root, table, hour)[0])
            if name not in footers:
                footers[name] = _rows(store, name)
                report.parquet_checked += 1
            rows, error = footers[name]
            if error is None and rows != manifest.get(wanted):
                error = f"its manifest records {manifest.get(wanted)} row(s), its Parquet {rows}"
            if error is not None:
                report.problems.append(HourProblem(table, hour, error, hour in raw))


def _survey(store: Store, root: Path, report: StoreRecoverReport) -> None:
    view = look(store, root, list(schema.TABLES))
    for table in schema.TABLES:
        raw = view.raw[schema.TABLE_SOURCE[table]]
        for planned in plan_store_table(root, view, table):
            if planned.reason in (NEW, CHANGED):
                report.pending.setdefault(table, []).append(planned.hour)
            elif planned.reason == MISSING:
                problem = "its Parquet object is missing"
                report.problems.append(
                    HourProblem(table, planned.hour, problem, planned.hour in raw)
                )
    missing = {(p.table, p.hour) for p in report.problems}
    for table, hours in view.manifests.items():
        for hour in list(hours):
            if (table, hour) in missing:
                del hours[hour]  # already found: its footer is not read again
    _check_outputs(store, root, view, report)


def run_store_recover(
    root: Path,
    config: StoreConfig,
    *,
    dry_run: bool,
    progress: Progress | None,
    node_id: str,
    lease_seconds: float,
    lock_timeout: float,
) -> StoreRecoverReport:
    """See the module docstring; safe to interrupt and run again."""
    report = StoreRecoverReport(store=config.url, data_dir=root, dry_run=dry_run)
    if layout.buffer_root(root).is_dir():
        report.buffers = recover_buffers(
            root, dry_run=dry_run, progress=progress, store_url=config.url
        )
    store = open_store(Settings(data_dir=root, store=config))
    state = lease.current(store)
    if state is not None and not state.released and not state.live(time.time()):
        report.dead_lease = state
    if dry_run:
        _survey(store, root, report)
        return report
    with lease.acquire(
        store, purpose=PURPOSE, node=node_id, seconds=lease_seconds, wait=lock_timeout
    ) as held:
        report.lease_removed = held.took_over is not None
        if held.took_over is not None:
            report.dead_lease = held.took_over
        _survey(store, root, report)
        wanted: dict[str, set[Hour]] = {}
        for problem in report.problems:
            if problem.rebuildable:
                wanted.setdefault(problem.table, set()).add(problem.hour)
        for table, hours in sorted(wanted.items()):
            summary = rebuild_store_hours(root, config, table, sorted(hours), held, progress)
            report.rebuilt.append(to_json(summary))
    return report
