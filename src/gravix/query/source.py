"""Where the tables' files are: under the data root, or objects in a store (DESIGN §11).

A query names the files it reads by strings: paths under the data root, or the ``s3://``
URLs of a store's objects, which polars' own S3 reader scans with the store's endpoint and
credentials. A store is listed through :class:`gravix.storage.s3.S3Store`, one day (or hour)
prefix at a time, and only the partitions a window can need; what a listing saw of an
object (size, time written) is its identity, so the dashboard's cache notices a replaced
object as it notices a replaced file.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from gravix.query.span import Span
from gravix.settings import Settings
from gravix.storage import layout, objects
from gravix.storage.layout import Hour
from gravix.storage.s3 import S3Store  # pyarrow's S3 support loads only when a store opens

if TYPE_CHECKING:
    from gravix.storage.store import ObjectInfo

# Requests to the store at once when a read needs many prefixes or objects (a LIST or GET
# waits on the network far longer than it uses the CPU).
PARALLEL_REQUESTS = 8
# Objects whose listing is remembered: past this, what was seen is forgotten (and listed
# again by the next question), so a dashboard that runs for months keeps no deleted names.
SEEN_LIMIT = 200_000
_DAY = timedelta(days=1)
T = TypeVar("T")
R = TypeVar("R")


class StoreRoot:
    """A store's ``raw/`` and ``warehouse/`` as the tables' files."""

    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.url = store.url
        self._seen: dict[str, ObjectInfo] = {}  # URL → what the latest listing saw
        self._lock = threading.Lock()
        config = store.config
        self._base = f"s3://{config.bucket}/{config.prefix}".rstrip("/") + "/"
        _OPENED[self._base] = self

    def where(self, name: str, *, raw: bool) -> str:
        """Where a table's objects are, for messages."""
        return f"{self._base}{objects.table_prefix(name, raw=raw)}"

    def key(self, name: str) -> str:
        return name.removeprefix(self._base)

    def days(self, name: str, *, raw: bool) -> list[date]:
        """The event days that have objects of a raw topic or warehouse table."""
        found = map(layout.parse_day_dir, self.store.subdirs(objects.table_prefix(name, raw=raw)))
        return sorted(day for day in found if day is not None)

    def urls(self, prefixes: Sequence[str]) -> list[str]:
        """The URLs of every object under ``prefixes`` (listed side by side), remembered
        with their size and time for :meth:`identity`."""
        found = [info for infos in parallel(self.store.list, prefixes) for info in infos]
        urls = {self.store.object_url(info.key): info for info in found}
        with self._lock:
            if len(self._seen) + len(urls) > SEEN_LIMIT:
                self._seen.clear()
            self._seen.update(urls)
        return sorted(urls)

    def read(self, names: Sequence[str]) -> list[tuple[str, bytes | None]]:
        """The bytes of the objects ``names`` (URLs; None for one deleted since listed)."""

        def one(name: str) -> bytes | None:
            try:
                return self.store.read(self.key(name))
            except FileNotFoundError:
                return None

        return list(zip(names, parallel(one, names), strict=True))

    def identity(self, names: Iterable[str]) -> tuple[tuple[str, int, int, int], ...]:
        """(URL, 0, size, time written) of each object that exists: what changes when a
        rollup replaces it (the place of a local file's inode is unused)."""
        out = []
        for name in names:
            with self._lock:
                info = self._seen.get(name)
            if info is None:
                info = self.store.stat(self.key(name))
            if info is not None:
                out.append((name, 0, info.size, info.mtime_ns or 0))
        return tuple(out)


Root: TypeAlias = Path | StoreRoot
# Stores opened by this process, by URL: a name a scan gives back (an object's URL) is
# opened again through its store, with its credentials, when a read of it fails.
_OPENED: weakref.WeakValueDictionary[str, StoreRoot] = weakref.WeakValueDictionary()


def open_root(settings: Settings) -> Root:
    """The tables' files of ``settings``: its ``--store``, or the data root."""
    if settings.store is None:
        return settings.data_dir
    return StoreRoot(S3Store(settings.store))


def owner(name: str) -> StoreRoot | None:
    """The open store whose object ``name`` is (None: a local path)."""
    for base, root in list(_OPENED.items()):
        if name.startswith(base):
            return root
    return None


def day_prefixes(
    root: StoreRoot, name: str, spans: list[Span], *, raw: bool
) -> tuple[list[str], bool]:
    """The prefixes to list for the objects of ``spans`` (a whole day, or for raw the
    hours of a day that a span only partly covers), and whether the table has any day."""
    days = root.days(name, raw=raw)
    prefixes: list[str] = []
    for day in days:
        start = datetime.combine(day, time.min, UTC)
        if not any(span.holds(start, start + _DAY) for span in spans):
            continue
        hours = [Hour(day, h) for h in range(24)]
        needed = [h for h in hours if any(span.holds_hour(h.start) for span in spans)]
        if raw and len(needed) < len(hours):
            prefixes += [objects.hour_prefix(name, hour) for hour in needed]
        else:
            prefixes.append(objects.day_prefix(name, day, raw=raw))
    return prefixes, bool(days)


def parallel(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``work`` over ``items`` in order, a few at once."""
    if len(items) <= 1:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(PARALLEL_REQUESTS, len(items))) as pool:
        return list(pool.map(work, items))


__all__ = ["Root", "StoreRoot", "day_prefixes", "open_root", "owner", "parallel"]
