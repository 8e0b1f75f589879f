"""Uploading a sealed buffer file of an ingest node into the store's raw (DESIGN §11): the
store-side counterpart of :mod:`gravix.storage.publish`, and the one code path for the
upload after a rotation and for the leftovers found at the next start.

The file's lines are split by event hour, exactly as publishing splits them, and each hour
becomes the object ``raw/<topic>/event_day=…/hour=…/<node-id>-<id>.jsonl``: the name is
derived from the node and the buffer file, so an upload redone after a crash rewrites the
same objects with the same bytes, and no node overwrites another's. Damaged segments go to
``quarantine/buffer/`` in the store. The sealed file is deleted only after the store has
confirmed every object (the bytes it gives back, compared with those written: size and
content).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from gravix.errors import GravixError
from gravix.storage import durable, layout
from gravix.storage.publish import QUARANTINE_BUFFER, read_fd, split_lines, try_lock
from gravix.storage.store import Store, write_confirmed


@dataclass
class UploadReport:
    """What uploading one sealed buffer file did."""

    topic: str
    source: Path
    file_id: str
    lines: int = 0
    bytes: int = 0
    objects: list[str] = field(default_factory=list)
    torn_tail_lines: int = 0
    damaged_lines: int = 0
    quarantined: str | None = None
    seconds: float = 0.0


def _pieces(
    topic: str, data: bytes, whole: layout.Hour | None, report: UploadReport
) -> tuple[dict[layout.Hour, bytes], bytes]:
    """The bytes of each event hour, and the damaged bytes (empty if none)."""
    if whole is not None:
        report.lines = data.count(b"\n")
        report.bytes = len(data)
        return {whole: data}, b""
    split = split_lines(topic, data)
    report.lines = split.lines
    report.bytes = split.good_bytes
    report.torn_tail_lines = split.torn_tail_lines
    report.damaged_lines = split.damaged_lines
    pieces = {hour: b"\n".join(lines) + b"\n" for hour, lines in split.by_hour.items()}
    return pieces, b"".join(split.bad)


def upload_sealed(
    store: Store,
    node_id: str,
    root: Path,
    topic: str,
    sealed: Path,
    *,
    whole: layout.Hour | None = None,
) -> UploadReport | None:
    """Upload one sealed buffer file into the store's raw, then delete it; None if another
    process holds it (or it is gone). Raises StoreError when the store fails; the sealed
    file is then kept for the next try.

    ``whole`` is for the process that wrote the file and knows every line is complete,
    valid and of that one event hour: the file goes up as one object, unsplit (a leftover
    is split instead, into the same name)."""
    parsed = layout.parse_buffer_name(sealed)
    if parsed is None or parsed[0] != "sealed":
        raise GravixError(f"{sealed} is not a sealed buffer file name")
    fd = try_lock(sealed)
    if fd is None:
        return None
    started = time.perf_counter()
    try:
        report = UploadReport(topic=topic, source=sealed, file_id=parsed[1])
        pieces, bad = _pieces(topic, read_fd(fd), whole, report)
        for hour, body in pieces.items():
            key = layout.raw_object_key(topic, hour, node_id, report.file_id)
            write_confirmed(store, key, body)
            report.objects.append(key)
        if bad:
            name = f"{topic}-{sealed.name}"
            key = layout.quarantine_object_key(QUARANTINE_BUFFER, node_id, name)
            write_confirmed(store, key, bad)
            report.quarantined = key
        durable.unlink(sealed)
    finally:
        os.close(fd)
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class Backlog:
    """Sealed files of a node not yet confirmed by the store."""

    files: int
    bytes: int
    oldest_seconds: float  # since the oldest one's buffer file was created; 0 if none


def backlog(root: Path, topics: tuple[str, ...], now: float | None = None) -> Backlog:
    files = sealed_files(root, topics)
    now = time.time() if now is None else now
    oldest = 0.0
    if files:
        parsed = layout.parse_buffer_name(files[0][1])
        created = layout.file_id_time(parsed[1]) if parsed else None
        oldest = max(0.0, now - created) if created is not None else 0.0
    return Backlog(len(files), sum(size for _t, _p, size in files), oldest)


def sealed_files(root: Path, topics: tuple[str, ...]) -> list[tuple[str, Path, int]]:
    """(topic, path, size) of every sealed buffer file waiting for its upload, oldest
    first (buffer file ids start with their creation time)."""
    out: list[tuple[str, Path, int]] = []
    for topic in topics:
        directory = layout.buffer_dir(root, topic)
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            parsed = layout.parse_buffer_name(Path(entry.name))
            if parsed is None or parsed[0] != "sealed" or not entry.is_file(follow_symlinks=False):
                continue
            try:
                size = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue  # uploaded and deleted meanwhile
            out.append((topic, Path(entry.path), size))
    return sorted(out, key=lambda item: layout.parse_buffer_name(item[1]) or ("", ""))
