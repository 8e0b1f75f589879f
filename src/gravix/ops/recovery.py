"""``gravix recover``: orphaned buffer files into raw (through :mod:`gravix.storage.orphans`),
stray temporaries, unreadable Parquet quarantined and its hours rebuilt from raw."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gravix import rollup, schema
from gravix.errors import ConfigError, StorageError
from gravix.ops.store_recovery import StoreRecoverReport, run_store_recover
from gravix.report import to_json
from gravix.settings import DEFAULT_LEASE_SECONDS, StoreConfig
from gravix.storage import durable, guard, layout, links, raw
from gravix.storage.orphans import BufferRecoveryReport, recover_buffers
from gravix.units import parse_time, utc_stamp

Progress = Callable[[str, int, int], None]

QUARANTINE_PARQUET = "parquet"
QUARANTINE_RAW_LINES = "raw-lines"


# --- stray temporaries ---------------------------------------------------------------------------


def _writer_alive(path: Path) -> bool:
    """Whether the process that is writing temporary ``path`` (its pid is in the name,
    see :func:`layout.tmp_path`) is still running."""
    stem = path.name[: -len(layout.TMP_SUFFIX)]
    pid_text = stem.rsplit(".", 1)[-1]
    if not (pid_text.isascii() and pid_text.isdigit()):
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process is not writing while it sweeps
    return durable.pid_alive(pid)


def find_temporaries(root: Path) -> list[Path]:
    """Temporaries under the data root whose writer has died (symlinks not followed)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if layout.is_tmp(path) and not path.is_symlink() and not _writer_alive(path):
                out.append(path)
    return out


# --- Parquet checks -----------------------------------------------------------------------------


@dataclass
class ParquetProblem:
    """A warehouse file that cannot be read, where it went, and which hours it held."""

    table: str
    path: Path
    error: str
    hours: list[layout.Hour] = field(default_factory=list)
    quarantined: Path | None = None


def _parquet_files(root: Path, table: str) -> list[Path]:
    out: list[Path] = []
    for day, directory in layout.warehouse_days(root, table).items():
        del day
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.endswith(layout.PARQUET) and entry.is_file(follow_symlinks=False):
                    out.append(Path(entry.path))
    return sorted(out)


def check_parquet(path: Path, *, deep: bool = False) -> str | None:
    """None if every page of ``path`` reads back with its checksum verified (and, with
    ``deep``, the query engine decodes the whole file too), else why not. A damaged page
    behind an intact footer fails here, not in the middle of a query."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path, page_checksum_verification=True) as pf:
            if pf.metadata.num_columns == 0 and pf.metadata.num_rows > 0:
                return "footer lists rows but no columns"
            for group in range(pf.num_row_groups):
                pf.read_row_group(group)
        if deep:
            pl.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError, IndexError, EOFError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    except pl.exceptions.PolarsError as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


# --- damaged raw lines --------------------------------------------------------------------------


@dataclass
class DamagedRawFile:
    """A raw file holding lines that the rollup and the query skip, and where they went."""

    topic: str
    hour: layout.Hour
    path: Path
    bad_lines: int
    good_lines: int
    quarantined: Path | None = None


def find_damaged_raw(root: Path, progress: Progress | None = None) -> list[DamagedRawFile]:
    """Raw files with damaged lines, judged by :mod:`gravix.storage.raw` exactly as the
    rollup and the query judge them (an hour is read at once; only an hour with bad lines
    is split file by file)."""
    hours = [(t, h, d) for t in schema.TOPICS for h, d in sorted(layout.raw_hours(root, t).items())]
    found: list[DamagedRawFile] = []
    for done, (topic, hour, hour_dir) in enumerate(hours):
        if progress is not None:
            progress("checking raw lines", done, len(hours))
        paths = layout.raw_files(hour_dir)
        if not raw.read_hour_files(topic, hour, paths).bad:
            continue
        for path in paths:
            data, _ = raw.read_bytes([path])
            good, bad = raw.bad_lines(topic, hour, data)
            if bad:
                found.append(DamagedRawFile(topic, hour, path, len(bad), len(good)))
    return found


def quarantine_raw_lines(root: Path, damaged: DamagedRawFile) -> None:
    """Move the damaged lines of one raw file to quarantine: first a durable copy of them
    there, then the raw file replaced atomically by its good lines (or removed when it has
    none). A crash in between leaves the lines in both places, never in neither."""
    links.ensure_inside(root, damaged.path)
    data, _ = raw.read_bytes([damaged.path])
    hour = damaged.hour
    good, bad = raw.bad_lines(damaged.topic, hour, data)
    if not bad:
        return
    name = Path(
        f"{damaged.topic}-{damaged.path.parent.parent.name}-{damaged.path.parent.name}-{damaged.path.name}"
    )
    target = layout.quarantine_path(root, QUARANTINE_RAW_LINES, name)
    durable.makedirs(target.parent)
    durable.atomic_write(target, b"".join(line + b"\n" for line in bad), make_parents=False)
    if good:
        durable.atomic_write(damaged.path, b"".join(line + b"\n" for line in good))
    else:
        durable.unlink(damaged.path)
    damaged.quarantined = target


# --- gravix recover ------------------------------------------------------------------------------


@dataclass
class RecoverReport:
    """Everything ``gravix recover`` found and did (or, in a dry run, would do)."""

    root: Path = field(metadata={"json": "data_dir"})
    dry_run: bool
    deep: bool
    buffers: BufferRecoveryReport
    temporaries: list[Path] = field(default_factory=list)
    raw_damaged: list[DamagedRawFile] = field(default_factory=list)
    parquet_checked: int = 0
    parquet_problems: list[ParquetProblem] = field(default_factory=list)
    rebuild_hours: dict[str, list[layout.Hour]] = field(default_factory=dict)
    not_rebuildable: dict[str, list[layout.Hour]] = field(default_factory=dict)
    rebuilt: list[dict[str, Any]] = field(default_factory=list)  # rollup summaries
    window: tuple[str, str] | None = None


def _scan_parquet(
    root: Path, report: RecoverReport, progress: Progress | None, *, quarantine: bool
) -> None:
    files = [(t, p) for t in schema.WAREHOUSE_TABLES for p in _parquet_files(root, t)]
    total = len(files)
    for done, (table, path) in enumerate(files):
        if progress is not None:
            progress("checking Parquet", done, total)
        error = check_parquet(path, deep=report.deep)
        report.parquet_checked += 1
        if error is None:
            continue
        problem = ParquetProblem(table, path, error, layout.parse_warehouse_file(table, path))
        name = Path(f"{table}-{path.parent.name}-{path.name}")
        target = layout.quarantine_path(root, QUARANTINE_PARQUET, name)
        if quarantine:
            links.ensure_inside(root, target.parent)
            durable.makedirs(target.parent)
            durable.replace(path, target)
            problem.quarantined = target
        report.parquet_problems.append(problem)
    if progress is not None:
        progress("checking Parquet", total, total)


def _plan_rebuild(root: Path, report: RecoverReport) -> None:
    """Hours to rebuild from raw: those of unreadable files, and hours whose output is
    missing though the rollup built it (e.g. quarantined by an interrupted recover). An
    hour of ``request_metrics_hour`` is rebuilt by its minute table's hour task."""

    wanted: dict[str, set[layout.Hour]] = {}
    for problem in report.parquet_problems:
        wanted.setdefault(schema.BUILT_BY[problem.table], set()).update(problem.hours)
    for planned in rollup.plan_hours(root):
        if planned.reason == "missing":
            wanted.setdefault(planned.table, set()).add(planned.hour)
    for table, hours in sorted(wanted.items()):
        raw = layout.raw_hours(root, schema.TABLE_SOURCE[table])
        present = {h for h in hours if h in raw and layout.raw_files(raw[h])}
        if table == schema.SERVICE_EVENTS_DAILY:
            # a day's rows come from every hour of that day: rebuilding any rebuilds all
            days = {h.day for h in hours}
            lost = sorted({layout.Hour(d, 0) for d in days if not any(h.day == d for h in present)})
        else:
            lost = sorted(hours - present)
        if present:
            report.rebuild_hours[table] = sorted(present)
        if lost:
            report.not_rebuildable[table] = lost


def run_recover(
    *,
    root: Path,
    dry_run: bool = False,
    deep: bool = False,
    rebuild_start: datetime | str | None = None,
    rebuild_end: datetime | str | None = None,
    progress: Progress | None = None,
    lock_timeout: float = 600.0,
    store: StoreConfig | None = None,
    node_id: str = "",
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> RecoverReport | StoreRecoverReport:
    """``gravix recover``: orphaned buffer files → raw; stray temporaries removed; unreadable
    Parquet quarantined and its hours rebuilt from raw; optionally a window rolled up again.
    With ``store``: :mod:`gravix.ops.store_recovery`.

    Safe to interrupt and re-run at any point: each step is idempotent."""

    root = Path(root)
    if store is not None:
        if deep or rebuild_start is not None or rebuild_end is not None:
            raise ConfigError(
                "--deep and --rebuild do not apply with --store",
                hint="recover --store reads every Parquet footer the manifests name; to roll "
                "a window up again run `gravix rollup --store … --start-time … --end-time …`",
            )
        return run_store_recover(
            root,
            store,
            dry_run=dry_run,
            progress=progress,
            node_id=node_id,
            lease_seconds=lease_seconds,
            lock_timeout=lock_timeout,
        )
    with guard.guarded(root):
        return _recover(root, dry_run, deep, rebuild_start, rebuild_end, progress, lock_timeout)


def _recover(
    root: Path,
    dry_run: bool,
    deep: bool,
    rebuild_start: datetime | str | None,
    rebuild_end: datetime | str | None,
    progress: Progress | None,
    lock_timeout: float,
) -> RecoverReport:
    if (rebuild_start is None) != (rebuild_end is None):
        raise ConfigError(
            "--rebuild needs both --start-time and --end-time",
            hint="e.g. --rebuild --start-time 2026-02-16T10:00:00Z --end-time 2026-02-16T11:00:00Z",
        )
    if rebuild_start is not None and rebuild_end is not None:
        first = parse_time(rebuild_start, "--start-time")
        last = parse_time(rebuild_end, "--end-time")
        if first >= last:
            raise ConfigError("--start-time must be before --end-time (the end is exclusive)")
        window = (utc_stamp(first), utc_stamp(last))
    else:
        window = None
    buffers = recover_buffers(root, dry_run=dry_run, progress=progress)
    report = RecoverReport(root=root, dry_run=dry_run, deep=deep, buffers=buffers, window=window)
    report.temporaries = find_temporaries(root)
    report.raw_damaged = find_damaged_raw(root, progress)
    if dry_run:
        _scan_parquet(root, report, progress, quarantine=False)
        _plan_rebuild(root, report)
        return report
    try:
        for path in report.temporaries:
            durable.unlink(path)
        # Holding the rollup's lock: no rollup replaces a file while it is checked or moved.
        lock = durable.FileLock(layout.lock_path(root, rollup.LOCK_NAME), "gravix recover")
        with lock.acquire(wait=True, timeout=lock_timeout):
            for damaged in report.raw_damaged:
                quarantine_raw_lines(root, damaged)
            _scan_parquet(root, report, progress, quarantine=True)
            _plan_rebuild(root, report)
    except OSError as exc:
        raise StorageError(
            f"recover stopped: {exc}",
            hint="fix the file system problem and run `gravix recover` again; "
            "it continues where it stopped",
            errno=exc.errno,
        ) from exc
    for table, hours in report.rebuild_hours.items():
        summary = rollup.rebuild_hours(root, table, hours, progress=progress)
        report.rebuilt.append(to_json(summary))
    if window is not None:
        summary = rollup.run_rollup(
            root=root, start=rebuild_start, end=rebuild_end, progress=progress
        )
        report.rebuilt.append(to_json(summary))
    return report
