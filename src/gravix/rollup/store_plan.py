"""Which hours to build when raw/, warehouse/ and the rollup's manifests are in an object
store (DESIGN §11): the rules of :mod:`gravix.rollup.plan` (the same reasons, the same
manifests), applied to one listing of the store instead of the data root's directories.

An object's name gives its hour and the listing its size, so planning costs one listing
per area plus one read per manifest of an hour that has one; the manifests are small and
read in parallel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from gravix import schema
from gravix.rollup.plan import REMOVED, REQUESTED, PlannedHour, hour_reason, parse_manifest
from gravix.storage import layout, objects
from gravix.storage.layout import Hour
from gravix.storage.store import Store

# Manifest reads in flight at once: each is one small GET that mostly waits on the network.
READERS = 16


@dataclass
class StoreView:
    """One look at the store: its raw objects (name → size, by topic and hour), its
    warehouse objects and its manifests (read)."""

    raw: dict[str, dict[Hour, dict[str, int]]] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)
    manifests: dict[str, dict[Hour, dict[str, Any] | None]] = field(default_factory=dict)


def key(root: Path, path: Path) -> str:
    """The object name of ``path`` (a path of the layout under ``root``)."""
    return layout.object_key(root, path)


def _prefix(root: Path, directory: Path) -> str:
    return key(root, directory) + "/"


def read_manifests(store: Store, keys: dict[Hour, str]) -> dict[Hour, dict[str, Any] | None]:
    """The manifests named (None for one that is gone or unreadable: build that hour)."""

    def one(name: str) -> dict[str, Any] | None:
        try:
            return parse_manifest(store.read(name))
        except FileNotFoundError:
            return None

    with ThreadPoolExecutor(READERS) as pool:
        return dict(zip(keys, pool.map(one, keys.values()), strict=True))


def look(store: Store, root: Path, tables: list[str]) -> StoreView:
    """List the raw objects, the warehouse and the manifests of ``tables``."""
    view = StoreView()
    for topic in {schema.TABLE_SOURCE[t] for t in tables}:
        hours: dict[Hour, dict[str, int]] = {}
        for info in store.list(layout.raw_object_prefix(topic)):
            hour = objects.raw_hour_of(topic, info.key)
            if hour is not None:
                hours.setdefault(hour, {})[info.key.rsplit("/", 1)[-1]] = info.size
        view.raw[topic] = dict(sorted(hours.items()))
    for out in sorted({out for table in tables for out in schema.TABLE_OUTPUTS[table]}):
        listed = store.list(_prefix(root, layout.warehouse_table_dir(root, out)))
        view.outputs.update(info.key for info in listed)
    for table in tables:
        names: dict[Hour, str] = {}
        for info in store.list(_prefix(root, layout.rollup_state_dir(root, table))):
            hour = layout.object_hour(info.key)
            if hour is not None and info.key == key(
                root, layout.rollup_manifest_path(root, table, hour)
            ):
                names[hour] = info.key
        view.manifests[table] = read_manifests(store, names)
    return view


def output_exists(root: Path, view: StoreView, table: str, hour: Hour) -> bool:
    """Whether every table the hour task writes has an object that holds ``hour``, as
    :func:`gravix.rollup.plan` asks of a data root's files."""
    return all(
        any(key(root, p) in view.outputs for p in layout.table_outputs(root, out, hour))
        for out in schema.TABLE_OUTPUTS[table]
    )


def plan_store_table(root: Path, view: StoreView, table: str) -> list[PlannedHour]:
    """The hours of ``table`` that need work, for the same reasons as on a data root."""
    raw = view.raw[schema.TABLE_SOURCE[table]]
    manifests = view.manifests[table]
    plan: list[PlannedHour] = []
    for hour in sorted(set(raw) | set(manifests)):
        files = raw.get(hour, {})
        exists = partial(output_exists, root, view, table, hour)
        reason = hour_reason(manifests.get(hour), files, exists)
        if reason is not None:
            plan.append(PlannedHour(table, hour, reason, raw_bytes=sum(files.values())))
    return plan


def store_window_plan(
    view: StoreView, tables: list[str], start: datetime | None, end: datetime | None
) -> tuple[list[PlannedHour], int]:
    """Every hour of the window with raw objects (``requested``) and those whose raw
    objects are gone (``removed``), as :func:`gravix.rollup.plan.window_plan` plans them;
    also how many hours of the window have no raw objects."""
    plan: list[PlannedHour] = []
    without_raw = 0
    for table in tables:
        raw = view.raw[schema.TABLE_SOURCE[table]]
        manifests = view.manifests[table]
        for hour in sorted(set(raw) | set(manifests)):
            if start is not None and hour.start < start:
                continue
            if end is not None and hour.start >= end:
                continue
            files = raw.get(hour, {})
            if files:
                plan.append(PlannedHour(table, hour, REQUESTED, raw_bytes=sum(files.values())))
                continue
            without_raw += 1
            manifest = manifests.get(hour)
            if manifest is not None and manifest["files"]:
                plan.append(PlannedHour(table, hour, REMOVED))
    return plan, without_raw
