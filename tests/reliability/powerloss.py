"""A model of a disk after a power cut, driven by the durable module's hook.

The hook sees every operation Gravix relies on. The model records what an operation makes
durable — a file's bytes at its ``fsync``, a directory's entries at its ``fsync_dir`` — and
nothing else. At the cut it builds the tree a real disk could show at the next boot: each
directory holds the entries it had at its last fsync (new, never-synced directories are
empty, so files in them vanish); each file holds its bytes from its last fsync, or, where
the cut is modelled as kind, a prefix of what had been written after it (a torn tail) or
as many zero bytes (the size reached the disk, the data blocks did not).
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections import defaultdict
from pathlib import Path

Key = tuple[int, int, int]  # (device, inode, generation): an inode number can be reused


class DiskModel:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.generation: dict[tuple[int, int], int] = defaultdict(int)
        self.content: dict[Key, bytes] = {}
        self.entries: dict[str, dict[str, tuple[str, Key | None]]] = {}
        self.crashed = False
        self.countdown: int | None = None
        self.ops = 0
        self.at_crash: dict[Key, bytes] = {}
        self.cut_at = "between operations"
        for dirpath, _dirs, files in os.walk(root):
            self._snap_dir(dirpath)
            for name in files:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if os.path.isfile(path) and not os.path.islink(path):
                    self.content[self._key(st)] = Path(path).read_bytes()

    def _key(self, st: os.stat_result) -> Key:
        return (st.st_dev, st.st_ino, self.generation[(st.st_dev, st.st_ino)])

    def _snap_dir(self, directory: str) -> None:
        entries: dict[str, tuple[str, Key | None]] = {}
        with os.scandir(directory) as listing:
            for entry in listing:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        entries[entry.name] = ("dir", None)
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        entries[entry.name] = ("file", self._key(st))
                except FileNotFoundError:
                    # Removed by another thread (a publish, a rollup) since it was listed:
                    # the directory no longer holds it when its fsync runs.
                    continue
        self.entries[os.path.normpath(directory)] = entries

    def arm(self, countdown: int) -> None:
        """Cut the power at the ``countdown``-th durable operation from now (0 = the next)."""
        with self.lock:
            self.countdown = countdown

    def cut(self) -> None:
        """Cut the power now, between operations."""
        with self.lock:
            self._cut()

    def _cut(self) -> None:
        self.crashed = True
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                    self.at_crash[self._key(st)] = Path(path).read_bytes()
                except OSError:
                    continue

    def hook(self, op: str, path: str) -> None:
        with self.lock:
            if not self.crashed and self.countdown is not None:
                if self.countdown == 0:
                    self.cut_at = op
                    self._cut()
                else:
                    self.countdown -= 1
            if self.crashed:
                raise OSError(errno.EIO, "power lost", path)
            self.ops += 1
            try:
                if op == "fsync" and path:
                    self.content[self._key(os.stat(path))] = Path(path).read_bytes()
                elif op == "fsync_dir":
                    self._snap_dir(path)
                elif op in ("unlink", "replace"):
                    # The inode behind this name may be freed and its number reused.
                    st = os.lstat(path)
                    self.generation[(st.st_dev, st.st_ino)] += 1
            except FileNotFoundError:
                pass

    def materialize(self, dest: Path, rng: random.Random, *, torn: bool) -> dict[str, int]:
        """Write the tree a disk could show after the cut into ``dest``; returns counts."""
        figures = {"files": 0, "lost_entries": 0, "torn_files": 0}
        self._build(os.path.normpath(self.root), dest, rng, torn, figures)
        listed = {key for entries in self.entries.values() for _kind, key in entries.values()}
        figures["lost_entries"] = len(set(self.at_crash) - listed)
        return figures

    def _build(
        self, src: str, dst: Path, rng: random.Random, torn: bool, figures: dict[str, int]
    ) -> None:
        dst.mkdir(parents=True, exist_ok=True)
        for name, (kind, key) in sorted(self.entries.get(src, {}).items()):
            if kind == "dir":
                self._build(os.path.join(src, name), dst / name, rng, torn, figures)
                continue
            assert key is not None
            durable_bytes = self.content.get(key, b"")
            data = durable_bytes
            later = self.at_crash.get(key)
            if torn and later is not None and later.startswith(durable_bytes):
                extra = len(later) - len(durable_bytes)
                if extra:
                    kept = rng.randint(0, extra)
                    data = later[: len(durable_bytes) + kept]
                    if rng.random() < 0.3:  # size updated, data blocks not: a zero-filled tail
                        data = durable_bytes + b"\0" * kept
                    figures["torn_files"] += 1
            (dst / name).write_bytes(data)
            figures["files"] += 1
