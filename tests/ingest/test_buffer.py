"""The group-commit appender: one fsync for many requests, failures, rotation into raw."""

from __future__ import annotations

import asyncio
import calendar
import errno
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gravix.errors import DurabilityLost, StorageError
from gravix.ingest.buffer import BufferObserver, CommitStats, TopicBuffer
from gravix.schema import Validator
from gravix.storage import durable
from serverutil import fact, open_buffer, raw_lines, stamp

TOPIC = "request_facts"


def lines(count: int, **overrides: object) -> list[bytes]:
    validator = Validator(TOPIC)
    return [
        validator.one(json.dumps(fact(**overrides)).encode()).line + b"\n" for _ in range(count)
    ]


@pytest.fixture()
def ops() -> Iterator[list[tuple[str, str]]]:
    """Record every durable operation (op, path) while the test runs."""
    seen: list[tuple[str, str]] = []
    previous = durable.set_hook(lambda op, path: seen.append((op, path)))
    yield seen
    durable.set_hook(previous)


def install(hook: Callable[[str, str], None]) -> None:
    durable.set_hook(hook)


async def rotations_within(buf: TopicBuffer, seconds: float) -> int:
    """Wait up to ``seconds`` for the buffer's first rotation; its rotation count then."""
    deadline = time.monotonic() + seconds
    while buf.rotations == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return buf.rotations


def failing_fsyncs(seen: list[str]) -> Callable[[str, str], None]:
    """A durable hook that fails every fsync of an active file with EIO, noting its path."""

    def hook(op: str, path: str) -> None:
        if op == "fsync" and "active-" in path:
            seen.append(path)
            raise OSError(errno.EIO, "injected EIO", path)

    return hook


def buffer_files(root: Path) -> list[str]:
    folder = root / "buffer" / TOPIC
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_concurrent_appends_share_fsyncs(data_root: Path, ops: list[tuple[str, str]]) -> None:
    commits: list[CommitStats] = []
    payload = lines(200)

    async def main() -> None:
        buf = await open_buffer(data_root, commits=commits)
        await asyncio.gather(*(buf.append(line, 1) for line in payload))
        await buf.close()

    asyncio.run(main())
    fsyncs = [path for op, path in ops if op == "fsync" and "active-" in path]
    assert sum(c.requests for c in commits) == 200
    assert len(fsyncs) == len(commits) < 200 / 5
    stored = raw_lines(data_root, TOPIC)
    assert sorted(json.dumps(d, separators=(",", ":")).encode() + b"\n" for d in stored) == sorted(
        payload
    )


def test_fsync_failure_fails_the_batch_and_is_never_retried(data_root: Path) -> None:
    fsyncs: list[str] = []
    fatal: list[BaseException] = []

    hook = failing_fsyncs(fsyncs)

    async def main() -> list[BaseException | None]:
        buf = await open_buffer(data_root, fatal=fatal)
        install(hook)
        results = await asyncio.gather(
            *(buf.append(line, 1) for line in lines(10)), return_exceptions=True
        )
        later = await asyncio.gather(buf.append(lines(1)[0], 1), return_exceptions=True)
        await buf.close()
        return [*results, *later]

    try:
        results = asyncio.run(main())
    finally:
        durable.set_hook(None)
    assert all(isinstance(r, DurabilityLost) for r in results), results
    assert len(fsyncs) == 1  # the one that failed; never a second try
    assert len(fatal) == 1
    # The file is left for recovery: still named active, nothing moved into raw.
    assert [n.startswith("active-") for n in buffer_files(data_root)] == [True]
    assert raw_lines(data_root, TOPIC) == []


def test_failed_write_leaves_no_partial_line_and_recovers(data_root: Path) -> None:
    full = {"on": True}

    def hook(op: str, path: str) -> None:
        if op == "write" and "active-" in path and full["on"]:
            # The disk takes a few bytes, then fills up: a torn write.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.write(fd, b'{"event_id":"half')
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device", path)

    good = lines(3)

    async def main() -> tuple[list[object], int]:
        buf = TopicBuffer(data_root, TOPIC, rotate_seconds=3600, rotate_bytes=2**30)
        await buf.start()
        await buf.append(good[0], 1)
        install(hook)
        first = await asyncio.gather(buf.append(good[1], 1), return_exceptions=True)
        refused = await asyncio.gather(buf.append(good[1], 1), return_exceptions=True)
        size = buf.state().active_bytes
        active = data_root / "buffer" / TOPIC / buf.state().active_file
        on_disk = active.stat().st_size
        assert on_disk == size == len(good[0])  # the torn bytes were cut off
        assert not buf.probe()
        full["on"] = False
        await asyncio.sleep(1.1)  # the back-off
        assert buf.probe()
        await buf.append(good[2], 1)
        await buf.close()
        return [*first, *refused], on_disk

    try:
        results, _ = asyncio.run(main())
    finally:
        durable.set_hook(None)
    assert all(isinstance(r, StorageError) and r.errno == errno.ENOSPC for r in results[:1])
    assert isinstance(results[1], StorageError)
    stored = [d["event_id"] for d in raw_lines(data_root, TOPIC)]
    assert sorted(stored) == sorted(json.loads(line)["event_id"] for line in (good[0], good[2]))


def test_rotation_at_size_splits_raw_by_event_hour(data_root: Path) -> None:
    older = lines(5, event_time=stamp(2 * 3600))
    newer = lines(5)
    rotations: list[str] = []

    async def main() -> None:
        buf = TopicBuffer(
            data_root,
            TOPIC,
            rotate_seconds=3600,
            rotate_bytes=len(older[0]) * 4,
            observer=BufferObserver(on_rotate=lambda _t, reason: rotations.append(reason)),
        )
        await buf.start()
        for a, b in zip(older, newer, strict=True):
            await buf.append(a + b, 2)
        await buf.close()

    asyncio.run(main())
    assert "size" in rotations and rotations[-1] == "shutdown"
    hours = sorted(
        p.relative_to(data_root / "raw" / TOPIC).parts[:2]
        for p in (data_root / "raw" / TOPIC).glob("event_day=*/hour=*/*.jsonl")
    )
    assert len(set(hours)) == 2
    for path in (data_root / "raw" / TOPIC).glob("event_day=*/hour=*/*.jsonl"):
        hour = int(path.parent.name.split("=")[1])
        day = path.parent.parent.name.split("=")[1]
        for line in path.read_bytes().splitlines():
            assert json.loads(line)["event_time"].startswith(f"{day}T{hour:02d}:")
    assert len(raw_lines(data_root, TOPIC)) == 10
    assert buffer_files(data_root) == []


def test_rotation_by_age_publishes_without_shutdown(data_root: Path) -> None:
    async def main() -> int:
        buf = TopicBuffer(data_root, TOPIC, rotate_seconds=0.2, rotate_bytes=2**30)
        await buf.start()
        await buf.append(b"".join(lines(3)), 3)
        deadline = time.monotonic() + 10
        while len(raw_lines(data_root, TOPIC)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        found = len(raw_lines(data_root, TOPIC))
        await buf.close()
        return found

    assert asyncio.run(main()) == 3
    assert len(raw_lines(data_root, TOPIC)) == 3


def test_active_file_is_locked_while_the_buffer_lives(data_root: Path) -> None:
    async def main() -> None:
        buf = TopicBuffer(data_root, TOPIC, rotate_seconds=3600, rotate_bytes=2**30)
        await buf.start()
        active = data_root / "buffer" / TOPIC / buf.state().active_file
        assert durable.is_locked(active)
        await buf.close()
        assert not active.exists()  # empty at shutdown: removed, not sealed

    ops: list[tuple[str, str]] = []
    previous = durable.set_hook(lambda op, path: ops.append((op, os.path.basename(path))))
    try:
        asyncio.run(main())
    finally:
        durable.set_hook(previous)
    assert buffer_files(data_root) == []
    # The file is created under a temporary name and renamed only once locked, so recovery
    # never sees an unlocked active file that a live process owns.
    named = [(op, name) for op, name in ops if name.startswith("active-")]
    assert named and named[0][0] == "replace"
    assert not [op for op, _ in named if op == "open"]


def _hour_of(line: bytes) -> int:
    t = time.strptime(json.loads(line)["event_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(calendar.timegm(t) // 3600)


def _rotate_once(root: Path, batches: list[list[bytes]], *, tell_hours: bool) -> tuple[int, int]:
    """Append the batches (saying their hours or not), rotate; (active inode, lines)."""

    async def main() -> int:
        buf = TopicBuffer(root, TOPIC, rotate_seconds=3600, rotate_bytes=2**30)
        await buf.start()
        inode = os.stat(root / "buffer" / TOPIC / buf.state().active_file).st_ino
        for batch in batches:
            hours = frozenset(map(_hour_of, batch)) if tell_hours else None
            await buf.append(b"".join(batch), len(batch), hours)
        await buf.rotate("test")
        await asyncio.gather(*buf._publishing)
        await buf.close()
        return inode

    return asyncio.run(main()), sum(map(len, batches))


def test_a_buffer_file_of_one_event_hour_is_renamed_into_raw_whole(data_root: Path) -> None:
    batches = [lines(3, event_time=stamp(3600 + i)) for i in range(3)]
    if len({_hour_of(line) for batch in batches for line in batch}) != 1:
        pytest.skip("the facts straddle an hour boundary at this moment")
    inode, count = _rotate_once(data_root, batches, tell_hours=True)
    (raw,) = (data_root / "raw" / TOPIC).glob("event_day=*/hour=*/*.jsonl")
    assert raw.stat().st_ino == inode  # the very file the server appended to
    assert raw.read_bytes() == b"".join(line for batch in batches for line in batch)
    assert len(raw_lines(data_root, TOPIC)) == count == 9
    assert buffer_files(data_root) == []


def test_a_buffer_file_of_two_hours_or_of_unknown_hours_is_split(data_root: Path) -> None:
    two_hours = [lines(2, event_time=stamp(3 * 3600)), lines(2, event_time=stamp(60))]
    inode, _ = _rotate_once(data_root / "a", two_hours, tell_hours=True)
    files = sorted((data_root / "a" / "raw" / TOPIC).glob("event_day=*/hour=*/*.jsonl"))
    assert len(files) == 2 and inode not in {p.stat().st_ino for p in files}
    # Lines appended without their hours: never renamed on trust, always split.
    one_hour = [lines(2, event_time=stamp(3600)), lines(1, event_time=stamp(3600))]
    inode, _ = _rotate_once(data_root / "b", one_hour, tell_hours=False)
    (raw,) = (data_root / "b" / "raw" / TOPIC).glob("event_day=*/hour=*/*.jsonl")
    assert raw.stat().st_ino != inode
    assert len(raw_lines(data_root / "b", TOPIC)) == 3


@pytest.mark.parametrize("fail_op", ["unlink", "replace"])
def test_a_failed_seal_at_shutdown_is_logged_and_closes_the_file_once(
    data_root: Path, fail_op: str, caplog: pytest.LogCaptureFixture
) -> None:
    # An empty active file is unlinked at shutdown, a non-empty one renamed to sealed; when
    # that fails (data directory gone, disk error), close() still ends cleanly.
    async def main() -> None:
        buf = TopicBuffer(data_root, TOPIC, rotate_seconds=3600, rotate_bytes=2**30)
        await buf.start()
        if fail_op == "replace":
            await buf.append(b"".join(lines(2)), 2)

        def hook(op: str, path: str) -> None:
            if op == fail_op:
                raise OSError(errno.EIO, "injected")

        previous = durable.set_hook(hook)
        try:
            await buf.close()
        finally:
            durable.set_hook(previous)

    asyncio.run(main())
    assert "could not seal" in caplog.text
    assert "Bad file descriptor" not in caplog.text


# --- write_now: the single-event path's direct commit ------------------------------------------


def test_write_now_is_durable_on_return_and_counts_as_one_commit(
    data_root: Path, ops: list[tuple[str, str]]
) -> None:
    commits: list[CommitStats] = []
    payload = lines(4)

    async def main() -> tuple[bool, bytes]:
        buf = await open_buffer(data_root, commits=commits)
        ops.clear()
        done = buf.write_now(b"".join(payload), 4, requests=3)
        # Already on disk, and fsynced, before the event loop ran anything else.
        active = data_root / "buffer" / TOPIC / buf.state().active_file
        on_disk = active.read_bytes()
        assert [op for op, path in ops if "active-" in path] == ["write", "fsync"]
        await buf.close()
        return done, on_disk

    done, on_disk = asyncio.run(main())
    assert done is True
    assert on_disk == b"".join(payload)
    assert [(c.requests, c.events, c.bytes) for c in commits] == [(3, 4, len(on_disk))]
    assert len(raw_lines(data_root, TOPIC)) == 4


def test_write_now_declines_while_appends_are_queued_or_a_rotation_runs(data_root: Path) -> None:
    payload = lines(3)

    async def main() -> tuple[bool, bool, int]:
        buf = await open_buffer(data_root)
        queued = buf.submit(payload[0], 1)
        behind_queue = buf.write_now(payload[1], 1)
        await queued
        await buf.append(payload[1], 1)
        rotation = asyncio.create_task(buf.rotate())
        await asyncio.sleep(0)  # the rotation now waits for its file operations
        during_rotation = buf.write_now(payload[2], 1)
        await rotation
        after = buf.write_now(payload[2], 1)
        rotations = buf.rotations
        await buf.close()
        return behind_queue, during_rotation, rotations if after else -1

    behind_queue, during_rotation, rotations = asyncio.run(main())
    assert behind_queue is False and during_rotation is False
    assert rotations == 1
    stored = sorted(d["event_id"] for d in raw_lines(data_root, TOPIC))
    assert stored == sorted(json.loads(line)["event_id"] for line in payload)


def test_a_file_written_only_by_write_now_still_rotates_by_age_and_size(data_root: Path) -> None:
    async def by_age() -> int:
        buf = await open_buffer(data_root / "age", rotate_seconds=0.2)
        assert buf.write_now(b"".join(lines(3)), 3)
        rotations = await rotations_within(buf, 10)
        await buf.close(rotate=False)
        return rotations

    async def by_size() -> int:
        one = lines(1)[0]
        buf = await open_buffer(data_root / "size", rotate_bytes=len(one) * 2)
        for _ in range(2):
            assert buf.write_now(one, 1)
        rotations = await rotations_within(buf, 10)
        await buf.close()
        return rotations

    assert asyncio.run(by_age()) == 1
    assert len(raw_lines(data_root / "age", TOPIC)) == 3
    assert asyncio.run(by_size()) == 1
    assert len(raw_lines(data_root / "size", TOPIC)) == 2


def test_write_now_after_a_failed_fsync_raises_and_the_buffer_refuses_everything(
    data_root: Path,
) -> None:
    fatal: list[BaseException] = []
    fsyncs: list[str] = []

    hook = failing_fsyncs(fsyncs)

    async def main() -> tuple[BaseException | None, BaseException | None, object]:
        buf = await open_buffer(data_root, fatal=fatal)
        install(hook)
        first = second = None
        try:
            buf.write_now(lines(1)[0], 1)
        except StorageError as exc:
            first = exc
        try:
            buf.write_now(lines(1)[0], 1)
        except StorageError as exc:
            second = exc
        queued = await asyncio.gather(buf.append(lines(1)[0], 1), return_exceptions=True)
        await buf.close()
        return first, second, queued[0]

    try:
        first, second, queued = asyncio.run(main())
    finally:
        durable.set_hook(None)
    assert isinstance(first, DurabilityLost) and first.errno == errno.EIO
    assert isinstance(second, DurabilityLost) and isinstance(queued, DurabilityLost)
    assert len(fsyncs) == 1 and len(fatal) == 1
    assert raw_lines(data_root, TOPIC) == []
    assert [n.startswith("active-") for n in buffer_files(data_root)] == [True]


def test_a_rotation_that_cannot_open_a_new_file_is_retried_after_the_back_off_not_in_a_spin(
    data_root: Path,
) -> None:
    attempts: list[float] = []
    broken = {"on": True}

    def hook(op: str, path: str) -> None:
        if op == "open" and "active-" in path and broken["on"]:
            attempts.append(time.monotonic())
            raise OSError(errno.EMFILE, "injected: too many open files", path)

    one = lines(1)[0]

    async def main() -> tuple[int, int]:
        buf = await open_buffer(data_root, rotate_bytes=len(one))
        install(hook)
        assert buf.write_now(one, 1)  # due for rotation by size at once
        await asyncio.sleep(0.5)
        tries_while_broken = len(attempts)
        broken["on"] = False
        await asyncio.sleep(0.7)  # past the one-second back-off
        await buf.append(one, 1)
        rotations = await rotations_within(buf, 10)
        await buf.close()
        return tries_while_broken, rotations

    try:
        tries_while_broken, rotations = asyncio.run(main())
    finally:
        durable.set_hook(None)
    assert tries_while_broken == 1
    assert rotations >= 1
    assert len(raw_lines(data_root, TOPIC)) == 2


def reader_holds_the_sealed_file(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[float]:
    """At the moment of the first publish, a reader (as doctor's look at the buffer does)
    holds a shared flock on the sealed file; it lets go after ``seconds``."""
    import fcntl
    import threading

    from gravix.ingest import files

    held: list[float] = []
    real = files.publish_sealed

    def publish_sealed(root: Path, topic: str, sealed: Path, **kwargs: object) -> object:
        if not held:
            fd = os.open(sealed, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_SH)
            held.append(time.monotonic())
            threading.Timer(seconds, os.close, [fd]).start()
        return real(root, topic, sealed, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "publish_sealed", publish_sealed)
    return held


def sealed_files(root: Path) -> list[str]:
    return [name for name in buffer_files(root) if name.startswith("sealed-")]


def test_a_sealed_file_a_reader_holds_is_published_soon_not_at_the_next_start(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = reader_holds_the_sealed_file(monkeypatch, 1.0)
    payload = lines(30)

    async def main() -> tuple[float, list[str]]:
        buf = await open_buffer(data_root)
        await asyncio.gather(*(buf.append(line, 1) for line in payload))
        await buf.rotate()
        deadline = time.monotonic() + 4.0
        while sealed_files(data_root) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        published_at, left = time.monotonic(), sealed_files(data_root)
        await buf.close()
        return published_at, left

    published_at, left = asyncio.run(main())
    assert held, "the reader never held the file"
    assert left == [], "the sealed file waited in buffer/ for the next start"
    assert published_at - held[0] < 3.0
    assert len(raw_lines(data_root, TOPIC)) == len(payload)


def test_a_graceful_close_waits_for_a_reader_to_let_go_of_a_sealed_file(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = reader_holds_the_sealed_file(monkeypatch, 1.0)
    payload = lines(20)

    async def main() -> None:
        buf = await open_buffer(data_root)
        await asyncio.gather(*(buf.append(line, 1) for line in payload))
        await buf.close()  # seals at shutdown, meets the reader's lock

    asyncio.run(main())
    assert held
    assert sealed_files(data_root) == []
    assert len(raw_lines(data_root, TOPIC)) == len(payload)
