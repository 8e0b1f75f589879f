"""Crash recovery: orphaned buffer files into raw, stray temporaries, unreadable Parquet.

One implementation serves the ingest server (rotation, and recovery at start) and
``gravix recover``. Publishing a sealed buffer file is idempotent: every raw file it
produces has a name derived from the buffer file's id, so a publish redone after a crash
rewrites the same names and never stores a line under two names. The sealed file is
removed only after every raw file is durable.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from gravix import durable, layout, schema
from gravix.errors import GravixError, StorageError

Progress = Callable[[str, int, int], None]

BUFFER_RECOVERY_LOCK = "buffer-recovery"
QUARANTINE_BUFFER = "buffer"
QUARANTINE_PARQUET = "parquet"


# --- reports ------------------------------------------------------------------------------------


@dataclass
class PublishReport:
    """What publishing one sealed buffer file did (or, in a dry run, would do)."""

    topic: str
    source: Path
    file_id: str
    lines: int = 0
    bytes: int = 0
    hours: dict[str, int] = field(default_factory=dict)  # "YYYY-MM-DDTHH" -> lines
    raw_files: list[Path] = field(default_factory=list)
    torn_tail_lines: int = 0
    torn_tail_bytes: int = 0
    damaged_lines: int = 0
    quarantined: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "source": str(self.source),
            "file_id": self.file_id,
            "lines": self.lines,
            "bytes": self.bytes,
            "hours": dict(self.hours),
            "raw_files": [str(p) for p in self.raw_files],
            "torn_tail_lines": self.torn_tail_lines,
            "torn_tail_bytes": self.torn_tail_bytes,
            "damaged_lines": self.damaged_lines,
            "quarantined": str(self.quarantined) if self.quarantined else None,
        }


@dataclass
class BufferRecoveryReport:
    """Orphaned buffer files found and moved into raw."""

    dry_run: bool = False
    activated: list[Path] = field(default_factory=list)  # active files of dead processes
    published: list[PublishReport] = field(default_factory=list)
    skipped_live: list[Path] = field(default_factory=list)  # held by a live process

    @property
    def lines(self) -> int:
        return sum(p.lines for p in self.published)

    @property
    def torn_tail_lines(self) -> int:
        return sum(p.torn_tail_lines for p in self.published)

    @property
    def damaged_lines(self) -> int:
        return sum(p.damaged_lines for p in self.published)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "files": len(self.published),
            "lines": self.lines,
            "torn_tail_lines": self.torn_tail_lines,
            "damaged_lines": self.damaged_lines,
            "quarantined": [str(p.quarantined) for p in self.published if p.quarantined],
            "orphaned_active": [str(p) for p in self.activated],
            "skipped_live": [str(p) for p in self.skipped_live],
            "published": [p.to_dict() for p in self.published],
        }


# --- splitting a buffer file ---------------------------------------------------------------------


class _Probe(msgspec.Struct):
    event_time: str


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}


def _decoder(topic: str) -> msgspec.json.Decoder[Any]:
    # The topic's own struct rejects unknown keys and wrong types in C, which catches most
    # flipped bytes at the cost of one decode; the event hour is all that is needed.
    dec = _DECODERS.get(topic)
    if dec is None:
        dec = _DECODERS[topic] = msgspec.json.Decoder(schema.STRUCTS[topic])
    return dec


@dataclass
class _Split:
    by_hour: dict[layout.Hour, list[bytes]]  # lines without their newline
    lines: int
    good_bytes: int
    bad: list[bytes]  # damaged segments, original bytes, in file order
    torn_tail_lines: int
    torn_tail_bytes: int
    damaged_lines: int


_CANONICAL_TIME = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:[0-5]\d:[0-5]\d\.\d{3}Z")
_DAMAGE = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    UnicodeDecodeError,
    ValueError,
    OverflowError,
    OSError,
)


def split_lines(topic: str, data: bytes) -> _Split:
    """Split buffer content into complete lines (without their newline) by event hour, and
    damaged segments.

    A damaged segment after the last good line is a torn tail (an unfinished write: no
    final newline, zeros, garbage); one before it is damage in the middle of the file."""
    decode = _decoder(topic).decode
    # Canonical times share an hour prefix; each distinct prefix is parsed (and so checked)
    # once, the rest of the time only has to match the canonical pattern.
    prefixes: dict[str, int] = {}
    canonical = _CANONICAL_TIME.fullmatch
    by_index: dict[int, list[bytes]] = {}
    segments = data.split(b"\n")
    # The piece after the last newline is unfinished (empty when the file ends cleanly).
    tail = segments.pop()
    bad_at: list[int] = []
    last_good = -1
    for i, seg in enumerate(segments):
        try:
            stamp = decode(seg).event_time
            index = prefixes.get(stamp[:13]) if canonical(stamp.encode()) else None
            if index is None:
                index = int(schema.parse_time(stamp)[0] // 3600)
                if canonical(stamp.encode()):
                    prefixes[stamp[:13]] = index
        except _DAMAGE:
            bad_at.append(i)
            continue
        group = by_index.get(index)
        if group is None:
            group = by_index[index] = []
        group.append(seg)
        last_good = i
    bad = [segments[i] + b"\n" for i in bad_at]
    torn = [i for i in bad_at if i > last_good]
    damaged = len(bad_at) - len(torn)
    torn_lines = len(torn)
    torn_bytes = sum(len(segments[i]) + 1 for i in torn)
    if tail:
        bad.append(tail)
        torn_lines += 1
        torn_bytes += len(tail)
    by_hour = {
        layout.Hour.of(datetime.fromtimestamp(index * 3600, tz=UTC)): group
        for index, group in sorted(by_index.items())
    }
    lines = len(segments) - len(bad_at)
    good_bytes = sum(map(len, (seg for group in by_index.values() for seg in group))) + lines
    return _Split(by_hour, lines, good_bytes, bad, torn_lines, torn_bytes, damaged)


# --- publishing one sealed file ------------------------------------------------------------------


def _quarantine_target(root: Path, topic: str, sealed: Path) -> tuple[Path, Path | None]:
    """Where the damaged bytes of ``sealed`` go, and an existing copy from an earlier,
    interrupted publish of the same file (so a re-run does not quarantine twice)."""
    name = Path(f"{topic}-{sealed.name}")
    target = layout.quarantine_path(root, QUARANTINE_BUFFER, name)
    existing: Path | None = None
    if target.parent.is_dir():
        suffix = f"-{name.name}"
        with os.scandir(target.parent) as entries:
            for entry in entries:
                if entry.name.endswith(suffix) and entry.is_file(follow_symlinks=False):
                    existing = Path(entry.path)
                    break
    return target, existing


def _try_lock(path: Path) -> int | None:
    """Open ``path`` and take a non-blocking exclusive flock; None if held or gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # The name may have been renamed or removed between open and flock.
    try:
        same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


def _read_fd(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 22)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _plan_publish(
    root: Path, topic: str, sealed: Path, data: bytes
) -> tuple[PublishReport, _Split]:
    parsed = layout.parse_buffer_name(sealed)
    if parsed is None:
        raise GravixError(
            f"{sealed} is not a buffer file name",
            hint="buffer files are named active-<id>.jsonl or sealed-<id>.jsonl",
        )
    file_id = parsed[1]
    split = split_lines(topic, data)
    report = PublishReport(
        topic=topic,
        source=sealed,
        file_id=file_id,
        lines=split.lines,
        bytes=split.good_bytes,
        torn_tail_lines=split.torn_tail_lines,
        torn_tail_bytes=split.torn_tail_bytes,
        damaged_lines=split.damaged_lines,
    )
    for hour, lines in split.by_hour.items():
        report.hours[str(hour)] = len(lines)
        report.raw_files.append(layout.raw_file_path(root, topic, hour, file_id))
    return report, split


def publish_sealed(
    root: Path, topic: str, sealed: Path, *, whole: tuple[layout.Hour, int] | None = None
) -> PublishReport | None:
    """Move one sealed buffer file into raw; None if another process holds it (or it is gone).

    Complete lines go, bytes unchanged, to one raw file per event hour; damaged segments go
    to quarantine and are counted; then the sealed file is removed. The caller must have
    closed (unlocked) its own descriptor of the file first.

    ``whole`` = (hour, lines) is for the process that wrote the file: it knows every line is
    complete, valid and of that one event hour, so the file itself is renamed into raw under
    the name the split would give it (a crash before the rename leaves the sealed file, which
    recovery splits into that same name)."""
    fd = _try_lock(sealed)
    if fd is None:
        return None
    try:
        if whole is not None:
            return _publish_whole(root, topic, sealed, *whole)
        # The file's bytes are dropped once split, so the peak is about twice the file.
        report, split = _plan_publish(root, topic, sealed, _read_fd(fd))
        try:
            for (_hour, lines), target in zip(split.by_hour.items(), report.raw_files, strict=True):
                layout.ensure_inside(root, target.parent)
                durable.atomic_write(target, b"\n".join(lines) + b"\n")
            if split.bad:
                target, existing = _quarantine_target(root, topic, sealed)
                if existing is None:
                    layout.ensure_inside(root, target.parent)
                    durable.atomic_write(target, b"".join(split.bad))
                    existing = target
                report.quarantined = existing
            durable.unlink(sealed)
        except OSError as exc:
            raise _not_moved(sealed, exc) from exc
        return report
    finally:
        os.close(fd)


def _not_moved(sealed: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"could not move {sealed.name} into raw: {exc.strerror or exc}",
        hint="free disk space or fix the file system, then run `gravix recover`; "
        "the buffer file is kept until it is fully in raw",
        errno=exc.errno,
    )


def _publish_whole(
    root: Path, topic: str, sealed: Path, hour: layout.Hour, lines: int
) -> PublishReport:
    parsed = layout.parse_buffer_name(sealed)
    if parsed is None or parsed[0] != "sealed":
        raise GravixError(f"{sealed} is not a sealed buffer file name")
    file_id = parsed[1]
    target = layout.raw_file_path(root, topic, hour, file_id)
    try:
        size = os.stat(sealed, follow_symlinks=False).st_size
        layout.ensure_inside(root, target.parent)
        durable.makedirs(target.parent)
        durable.replace(sealed, target)
    except OSError as exc:
        raise _not_moved(sealed, exc) from exc
    return PublishReport(
        topic=topic,
        source=sealed,
        file_id=file_id,
        lines=lines,
        bytes=size,
        hours={str(hour): lines},
        raw_files=[target],
    )


def _preview(root: Path, topic: str, sealed: Path) -> PublishReport | None:
    """What :func:`publish_sealed` would do, without changing anything."""
    try:
        fd = os.open(sealed, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        report, split = _plan_publish(root, topic, sealed, _read_fd(fd))
    finally:
        os.close(fd)
    if split.bad:
        report.quarantined = _quarantine_target(root, topic, sealed)[0]
    return report


# --- orphans ---------------------------------------------------------------------------------


def _buffer_files(root: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(topic, kind, file_id, path) for every buffer file (symlinks are not followed)."""
    for topic in layout.TOPICS:
        directory = layout.buffer_dir(root, topic)
        if not directory.is_dir() or directory.is_symlink():
            continue
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = Path(entry.path)
            parsed = layout.parse_buffer_name(path)
            if parsed is None or not entry.is_file(follow_symlinks=False):
                continue
            yield topic, parsed[0], parsed[1], path


def _orphans(root: Path) -> list[tuple[str, str, str, Path]]:
    return [
        (topic, kind, file_id, path)
        for topic, kind, file_id, path in _buffer_files(root)
        if kind == "sealed" or not durable.is_locked(path)
    ]


def _live(root: Path, orphans: list[tuple[str, str, str, Path]]) -> list[Path]:
    orphan_paths = {o[3] for o in orphans}
    return [p for _t, k, _f, p in _buffer_files(root) if k == "active" and p not in orphan_paths]


def find_orphans(root: Path) -> list[Path]:
    """Buffer files no live process owns: every sealed file, and active files whose lock is
    free (their process died)."""
    return [path for _topic, _kind, _file_id, path in _orphans(root)]


def _seal_orphan(root: Path, topic: str, file_id: str, active: Path) -> Path | None:
    """Rename a dead process's active file to sealed while holding its lock."""
    fd = _try_lock(active)
    if fd is None:
        return None
    try:
        sealed = layout.sealed_path(root, topic, file_id)
        durable.replace(active, sealed)
        return sealed
    finally:
        os.close(fd)


def recover_buffers(
    root: Path, *, dry_run: bool = False, progress: Progress | None = None
) -> BufferRecoveryReport:
    """Move every orphaned buffer file into raw (see :func:`find_orphans`)."""
    report = BufferRecoveryReport(dry_run=dry_run)
    if dry_run:
        _recover_preview(root, report, progress)
        return report
    lock = durable.FileLock(layout.lock_path(root, BUFFER_RECOVERY_LOCK), "buffer recovery")
    with lock.acquire(wait=True, timeout=120):
        orphans = _orphans(root)
        report.skipped_live.extend(_live(root, orphans))
        total = len(orphans)
        for done, (topic, kind, file_id, path) in enumerate(orphans):
            if progress is not None:
                progress("buffer files", done, total)
            sealed: Path | None = path
            if kind == "active":
                try:
                    sealed = _seal_orphan(root, topic, file_id, path)
                except OSError as exc:
                    raise StorageError(
                        f"could not seal orphaned {path.name}: {exc}", errno=exc.errno
                    ) from exc
                if sealed is None:
                    report.skipped_live.append(path)
                    continue
                report.activated.append(path)
            assert sealed is not None
            published = publish_sealed(root, topic, sealed)
            if published is None:
                if sealed.exists():
                    report.skipped_live.append(sealed)
                continue
            report.published.append(published)
        if progress is not None:
            progress("buffer files", total, total)
    return report


def _recover_preview(root: Path, report: BufferRecoveryReport, progress: Progress | None) -> None:
    orphans = _orphans(root)
    report.skipped_live.extend(_live(root, orphans))
    total = len(orphans)
    for done, (topic, kind, _file_id, path) in enumerate(orphans):
        if progress is not None:
            progress("buffer files", done, total)
        if kind == "active":
            report.activated.append(path)
        preview = _preview(root, topic, path)
        if preview is not None:
            report.published.append(preview)
    if progress is not None:
        progress("buffer files", total, total)


# --- stray temporaries ---------------------------------------------------------------------------


def _writer_alive(path: Path) -> bool:
    """Whether the process that is writing temporary ``path`` (its pid is in the name,
    see :func:`layout.tmp_path`) is still running."""
    stem = path.name[: -len(layout.TMP_SUFFIX)]
    pid_text = stem.rsplit(".", 1)[-1]
    if not pid_text.isdigit():
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "path": str(self.path),
            "error": self.error,
            "hours": [str(h) for h in self.hours],
            "quarantined": str(self.quarantined) if self.quarantined else None,
        }


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
    """None if ``path`` reads as Parquet (its footer; every page with ``deep``), else why not."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pf:
            if deep:
                for group in range(pf.num_row_groups):
                    pf.read_row_group(group)
            elif pf.metadata.num_columns == 0 and pf.metadata.num_rows > 0:
                return "footer lists rows but no columns"
    except (pa.ArrowException, OSError, ValueError, IndexError, EOFError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def _hours_of(root: Path, table: str, path: Path) -> list[layout.Hour]:
    """The hours a warehouse file holds, judged by its name (``part-HH`` or ``part-day``)."""
    day = layout.parse_day_dir(path.parent.name)
    if day is None:
        return []
    if table == layout.SERVICE_EVENTS_DAILY:
        return [layout.Hour(day, h) for h in range(24)]
    stem = path.name[: -len(layout.PARQUET)]
    if stem.startswith("part-") and stem[5:].isdigit() and int(stem[5:]) < 24:
        return [layout.Hour(day, int(stem[5:]))]
    return []


# --- gravix recover ------------------------------------------------------------------------------


@dataclass
class RecoverReport:
    """Everything ``gravix recover`` found and did (or, in a dry run, would do)."""

    root: Path
    dry_run: bool
    deep: bool
    buffers: BufferRecoveryReport
    temporaries: list[Path] = field(default_factory=list)
    parquet_checked: int = 0
    parquet_problems: list[ParquetProblem] = field(default_factory=list)
    rebuild_hours: dict[str, list[layout.Hour]] = field(default_factory=dict)
    not_rebuildable: dict[str, list[layout.Hour]] = field(default_factory=dict)
    rebuilt: list[dict[str, Any]] = field(default_factory=list)  # rollup summaries
    window: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.root),
            "dry_run": self.dry_run,
            "deep": self.deep,
            "buffers": self.buffers.to_dict(),
            "temporaries": [str(p) for p in self.temporaries],
            "parquet_checked": self.parquet_checked,
            "parquet_problems": [p.to_dict() for p in self.parquet_problems],
            "rebuild_hours": {t: [str(h) for h in hs] for t, hs in self.rebuild_hours.items()},
            "not_rebuildable": {t: [str(h) for h in hs] for t, hs in self.not_rebuildable.items()},
            "window": list(self.window) if self.window else None,
            "rebuilt": self.rebuilt,
        }


def _scan_parquet(
    root: Path, report: RecoverReport, progress: Progress | None, *, quarantine: bool
) -> None:
    files = [(t, p) for t in layout.TABLES for p in _parquet_files(root, t)]
    total = len(files)
    for done, (table, path) in enumerate(files):
        if progress is not None:
            progress("checking Parquet", done, total)
        error = check_parquet(path, deep=report.deep)
        report.parquet_checked += 1
        if error is None:
            continue
        problem = ParquetProblem(table, path, error, _hours_of(root, table, path))
        name = Path(f"{table}-{path.parent.name}-{path.name}")
        target = layout.quarantine_path(root, QUARANTINE_PARQUET, name)
        if quarantine:
            layout.ensure_inside(root, target.parent)
            durable.makedirs(target.parent)
            durable.replace(path, target)
            problem.quarantined = target
        report.parquet_problems.append(problem)
    if progress is not None:
        progress("checking Parquet", total, total)


def _plan_rebuild(root: Path, report: RecoverReport) -> None:
    """Hours to rebuild from raw: those of unreadable files, and hours whose output is
    missing though the rollup built it (e.g. quarantined by an interrupted recover)."""
    from gravix import rollup

    wanted: dict[str, set[layout.Hour]] = {}
    for problem in report.parquet_problems:
        wanted.setdefault(problem.table, set()).update(problem.hours)
    for planned in rollup.plan_hours(root):
        if planned.reason == "missing":
            wanted.setdefault(planned.table, set()).add(planned.hour)
    for table, hours in sorted(wanted.items()):
        raw = layout.raw_hours(root, layout.TABLE_SOURCE[table])
        present = {h for h in hours if h in raw and layout.raw_files(raw[h])}
        if table == layout.SERVICE_EVENTS_DAILY:
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
) -> RecoverReport:
    """``gravix recover``: orphaned buffer files → raw; stray temporaries removed; unreadable
    Parquet quarantined and its hours rebuilt from raw; optionally a window rolled up again.

    Safe to interrupt and re-run at any point: each step is idempotent."""
    from gravix import rollup
    from gravix.errors import ConfigError

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(
            f"data root {root} does not exist", hint="pass --data-dir or set GRAVIX_DATA_DIR"
        )
    if (rebuild_start is None) != (rebuild_end is None):
        raise ConfigError(
            "--rebuild needs both --start-time and --end-time",
            hint="e.g. --rebuild --start-time 2026-02-16T10:00:00Z --end-time 2026-02-16T11:00:00Z",
        )
    if rebuild_start is not None and rebuild_end is not None:
        window = (str(rebuild_start), str(rebuild_end))
        _check_window(rebuild_start, rebuild_end)
    else:
        window = None
    buffers = recover_buffers(root, dry_run=dry_run, progress=progress)
    report = RecoverReport(root=root, dry_run=dry_run, deep=deep, buffers=buffers, window=window)
    report.temporaries = find_temporaries(root)
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
        report.rebuilt.append(summary.to_dict())
    if window is not None:
        summary = rollup.run_rollup(
            root=root, start=rebuild_start, end=rebuild_end, progress=progress
        )
        report.rebuilt.append(summary.to_dict())
    return report


def _check_window(start: datetime | str, end: datetime | str) -> None:
    from gravix.errors import ConfigError

    moments = []
    for flag, value in (("--start-time", start), ("--end-time", end)):
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ConfigError(f"{flag} needs a zone", hint="e.g. 2026-02-16T10:00:00Z")
            moments.append(value.timestamp())
            continue
        try:
            moments.append(schema.parse_time(value)[0])
        except (ValueError, OverflowError) as exc:
            raise ConfigError(
                f"{flag} {value!r} is not an RFC 3339 time: {exc}",
                hint="e.g. --start-time 2026-02-16T10:00:00Z",
            ) from None
    if moments[0] >= moments[1]:
        raise ConfigError("--start-time must be before --end-time (the end is exclusive)")
