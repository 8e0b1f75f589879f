"""Publishing a sealed buffer file into raw: the one code path for rotation (the ingest
server) and recovery (a restart, ``gravix recover``).

Publishing is idempotent: every raw file it produces has a name derived from the buffer
file's id, so a publish redone after a crash rewrites the same names and never stores a
line under two names. The sealed file is removed only after every raw file is durable;
damaged segments go to quarantine, never silently dropped.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from gravix import schema
from gravix.errors import GravixError, StorageError
from gravix.storage import durable, layout, links

Progress = Callable[[str, int, int], None]
QUARANTINE_BUFFER = "buffer"

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


def try_lock(path: Path) -> int | None:
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


def read_fd(fd: int) -> bytes:
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
            hint=f"buffer files are named {layout.BUFFER_NAMES}",
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
    fd = try_lock(sealed)
    if fd is None:
        return None
    try:
        if whole is not None:
            return _publish_whole(root, topic, sealed, *whole)
        # The file's bytes are dropped once split, so the peak is about twice the file.
        report, split = _plan_publish(root, topic, sealed, read_fd(fd))
        try:
            for (_hour, lines), target in zip(split.by_hour.items(), report.raw_files, strict=True):
                links.ensure_inside(root, target.parent)
                durable.atomic_write(target, b"\n".join(lines) + b"\n")
            if split.bad:
                target, existing = _quarantine_target(root, topic, sealed)
                if existing is None:
                    links.ensure_inside(root, target.parent)
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
        links.ensure_inside(root, target.parent)
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


def preview(root: Path, topic: str, sealed: Path) -> PublishReport | None:
    """What :func:`publish_sealed` would do, without changing anything."""
    try:
        fd = os.open(sealed, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        report, split = _plan_publish(root, topic, sealed, read_fd(fd))
    finally:
        os.close(fd)
    if split.bad:
        report.quarantined = _quarantine_target(root, topic, sealed)[0]
    return report
