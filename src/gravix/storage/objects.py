"""What a reader of a store lists: the object-name prefix of a table's day or hour, and
what a listed name says it holds.

A store's object names are the data root's relative paths (DESIGN §11), so every prefix
here is :mod:`gravix.storage.layout`'s path under an empty root, and every name is judged
by layout's own parsers: the two layouts cannot drift apart.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from gravix.storage import layout
from gravix.storage.layout import Hour

_ROOT = Path("/")  # any root: only the relative part is kept


def _prefix(directory: Path) -> str:
    return f"{layout.object_key(_ROOT, directory)}/"


def table_prefix(name: str, *, raw: bool) -> str:
    """The prefix of every object of a raw topic or a warehouse table."""
    if raw:
        return _prefix(layout.raw_topic_dir(_ROOT, name))
    return _prefix(layout.warehouse_table_dir(_ROOT, name))


def day_prefix(name: str, day: date, *, raw: bool) -> str:
    """The prefix of one event day's objects of a raw topic or a warehouse table."""
    if raw:
        return _prefix(layout.raw_day_dir(_ROOT, name, day))
    return _prefix(layout.warehouse_day_dir(_ROOT, name, day))


def hour_prefix(topic: str, hour: Hour) -> str:
    """The prefix of one hour's raw objects of ``topic``."""
    return _prefix(layout.raw_hour_dir(_ROOT, topic, hour))


def raw_hour_of(topic: str, key: str) -> Hour | None:
    """The hour a raw object of ``topic`` holds, by its name; None for anything a local
    listing would skip (not under an hour partition, not a ``.jsonl`` object)."""
    parts = key.split("/")
    if len(parts) != 5 or not key.startswith(table_prefix(topic, raw=True)):
        return None
    day, hour = layout.parse_day_dir(parts[2]), layout.parse_hour_dir(parts[3])
    if day is None or hour is None or not parts[4].endswith(layout.JSONL):
        return None
    return Hour(day, hour)


def warehouse_day_of(table: str, key: str) -> date | None:
    """The event day of a warehouse data object of ``table``, by its name (None: not one)."""
    parts = key.split("/")
    if len(parts) != 4 or not key.startswith(table_prefix(table, raw=False)):
        return None
    return layout.parse_day_dir(parts[2]) if parts[3].endswith(layout.PARQUET) else None
