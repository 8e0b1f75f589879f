"""Which hours to build: the one planner, asked by ``gravix rollup`` and by the doctor.

An hour of a table needs work when its raw file set (names and sizes) differs from the
manifest of its last build (``new``, ``changed``, ``removed``), or when its output file
has gone (``missing``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gravix import schema
from gravix.errors import ConfigError
from gravix.storage import layout
from gravix.storage.layout import Hour

if TYPE_CHECKING:
    pass

NEW, CHANGED, REMOVED, MISSING, REQUESTED = "new", "changed", "removed", "missing", "requested"


@dataclass(frozen=True, order=True)
class PlannedHour:
    """One hour of one table that needs work, and why."""

    table: str
    hour: Hour
    reason: str  # new | changed | removed | missing | requested

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "hour": str(self.hour), "reason": self.reason}


def _current_files(root: Path, table: str, hour: Hour) -> dict[str, int]:
    """Names and sizes of the hour's raw files: the files :func:`layout.raw_files` lists,
    read with one ``scandir`` (planning stats every raw file of the retention)."""
    hour_dir = layout.raw_hour_dir(root, schema.TABLE_SOURCE[table], hour)
    out: dict[str, int] = {}
    try:
        entries = os.scandir(hour_dir)
    except (FileNotFoundError, NotADirectoryError):
        return out
    with entries:
        for entry in entries:
            name = entry.name
            if not name.endswith(layout.JSONL) or name.startswith("."):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    out[name] = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return out


def read_manifest(root: Path, table: str, hour: Hour) -> dict[str, Any] | None:
    """The record of what ``hour`` of ``table`` was built from, or None (never built or
    unreadable, which both mean "build it")."""
    path = layout.rollup_manifest_path(root, table, hour)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def _manifest_hours(root: Path, table: str) -> dict[Hour, Path]:
    out: dict[Hour, Path] = {}
    base = layout.rollup_state_dir(root, table)
    if not base.is_dir():
        return out
    for day_entry in os.scandir(base):
        day = layout.parse_day_dir(day_entry.name)
        if day is None or not day_entry.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(day_entry.path):
            stem = entry.name.removesuffix(".json")
            value = layout.parse_hour_dir(stem) if entry.name.endswith(".json") else None
            if value is not None:
                out[Hour(day, value)] = Path(entry.path)
    return out


def plan_table(root: Path, table: str, only: set[Hour] | None = None) -> list[PlannedHour]:
    raw = layout.raw_hours(root, schema.TABLE_SOURCE[table])
    hours = set(raw) | set(_manifest_hours(root, table))
    if only is not None:
        hours &= only
    plan: list[PlannedHour] = []
    for hour in sorted(hours):
        files = _current_files(root, table, hour) if hour in raw else {}
        manifest = read_manifest(root, table, hour)
        if manifest is None:
            if files:
                plan.append(PlannedHour(table, hour, NEW))
        elif manifest["files"] != files:
            plan.append(PlannedHour(table, hour, CHANGED if files else REMOVED))
        elif (
            int(manifest.get("facts", 0)) > 0
            and not layout.warehouse_output(root, table, hour).exists()
        ):
            plan.append(PlannedHour(table, hour, MISSING))
    return plan


def choose_tables(tables: Iterable[str] | str | None) -> list[str]:
    if tables is None:
        return list(schema.TABLES)
    if isinstance(tables, str):
        tables = [tables]
    chosen: list[str] = []
    for name in tables:
        if name == "all":
            return list(schema.TABLES)
        if name not in schema.TABLES:
            raise ConfigError(
                f"unknown table {name!r}", hint=f"use one of {', '.join(schema.TABLES)} or all"
            )
        chosen.append(name)
    return chosen


def plan_hours(root: Path, table: str | None = None) -> list[PlannedHour]:
    """Hours whose raw file set differs from what they were built from (``new``,
    ``changed``, ``removed``), or whose output file has gone (``missing``)."""
    return [p for t in choose_tables(table) for p in plan_table(root, t)]


def window_plan(
    root: Path, tables: list[str], start: datetime | None, end: datetime | None
) -> tuple[list[PlannedHour], int]:
    """Every hour of the window that has raw files (``requested``), and those whose raw
    files are gone (``removed``); also how many hours of the window have no raw files."""
    plan: list[PlannedHour] = []
    without_raw = 0
    for table in tables:
        topic = schema.TABLE_SOURCE[table]
        raw = layout.raw_hours(root, topic)
        known = set(raw) | set(_manifest_hours(root, table))
        for hour in sorted(known):
            if (start is not None and hour.start < start) or (
                end is not None and hour.start >= end
            ):
                continue
            files = _current_files(root, table, hour) if hour in raw else {}
            if files:
                plan.append(PlannedHour(table, hour, REQUESTED))
            else:
                without_raw += 1
                manifest = read_manifest(root, table, hour)
                if manifest is not None and manifest["files"]:
                    plan.append(PlannedHour(table, hour, REMOVED))
    return plan, without_raw
