"""Orphaned buffer files: files no live process owns (every sealed file, and active files
whose flock is free because their process died), sealed and published into raw through
:mod:`gravix.storage.publish`. The ingest server runs this at start; ``gravix recover``
runs it too."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from gravix import schema
from gravix.errors import ConfigError, StorageError
from gravix.storage import durable, layout
from gravix.storage.publish import PublishReport, preview, publish_sealed, try_lock

Progress = Callable[[str, int, int], None]

BUFFER_RECOVERY_LOCK = "buffer-recovery"


@dataclass
class BufferRecoveryReport:
    """Orphaned buffer files found and moved into raw."""

    JSON_EXTRA: ClassVar[tuple[str, ...]] = (
        "files",
        "lines",
        "torn_tail_lines",
        "damaged_lines",
        "quarantined",
    )

    dry_run: bool = False
    # active files of dead processes
    activated: list[Path] = field(default_factory=list, metadata={"json": "orphaned_active"})
    published: list[PublishReport] = field(default_factory=list)
    skipped_live: list[Path] = field(default_factory=list)  # held by a live process

    @property
    def files(self) -> int:
        return len(self.published)

    @property
    def quarantined(self) -> list[Path]:
        return [p.quarantined for p in self.published if p.quarantined]

    @property
    def lines(self) -> int:
        return sum(p.lines for p in self.published)

    @property
    def torn_tail_lines(self) -> int:
        return sum(p.torn_tail_lines for p in self.published)

    @property
    def damaged_lines(self) -> int:
        return sum(p.damaged_lines for p in self.published)


# --- orphans ---------------------------------------------------------------------------------


def _buffer_files(root: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(topic, kind, file_id, path) for every buffer file (symlinks are not followed)."""
    for topic in schema.TOPICS:
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
    fd = try_lock(active)
    if fd is None:
        return None
    try:
        sealed = layout.sealed_path(root, topic, file_id)
        durable.replace(active, sealed)
        return sealed
    finally:
        os.close(fd)


def _check_mode(root: Path, store_url: str | None, dry_run: bool) -> None:
    """A data root whose sealed files go to a store is marked so: publishing them into the
    local raw instead (a server started without --store, ``gravix recover``) would keep them
    from the store for good, so that is refused."""
    marker = layout.store_marker_path(root)
    try:
        marked = json.loads(marker.read_bytes()).get("store")
    except FileNotFoundError:
        marked = None
    except (OSError, ValueError, AttributeError):
        marked = "an object store"
    if store_url is None and marked is not None:
        raise ConfigError(
            f"the buffer files under {root} belong to an ingest node that uploads to {marked}",
            hint=f"start `gravix ingest-server --store {marked}` on it, which uploads them; to "
            f"keep this data root local from now on, remove {marker} first",
        )
    if store_url is not None and marked != store_url and not dry_run:
        durable.atomic_write(marker, json.dumps({"store": store_url}).encode())


def recover_buffers(
    root: Path,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    store_url: str | None = None,
) -> BufferRecoveryReport:
    """Move every orphaned buffer file into raw (see :func:`find_orphans`). With a
    ``store_url`` (an ingest node with a store), orphaned active files are only sealed: the
    node's uploader takes every sealed file to the store."""
    _check_mode(root, store_url, dry_run)
    seal_only = store_url is not None
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
            if seal_only:
                continue
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
        planned = preview(root, topic, path)
        if planned is not None:
            report.published.append(planned)
    if progress is not None:
        progress("buffer files", total, total)
