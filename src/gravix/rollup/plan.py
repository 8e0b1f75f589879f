"""Which hours to build: the one planner, asked by ``gravix rollup`` and by the doctor.

An hour of a table needs work when its raw file set (names and sizes) differs from the
manifest of its last build (``new``, ``changed``, ``removed``), or when one of its output
files has gone (``missing``; ``request_metrics_minute``'s hour task also writes
``request_metrics_hour``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from gravix import schema
from gravix.errors import ConfigError
from gravix.rollup.runlog import last_full_plans
from gravix.storage import layout
from gravix.storage.layout import Hour

NEW, CHANGED, REMOVED, MISSING, REQUESTED = "new", "changed", "removed", "missing", "requested"


@dataclass(frozen=True, order=True)
class PlannedHour:
    """One hour of one table that needs work, and why."""

    table: str
    hour: Hour
    reason: str  # new | changed | removed | missing | requested
    # When the newest raw file of the hour arrived (epoch seconds; 0 if it has none).
    newest_mtime: float = field(default=0.0, compare=False, metadata={"json": False})
    # The size of its raw files when planned (how much work it is).
    raw_bytes: int = field(default=0, compare=False, metadata={"json": False})


def _raw_files(root: Path, table: str, hour: Hour) -> tuple[dict[str, int], float]:
    """Names and sizes of the hour's raw files (the files :func:`layout.raw_files` lists,
    read with one ``scandir``: planning stats every raw file of the retention), and the
    newest one's mtime."""
    hour_dir = layout.raw_hour_dir(root, schema.TABLE_SOURCE[table], hour)
    out: dict[str, int] = {}
    newest = 0.0
    try:
        entries = os.scandir(hour_dir)
    except (FileNotFoundError, NotADirectoryError):
        return out, newest
    with entries:
        for entry in entries:
            name = entry.name
            if not name.endswith(layout.JSONL) or name.startswith("."):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out[name] = st.st_size
                    newest = max(newest, st.st_mtime)
            except FileNotFoundError:
                continue
    return out, newest


def _current_files(root: Path, table: str, hour: Hour) -> dict[str, int]:
    return _raw_files(root, table, hour)[0]


def read_manifest(root: Path, table: str, hour: Hour) -> dict[str, Any] | None:
    """The record of what ``hour`` of ``table`` was built from, or None (never built or
    unreadable, which both mean "build it")."""
    try:
        return parse_manifest(layout.rollup_manifest_path(root, table, hour).read_bytes())
    except OSError:
        return None


def parse_manifest(text: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def _unchanged_since(root: Path, table: str, hour: Hour, hour_dir: Path, since: float) -> bool:
    """True if the hour cannot need work: raw files enter and leave an hour directory only
    by rename and unlink, which update its mtime; a directory older than the start of the
    last incremental run (which compared every hour with its manifest and rebuilt those
    that differed) whose manifest and output exist is up to date. Three ``stat`` calls."""
    try:
        if os.stat(hour_dir).st_mtime >= since:
            return False
        os.stat(layout.rollup_manifest_path(root, table, hour))
    except FileNotFoundError:
        return False
    return _output_exists(root, table, hour)


def _output_exists(root: Path, table: str, hour: Hour) -> bool:
    """Whether every table the hour task writes has a file that holds ``hour``: its own,
    or its day's (daily table, compacted day). The day's is asked first: all but the last
    day of a month are compacted. A warehouse made before ``request_metrics_hour`` existed
    thus gets that table built by its next rollup."""
    return all(
        any(path.exists() for path in reversed(layout.table_outputs(root, out, hour)))
        for out in schema.TABLE_OUTPUTS[table]
    )


def hour_reason(
    manifest: dict[str, Any] | None, files: dict[str, int], output_exists: Callable[[], bool]
) -> str | None:
    """Why an hour needs work, from its manifest and its raw files now (None: it does not);
    the output is looked for only when the rest says the hour is up to date."""
    if manifest is None:
        return NEW if files else None
    if manifest["files"] != files:
        return CHANGED if files else REMOVED
    if int(manifest.get("facts", 0) or 0) > 0 and not output_exists():
        return MISSING
    return None


def plan_table(
    root: Path, table: str, only: set[Hour] | None = None, *, since: float | None = None
) -> list[PlannedHour]:
    """The hours of ``table`` that need work; with ``since`` (when the last incremental
    run started), hours whose raw directory has not changed since are passed over."""
    raw = layout.raw_hours(root, schema.TABLE_SOURCE[table])
    hours = set(raw) | set(layout.manifest_hours(root, table))
    if only is not None:
        hours &= only
    plan: list[PlannedHour] = []
    for hour in sorted(hours):
        if (
            since is not None
            and hour in raw
            and _unchanged_since(root, table, hour, raw[hour], since)
        ):
            continue
        files, newest = _raw_files(root, table, hour) if hour in raw else ({}, 0.0)
        manifest = read_manifest(root, table, hour)
        reason = hour_reason(manifest, files, partial(_output_exists, root, table, hour))
        if reason is not None:
            plan.append(PlannedHour(table, hour, reason, newest, sum(files.values())))
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


def plan_hours(
    root: Path, table: str | None = None, *, since_last_run: bool = False
) -> list[PlannedHour]:
    """Hours whose raw file set differs from what they were built from (``new``,
    ``changed``, ``removed``), or whose output file has gone (``missing``).

    With ``since_last_run``, an hour whose raw directory has not changed since the last
    recorded incremental run started is taken as up to date if its manifest and output
    exist (three ``stat`` calls instead of reading the hour): the same answer, at a small
    fraction of the walk on a month of minute-rotated raw files (the doctor asks so)."""
    planned = last_full_plans(root) if since_last_run else {}
    return [p for t in choose_tables(table) for p in plan_table(root, t, since=planned.get(t))]


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
        known = set(raw) | set(layout.manifest_hours(root, table))
        for hour in sorted(known):
            if (start is not None and hour.start < start) or (
                end is not None and hour.start >= end
            ):
                continue
            files = _current_files(root, table, hour) if hour in raw else {}
            if files:
                plan.append(PlannedHour(table, hour, REQUESTED, raw_bytes=sum(files.values())))
            else:
                without_raw += 1
                manifest = read_manifest(root, table, hour)
                if manifest is not None and manifest["files"]:
                    plan.append(PlannedHour(table, hour, REMOVED))
    return plan, without_raw
