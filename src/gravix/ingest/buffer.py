"""The group-commit appender of one topic, and rotation of its active file into raw.

Requests hand their canonical lines to :meth:`TopicBuffer.append` and wait. One writer
task takes every waiting request's lines, appends them in one write, calls fdatasync
once, then answers them all: a request is answered only after its lines are on disk.
A caller that has already gathered a group (the server's single-event path) can instead
write it at once with :meth:`TopicBuffer.write_now` while the writer is idle.

The writer owns the active file ``buffer/<topic>/active-<id>.jsonl`` and holds an
exclusive flock on it while the process lives, so a file whose lock is free is an
orphan that recovery may take. Rotation decides when: the file steps themselves (open
under a lock, seal to ``sealed-<id>.jsonl``, publish into raw) are in
:mod:`gravix.ingest.files`.

Failures: a failed write is rolled back to the last durable size (no half line stays)
and reported as :class:`StorageError`; the buffer then refuses appends for a short
back-off. A failed fsync is :class:`DurabilityLost`: the buffer refuses everything from
then on and never retries the fsync; the owner is told through ``on_fatal`` and must exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gravix.errors import DurabilityLost, StorageError
from gravix.ingest.files import (
    Active,
    Sealed,
    fresh_error,
    is_no_space,
    open_active,
    publish,
    seal,
    write_synced,
)
from gravix.ingest.observer import BufferObserver, BufferState, CommitStats
from gravix.storage import durable, layout

log = logging.getLogger("gravix.ingest.buffer")

STORAGE_BACKOFF_SECONDS = 1.0
PUBLISH_RETRY_SECONDS = 5.0
# A sealed file whose lock a reader holds is tried again this soon; at a graceful close
# it is waited for this long at most (then the next start or `gravix recover` publishes it).
LOCKED_RETRY_SECONDS = 0.2
CLOSE_PUBLISH_WAIT_SECONDS = 5.0


@dataclass
class _Pending:
    data: bytes
    events: int
    hours: frozenset[int] | None
    requests: int
    future: asyncio.Future[None]


class TopicBuffer:
    """Group-commit appender for one topic in one process."""

    def __init__(
        self,
        root: Path,
        topic: str,
        *,
        rotate_seconds: float,
        rotate_bytes: int,
        observer: BufferObserver | None = None,
        upload: Callable[[str, Sealed], None] | None = None,
    ) -> None:
        """``upload``, on a node with a store, takes each sealed file instead of publishing
        it into the local raw."""
        self.root = root
        self._upload = upload
        self.topic = topic
        self.rotate_seconds = rotate_seconds
        self.rotate_bytes = rotate_bytes
        self.observer = observer or BufferObserver()
        self.rotations = 0
        self.failed: BaseException | None = None
        self.storage_error: str | None = None
        self._retry_at = 0.0
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._active: Active | None = None
        self._writer: asyncio.Task[None] | None = None
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"gravix-{topic}")
        self._sealed: list[Sealed] = []  # rotated, publish not yet done
        self._publishing: set[asyncio.Task[None]] = set()
        self._next_publish_retry = 0.0
        self._rotating = False  # a rotation is awaiting its file operations

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._active = await loop.run_in_executor(self._io, open_active, self.root, self.topic)
        except OSError as exc:
            raise StorageError(
                f"cannot open a buffer file under {layout.buffer_dir(self.root, self.topic)}: "
                f"{exc.strerror}",
                hint="check that the data directory is writable and has space",
                errno=exc.errno,
            ) from exc
        self._writer = asyncio.create_task(self._run(), name=f"gravix-writer-{self.topic}")

    async def close(self, *, rotate: bool = True) -> None:
        """Drain waiting requests, then (unless the buffer failed) seal and publish the
        active file. After a fatal error the file is left as it is, for recovery."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        active, self._active = self._active, None
        loop = asyncio.get_running_loop()
        if active is not None:
            if rotate and self.failed is None:
                try:
                    await loop.run_in_executor(self._io, seal, self.root, self.topic, active, False)
                    self._after_seal(active, "shutdown")
                except OSError as exc:
                    log.error(
                        "%s: could not seal %s at shutdown: %s",
                        self.topic,
                        active.path.name,
                        exc.strerror,
                    )
                    os.close(active.fd)
            else:
                os.close(active.fd)
        await self._publish_before_close()
        self._io.shutdown(wait=True)

    async def _publish_before_close(self) -> None:
        """Publish what is sealed; a file whose lock a reader holds for a moment is waited
        for (bounded), so a graceful stop leaves nothing in buffer/ for the next start."""
        if self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)
        deadline = time.monotonic() + CLOSE_PUBLISH_WAIT_SECONDS
        while self.failed is None and self._sealed:
            self._publish_pending()
            await asyncio.gather(*self._publishing, return_exceptions=True)
            if not self._sealed or time.monotonic() >= deadline:
                break
            await asyncio.sleep(LOCKED_RETRY_SECONDS)

    # -- appending --------------------------------------------------------------------------

    def check_writable(self, *, new: bool = True) -> None:
        """Raise if an append would be refused right now (cheap; no I/O)."""
        if self.failed is not None:
            raise DurabilityLost(
                "an fsync failed; this process accepts nothing more and is exiting",
                hint="the next start recovers the buffer files",
            )
        if new and self._closing:
            raise StorageError("the server is shutting down")
        if self.storage_error is not None and time.monotonic() < self._retry_at:
            raise StorageError(f"storage not writable: {self.storage_error}")

    async def append(self, data: bytes, events: int, hours: frozenset[int] | None = None) -> None:
        """Append complete lines (each ending in a newline); return once fsynced. ``hours``
        are the event hours (whole hours since the epoch) of those lines, if known."""
        await self.submit(data, events, hours)

    def submit(
        self, data: bytes, events: int, hours: frozenset[int] | None = None, *, requests: int = 1
    ) -> asyncio.Future[None]:
        """Like :meth:`append`, without a coroutine: the future is done once the lines are
        fsynced (or fails with the storage error). Raises if appends are refused now.
        ``requests`` is how many requests the lines answer (for the commit statistics)."""
        self.check_writable()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(data, events, hours, requests, future))
        self._wake.set()
        return future

    def write_now(
        self, data: bytes, events: int, hours: frozenset[int] | None = None, *, requests: int = 1
    ) -> bool:
        """Append and fdatasync ``data`` at once, on the caller's (event loop) thread,
        when the writer has nothing queued and no rotation is under way; then True, and
        the lines are durable. False means nothing was written: use :meth:`submit`.
        Raises as :meth:`submit`'s future would fail (StorageError; DurabilityLost after
        a failed fsync). This skips the writer task's wake-up and a future per commit."""
        if self._pending or self._rotating:
            return False
        self.check_writable()
        active = self._active
        if active is None:
            raise StorageError("no active buffer file")
        fresh = active.first_line_at is None
        try:
            self._append_durably(active, data, events, [hours], requests)
        finally:
            # The writer owns rotation and failure handling: wake it when either is due,
            # or when its wait has no deadline yet because the file was empty.
            if fresh or self.failed is not None or self._rotation_due() is not None:
                self._wake.set()
        return True

    def state(self) -> BufferState:
        active = self._active
        now = time.monotonic()
        return BufferState(
            topic=self.topic,
            active_file=active.path.name if active else "",
            active_bytes=active.size if active else 0,
            active_age_seconds=(now - active.first_line_at)
            if active and active.first_line_at is not None
            else 0.0,
            sealed_pending=len(self._sealed),
            rotations=self.rotations,
            failed=self.failed is not None,
            storage_error=self.storage_error,
        )

    def probe(self) -> bool:
        """True if the buffer can take writes. After a storage error and its back-off,
        tries an empty write through the durable module (which sees injected faults)."""
        if self.failed is not None or self._active is None:
            return False
        if self.storage_error is None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            durable.write_all(self._active.fd, b"", self._active.path)
        except OSError as exc:
            self._set_storage_error(exc)
            return False
        self.storage_error = None
        return True

    # -- the writer -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                # write_now may have filled the file before this task first ran, or since
                # its last look: a due rotation must not wait for the next wake-up.
                if self._rotation_due() is None:
                    self._wake.clear()
                    timeout = self._wait_seconds()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
            if self._pending:
                batch, self._pending = self._pending, []
                await self._commit(batch)
            if self.failed is not None:
                self._fail_all(self.failed)
                if self._closing:
                    return
                continue
            reason = None if self._closing else self._rotation_due()
            if reason is not None:
                await self._rotate(reason)
            if self._sealed and time.monotonic() >= self._next_publish_retry:
                self._publish_pending()

    def _rotation_due(self) -> str | None:
        """Why the active file should rotate now ("size" or "age"), or None."""
        active = self._active
        if active is None or active.size == 0 or self.failed is not None:
            return None
        if self.storage_error is not None and time.monotonic() < self._retry_at:
            return None  # a rotation (or a write) just failed: not again before the back-off
        if active.size >= self.rotate_bytes:
            return "size"
        return "age" if self._seconds_to_rotation() == 0 else None

    def _seconds_to_rotation(self) -> float | None:
        active = self._active
        if active is None or active.first_line_at is None:
            return PUBLISH_RETRY_SECONDS if self._sealed else None
        return max(0.0, active.first_line_at + self.rotate_seconds - time.monotonic())

    def _wait_seconds(self) -> float | None:
        """Until the next rotation or the next publish retry, whichever comes first."""
        timeout = self._seconds_to_rotation()
        if self._sealed:
            retry = max(0.0, self._next_publish_retry - time.monotonic())
            timeout = retry if timeout is None else min(timeout, retry)
        return timeout

    def _fail_all(self, error: BaseException) -> None:
        batch, self._pending = self._pending, []
        for item in batch:
            if not item.future.done():
                item.future.set_exception(fresh_error(error))

    async def _commit(self, batch: list[_Pending]) -> None:
        active = self._active
        try:
            self.check_writable(new=False)
            if active is None:
                raise StorageError("no active buffer file")
            data = batch[0].data if len(batch) == 1 else b"".join(item.data for item in batch)
            self._append_durably(
                active,
                data,
                sum(item.events for item in batch),
                [item.hours for item in batch],
                sum(item.requests for item in batch),
            )
        except StorageError as exc:  # DurabilityLost included
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(fresh_error(exc))
            return
        for item in batch:
            if not item.future.done():
                item.future.set_result(None)

    def _append_durably(
        self,
        active: Active,
        data: bytes,
        events: int,
        hours: list[frozenset[int] | None],
        requests: int,
    ) -> None:
        """One write and one fdatasync of ``data``, then the bookkeeping; every failure
        is logged, reported to the observer and raised as StorageError (DurabilityLost
        after a failed fsync)."""
        try:
            # On the event loop thread, on purpose: the loop waits for the fdatasync (other
            # processes use the CPU meanwhile, and requests keep queueing in the kernel for
            # the next commit). Handing it to a thread, a helper process or io_uring
            # measured slower: every commit then pays for thread or process wake-ups.
            fsync_seconds = self._write_sync(active, data)
        except BaseException as exc:
            if isinstance(exc, DurabilityLost):
                self.failed = exc
                log.critical(
                    "%s: fsync of %s failed (%s); acknowledging nothing more and "
                    "exiting; the next start recovers the buffer",
                    self.topic,
                    active.path.name,
                    exc.__cause__ or exc,
                )
                if self.observer.on_fatal:
                    self.observer.on_fatal(self.topic, exc)
                raise
            if isinstance(exc, StorageError):
                log.error("%s: write to %s failed: %s", self.topic, active.path.name, exc)
                if self.observer.on_storage_error:
                    self.observer.on_storage_error(self.topic, exc)
                raise
            log.exception("%s: unexpected error while appending", self.topic)
            raise StorageError(f"unexpected error while appending: {exc!r}") from exc
        if active.first_line_at is None:
            active.first_line_at = time.monotonic()
        active.lines += events
        for item_hours in hours:
            if item_hours is None:
                active.hours = None
            elif active.hours is not None:
                active.hours.update(item_hours)
        if self.observer.on_commit:
            self.observer.on_commit(
                self.topic, CommitStats(requests, events, len(data), fsync_seconds)
            )

    def _set_storage_error(self, exc: OSError) -> None:
        self.storage_error = exc.strerror or str(exc)
        self._retry_at = time.monotonic() + STORAGE_BACKOFF_SECONDS

    def _write_sync(self, active: Active, data: bytes) -> float:
        fsync_seconds = write_synced(active, data, self._set_storage_error)
        self.storage_error = None
        return fsync_seconds

    # -- rotation ---------------------------------------------------------------------------

    async def rotate(self, reason: str = "manual") -> None:
        """Seal and publish the active file now (used by tests and at shutdown)."""
        if self._active is not None and self._active.size > 0:
            await self._rotate(reason)

    async def _rotate(self, reason: str) -> None:
        self._rotating = True
        try:
            await self._rotate_now(reason)
        finally:
            self._rotating = False

    async def _rotate_now(self, reason: str) -> None:
        old = self._active
        if old is None:
            return
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(self._io, open_active, self.root, self.topic)
        except OSError as exc:
            # Keep appending to the current file; rotation is tried again later.
            log.error(
                "%s: could not open a new buffer file (%s); rotation postponed",
                self.topic,
                exc.strerror,
            )
            self._set_storage_error(exc)
            old.first_line_at = time.monotonic()
            return
        try:
            await loop.run_in_executor(self._io, seal, self.root, self.topic, old, True)
        except OSError as exc:
            # The old file's name is now uncertain; stop, and let recovery sort it out.
            error = DurabilityLost(
                f"rotation of {old.path.name} failed: {exc.strerror}", errno=exc.errno
            )
            self.failed = error
            log.critical("%s: %s; exiting, the next start recovers the buffer", self.topic, error)
            os.close(new.fd)
            if self.observer.on_fatal:
                self.observer.on_fatal(self.topic, error)
            return
        self._active = new
        self._after_seal(old, reason)

    def _after_seal(self, old: Active, reason: str) -> None:
        if old.size == 0:
            return
        self.rotations += 1
        path = layout.sealed_path(self.root, self.topic, old.file_id)
        hours = None if old.hours is None else frozenset(old.hours)
        if self.observer.on_rotate:
            self.observer.on_rotate(self.topic, reason)
        if self._upload is not None:
            self._upload(self.topic, Sealed(path, hours, old.lines))
            return
        self._sealed.append(Sealed(path, hours, old.lines))
        self._publish_pending()

    def _publish_pending(self) -> None:
        sealed, self._sealed = self._sealed, []
        for path in sealed:
            task = asyncio.create_task(self._publish_one(path))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _publish_one(self, sealed: Sealed) -> None:
        try:
            lines = await asyncio.to_thread(publish, self.root, self.topic, sealed)
        except (OSError, StorageError) as exc:
            # The sealed file stays; it is retried later and recovered at the next start.
            log.error(
                "%s: publishing %s into raw failed: %s; will retry",
                self.topic,
                sealed.path.name,
                exc,
            )
            self._sealed.append(sealed)
            self._next_publish_retry = time.monotonic() + PUBLISH_RETRY_SECONDS
            return
        if lines is None and sealed.path.exists():
            # Its lock was held: a reader (doctor, recover's look at the buffer) holds it
            # for a moment. Soon again, not at the next start.
            self._sealed.append(sealed)
            self._next_publish_retry = time.monotonic() + LOCKED_RETRY_SECONDS
            self._wake.set()
            return
        if lines is not None and self.observer.on_publish:
            self.observer.on_publish(self.topic, lines)


__all__ = [
    "BufferObserver",
    "BufferState",
    "CommitStats",
    "TopicBuffer",
    "fresh_error",
    "is_no_space",
]
