"""The buffer's files on disk: opening an active file under its lock, appending to it with
one write and one fdatasync (rolled back on failure), sealing it at rotation, and
publishing a sealed file into raw. :class:`gravix.ingest.buffer.TopicBuffer` decides when
and reports; this module does each step."""

from __future__ import annotations

import contextlib
import errno as errno_mod
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gravix.errors import DurabilityLost, StorageError
from gravix.storage import durable, layout
from gravix.storage.publish import publish_sealed


@dataclass
class Active:
    file_id: str
    path: Path
    fd: int
    size: int = 0
    lines: int = 0
    first_line_at: float | None = None  # monotonic time of the first append
    # Event hours (since the epoch) of the durable lines, None once an append did not say;
    # when there is exactly one, rotation renames the whole file into raw, unsplit.
    hours: set[int] | None = field(default_factory=set)


@dataclass(frozen=True)
class Sealed:
    path: Path
    hours: frozenset[int] | None
    lines: int


def publish(root: Path, topic: str, sealed: Sealed) -> int | None:
    """Move one sealed file into raw; lines published, or None if another process has it."""
    whole = None
    if sealed.hours is not None and len(sealed.hours) == 1:
        (hour,) = sealed.hours
        whole = (layout.Hour.of_epoch_hour(hour), sealed.lines)
    report = publish_sealed(root, topic, sealed.path, whole=whole)
    return None if report is None else report.lines


def open_active(root: Path, topic: str) -> Active:
    """Create a new active file that is locked from the moment it has its name: it is
    created under a temporary name, locked, then renamed into place, so recovery can
    never mistake a live file for an orphan."""
    file_id = layout.new_file_id()
    path = layout.active_path(root, topic, file_id)
    durable.makedirs(path.parent)
    tmp = layout.tmp_path(path)
    fd = durable.open_append(tmp)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        durable.replace(tmp, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Active(file_id=file_id, path=path, fd=fd)


def seal(root: Path, topic: str, active: Active, close_on_error: bool) -> None:
    """Rename active → sealed while still holding the flock, then release it."""
    sealed = layout.sealed_path(root, topic, active.file_id)
    try:
        if active.size == 0:  # nothing to publish: removed while still locked
            durable.unlink(active.path)
        else:
            durable.replace(active.path, sealed)
    except BaseException:
        if close_on_error:
            os.close(active.fd)
        raise
    os.close(active.fd)


def write_synced(active: Active, data: bytes, on_write_error: Callable[[OSError], None]) -> float:
    """One write and one fdatasync of ``data``; the seconds the fdatasync took. A failed
    write is rolled back to the durable size and raised as StorageError (``on_write_error``
    hears of it first); a failed fsync is DurabilityLost."""
    try:
        durable.write_all(active.fd, data, active.path)
    except OSError as exc:
        on_write_error(exc)
        try:
            # A partial write must not leave half a line behind the durable part.
            os.ftruncate(active.fd, active.size)
        except OSError as trunc_exc:
            raise DurabilityLost(
                f"could not roll back a failed write to {active.path.name}: {trunc_exc.strerror}"
            ) from trunc_exc
        raise StorageError(
            f"write to {active.path.name} failed: {exc.strerror}", errno=exc.errno
        ) from exc
    started = time.perf_counter()
    try:
        durable.fsync_fd(active.fd, active.path)
    except OSError as exc:
        # Never retried: after a failed fsync the kernel may have dropped the dirty
        # pages and a second fsync could report success for data that is gone.
        raise DurabilityLost(
            f"fsync of {active.path.name} failed: {exc.strerror}", errno=exc.errno
        ) from exc
    active.size += len(data)
    return time.perf_counter() - started


def fresh_error(error: BaseException) -> StorageError:
    """A fresh exception per waiting request (one instance must not be raised in many
    tasks at once: tracebacks would pile up on it)."""
    if isinstance(error, StorageError):
        return type(error)(error.message, hint=error.hint, errno=error.errno)
    return StorageError(str(error))


def is_no_space(error: BaseException) -> bool:
    return isinstance(error, StorageError) and error.errno == errno_mod.ENOSPC
