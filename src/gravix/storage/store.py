"""The store that holds raw/, warehouse/ and quarantine/ (DESIGN §11): one small interface
with two backends, the data root itself (:class:`LocalStore`) and an S3 bucket
(:class:`gravix.storage.s3.S3Store`). Object names are built by :mod:`gravix.storage.layout`
and are ``/``-separated paths relative to the store's root.

Every write replaces an object whole (readers see the old or the new content, never a mix
or nothing); :meth:`Store.create` is the one conditional write (create only if absent), for
leases.
"""

from __future__ import annotations

import builtins
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gravix.errors import StoreError, UnsafePath
from gravix.settings import Settings
from gravix.storage import durable, faults, layout, links


@dataclass(frozen=True, order=True)
class ObjectInfo:
    key: str
    size: int
    # When the store last wrote the object (nanoseconds since the epoch; None where a
    # backend does not say): with the size, what tells a replaced object from the old one.
    mtime_ns: int | None = field(default=None, compare=False)


class Store(Protocol):
    """What every backend does; failures of the store itself raise StoreError."""

    url: str

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose name starts with ``prefix`` (an area or a directory ending
        in ``/``), sorted by name."""
        ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def read(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if there is none."""
        ...

    def write(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None:
        """Remove the object; no error if it is already gone."""
        ...

    def create(self, key: str, data: bytes) -> bool:
        """Write the object only if none has that name; False if one has."""
        ...


class LocalStore:
    """The data root as a store: durable.py's writes (temporary file, fsync, rename, fsync
    of the directory), nothing opened through a symlink."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return links.ensure_inside(self.root, layout.object_path(self.root, key))

    def list(self, prefix: str) -> list[ObjectInfo]:
        layout.check_key_prefix(prefix)
        base = self.root.joinpath(*prefix.rstrip("/").split("/"))
        found: list[ObjectInfo] = []
        self._walk(links.ensure_inside(self.root, base), found)
        return sorted(info for info in found if info.key.startswith(prefix))

    def _walk(self, directory: Path, found: builtins.list[ObjectInfo]) -> None:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.is_symlink():
                layout.refuse_links(self.root)
                raise UnsafePath(f"{entry.path} is a symlink; Gravix does not follow it")
            if entry.name.startswith("."):
                continue  # temporaries of writes under way
            if entry.is_dir(follow_symlinks=False):
                self._walk(Path(entry.path), found)
            elif entry.is_file(follow_symlinks=False):
                key = layout.object_key(self.root, Path(entry.path))
                found.append(ObjectInfo(key, entry.stat(follow_symlinks=False).st_size))

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key), follow_symlinks=False)
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size) if stat.S_ISREG(st.st_mode) else None

    def read(self, key: str) -> bytes:
        fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def write(self, key: str, data: bytes) -> None:
        durable.atomic_write(self._path(key), data)

    def delete(self, key: str) -> None:
        durable.unlink(self._path(key))

    def create(self, key: str, data: bytes) -> bool:
        return durable.create_new(self._path(key), data)


def open_store(settings: Settings) -> Store:
    """The store of ``settings``: its ``--store`` bucket, or the data root."""
    if settings.store is None:
        return LocalStore(settings.data_dir)
    from gravix.storage.s3 import S3Store  # pyarrow's S3 support loads only when used

    return S3Store(settings.store)


def write_confirmed(store: Store, key: str, data: bytes) -> ObjectInfo:
    """Write an object, then have the store confirm it: the bytes it gives back must be
    those written, size and content (a byte-for-byte comparison costs less CPU than hashing
    both sides and misses nothing a checksum would catch); else StoreError."""
    faults.check("upload", key)
    store.write(key, data)
    back = store.read(key)
    if len(back) != len(data):
        raise StoreError(
            f"{store.url}: {key} reads back as {len(back)} bytes after writing {len(data)}",
            hint="the object is written again at the next try",
        )
    if back != data:
        raise StoreError(
            f"{store.url}: {key} reads back with other bytes than were written",
            hint="the object is written again at the next try",
        )
    return ObjectInfo(key, len(back))
