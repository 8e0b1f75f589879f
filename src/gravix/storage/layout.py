"""The one place that knows paths and file names under the data root.

Pure functions (apart from :func:`new_file_id` and :func:`ensure_inside`, which
look at the clock and the file system); every other module builds paths here.

::

    <root>/buffer/<topic>/active-<id>.jsonl
    <root>/buffer/<topic>/sealed-<id>.jsonl
    <root>/raw/<topic>/event_day=YYYY-MM-DD/hour=HH/<id>.jsonl
    <root>/warehouse/<table>/event_day=YYYY-MM-DD/part-HH.parquet   (hourly tables)
    <root>/warehouse/<table>/event_day=YYYY-MM-DD/part-day.parquet  (daily tables)
    <root>/quarantine/<kind>/<stamp>-<name>
    <root>/state/locks/<name>.lock
    <root>/state/rollup/<table>/event_day=YYYY-MM-DD/hour=HH.json
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import ClassVar

from gravix.errors import UnsafePath
from gravix.schema.contract import SERVICE_EVENTS_DAILY, TABLES, TOPICS

TMP_SUFFIX = ".tmp"
ACTIVE_PREFIX = "active-"
SEALED_PREFIX = "sealed-"
JSONL = ".jsonl"
PARQUET = ".parquet"

_DAY_DIR = re.compile(r"^event_day=(\d{4}-\d{2}-\d{2})$")
_HOUR_DIR = re.compile(r"^hour=(\d{2})$")
_BUFFER_NAME = re.compile(r"^(active|sealed)-([A-Za-z0-9_-]+)\.jsonl$")
_FILE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_HOUR_FILE = re.compile(r"^part-(\d{2})\.parquet$")
BUFFER_NAMES = "active-<id>.jsonl or sealed-<id>.jsonl"


@dataclass(frozen=True, order=True)
class Hour:
    """One hour of event time (UTC): the unit of rotation and rollup."""

    JSON_AS_STR: ClassVar[bool] = True

    day: date
    hour: int

    @classmethod
    def of(cls, moment: datetime) -> Hour:
        moment = moment.astimezone(UTC)
        return cls(moment.date(), moment.hour)

    @classmethod
    def of_epoch_hour(cls, hour: int) -> Hour:
        """The hour that starts ``hour`` × 3600 seconds after the Unix epoch."""
        return cls.of(datetime.fromtimestamp(hour * 3600, tz=UTC))

    @property
    def start(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, self.hour, tzinfo=UTC)

    @property
    def day_str(self) -> str:
        return self.day.isoformat()

    def __str__(self) -> str:
        return f"{self.day.isoformat()}T{self.hour:02d}"


def new_file_id() -> str:
    """A unique, time-sortable id for a buffer file (and the raw files made from it)."""
    return f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"


def check_file_id(file_id: str) -> str:
    if not _FILE_ID.match(file_id):
        raise UnsafePath(f"not a valid file id: {file_id!r}")
    return file_id


def _topic(topic: str) -> str:
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}")
    return topic


def _table(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    return table


# --- top-level areas -------------------------------------------------------------------------


def buffer_root(root: Path) -> Path:
    return root / "buffer"


def raw_root(root: Path) -> Path:
    return root / "raw"


def warehouse_root(root: Path) -> Path:
    return root / "warehouse"


def quarantine_root(root: Path) -> Path:
    return root / "quarantine"


def state_root(root: Path) -> Path:
    return root / "state"


# --- buffer ------------------------------------------------------------------------------------


def buffer_dir(root: Path, topic: str) -> Path:
    return buffer_root(root) / _topic(topic)


def active_path(root: Path, topic: str, file_id: str) -> Path:
    return buffer_dir(root, topic) / f"{ACTIVE_PREFIX}{check_file_id(file_id)}{JSONL}"


def sealed_path(root: Path, topic: str, file_id: str) -> Path:
    return buffer_dir(root, topic) / f"{SEALED_PREFIX}{check_file_id(file_id)}{JSONL}"


def parse_buffer_name(path: Path) -> tuple[str, str] | None:
    """``(kind, file_id)`` for ``active-<id>.jsonl`` / ``sealed-<id>.jsonl``, else None."""
    m = _BUFFER_NAME.match(path.name)
    return (m.group(1), m.group(2)) if m else None


# --- raw -----------------------------------------------------------------------------------------


def raw_topic_dir(root: Path, topic: str) -> Path:
    return raw_root(root) / _topic(topic)


def day_dir_name(day: date) -> str:
    return f"event_day={day.isoformat()}"


def hour_dir_name(hour: int) -> str:
    return f"hour={hour:02d}"


def raw_day_dir(root: Path, topic: str, day: date) -> Path:
    return raw_topic_dir(root, topic) / day_dir_name(day)


def raw_hour_dir(root: Path, topic: str, hour: Hour) -> Path:
    return raw_day_dir(root, topic, hour.day) / hour_dir_name(hour.hour)


def raw_file_path(root: Path, topic: str, hour: Hour, file_id: str) -> Path:
    """The raw file that buffer file ``file_id`` contributes to ``hour``. Deterministic, so
    a rotation redone after a crash rewrites the same name instead of adding a second."""
    return raw_hour_dir(root, topic, hour) / f"{check_file_id(file_id)}{JSONL}"


def parse_day_dir(name: str) -> date | None:
    m = _DAY_DIR.match(name)
    if not m:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        return None


def parse_hour_dir(name: str) -> int | None:
    m = _HOUR_DIR.match(name)
    if not m:
        return None
    value = int(m.group(1))
    return value if value < 24 else None


def raw_hours(root: Path, topic: str) -> dict[Hour, Path]:
    """Every raw hour partition directory of a topic, by hour (no symlinks followed)."""
    out: dict[Hour, Path] = {}
    base = raw_topic_dir(root, topic)
    refuse_links(root)
    if not base.is_dir():
        return out
    for day_entry in os.scandir(base):
        day = parse_day_dir(day_entry.name)
        if day is None or not day_entry.is_dir(follow_symlinks=False):
            continue
        for hour_entry in os.scandir(day_entry.path):
            hour = parse_hour_dir(hour_entry.name)
            if hour is not None and hour_entry.is_dir(follow_symlinks=False):
                out[Hour(day, hour)] = Path(hour_entry.path)
    return dict(sorted(out.items()))


def raw_files(hour_dir: Path) -> list[Path]:
    """The complete raw files of one hour partition (no temporaries, no symlinks)."""
    if not hour_dir.is_dir():
        return []
    return sorted(
        Path(e.path)
        for e in os.scandir(hour_dir)
        if e.name.endswith(JSONL)
        and not e.name.startswith(".")
        and e.is_file(follow_symlinks=False)
    )


def raw_glob(root: Path, topic: str) -> str:
    return str(raw_topic_dir(root, topic) / "event_day=*" / "hour=*" / f"*{JSONL}")


# --- warehouse --------------------------------------------------------------------------------


def warehouse_table_dir(root: Path, table: str) -> Path:
    return warehouse_root(root) / _table(table)


def warehouse_day_dir(root: Path, table: str, day: date) -> Path:
    return warehouse_table_dir(root, table) / day_dir_name(day)


def warehouse_hour_file(root: Path, table: str, hour: Hour) -> Path:
    return warehouse_day_dir(root, table, hour.day) / f"part-{hour.hour:02d}{PARQUET}"


def warehouse_day_file(root: Path, table: str, day: date) -> Path:
    return warehouse_day_dir(root, table, day) / f"part-day{PARQUET}"


def warehouse_output(root: Path, table: str, hour: Hour) -> Path:
    """The file that holds ``hour`` of ``table``: its hour file, or its day's file for the
    daily table."""
    if table == SERVICE_EVENTS_DAILY:
        return warehouse_day_file(root, table, hour.day)
    return warehouse_hour_file(root, table, hour)


def parse_warehouse_file(table: str, path: Path) -> list[Hour]:
    """The hours a warehouse file holds, judged by its path (``part-HH`` or ``part-day``)."""
    day = parse_day_dir(path.parent.name)
    if day is None or not path.name.endswith(PARQUET):
        return []
    if table == SERVICE_EVENTS_DAILY:
        return [Hour(day, h) for h in range(24)] if path.name == f"part-day{PARQUET}" else []
    m = _HOUR_FILE.match(path.name)
    return [Hour(day, int(m.group(1)))] if m and int(m.group(1)) < 24 else []


def is_hour_file(name: str) -> bool:
    """Whether ``name`` is an hourly table's file (``part-HH.parquet``)."""
    return _HOUR_FILE.match(name) is not None


def warehouse_glob(root: Path, table: str) -> str:
    return str(warehouse_table_dir(root, table) / "**" / f"*{PARQUET}")


def warehouse_days(root: Path, table: str) -> dict[date, Path]:
    out: dict[date, Path] = {}
    base = warehouse_table_dir(root, table)
    refuse_links(root)
    if not base.is_dir():
        return out
    for entry in os.scandir(base):
        day = parse_day_dir(entry.name)
        if day is not None and entry.is_dir(follow_symlinks=False):
            out[day] = Path(entry.path)
    return dict(sorted(out.items()))


# --- state, locks, quarantine --------------------------------------------------------------------


def locks_dir(root: Path) -> Path:
    return state_root(root) / "locks"


def lock_path(root: Path, name: str) -> Path:
    return locks_dir(root) / f"{check_file_id(name)}.lock"


def rollup_state_dir(root: Path, table: str) -> Path:
    return state_root(root) / "rollup" / _table(table)


def rollup_manifest_path(root: Path, table: str, hour: Hour) -> Path:
    return (
        rollup_state_dir(root, table) / day_dir_name(hour.day) / f"{hour_dir_name(hour.hour)}.json"
    )


def newest_manifest_hour(root: Path, table: str) -> Hour | None:
    """The newest hour of ``table`` with a rollup manifest (None before the first rollup):
    the newest day directory that holds one, then its newest hour. A few directory reads."""
    base = rollup_state_dir(root, table)
    try:
        days = sorted(
            (day, entry.path)
            for entry in os.scandir(base)
            if (day := parse_day_dir(entry.name)) is not None
            and entry.is_dir(follow_symlinks=False)
        )
        for day, path in reversed(days):
            hours = [
                value
                for entry in os.scandir(path)
                if entry.name.endswith(".json")
                and (value := parse_hour_dir(entry.name.removesuffix(".json"))) is not None
            ]
            if hours:
                return Hour(day, max(hours))
    except OSError:
        return None
    return None


def rollup_runs_path(root: Path) -> Path:
    """Summaries of recent rollup runs (bad-line counts etc.), read by doctor."""
    return state_root(root) / "rollup" / "runs.jsonl"


def demo_marker_path(root: Path) -> Path:
    """Written by ``gravix demo``: this data root holds demo data it may replace."""
    return state_root(root) / "demo.json"


def quarantine_path(root: Path, kind: str, original: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return quarantine_root(root) / check_file_id(kind) / f"{stamp}-{original.name}"


def tmp_path(final: Path) -> Path:
    """Temporary sibling of ``final``: hidden and not matching ``*.jsonl`` / ``*.parquet``."""
    return final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")


def is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX)


# --- safety -------------------------------------------------------------------------------------


AREAS = (buffer_root, raw_root, warehouse_root, quarantine_root, state_root)
# How deep below the root directories are listed: <area>/<topic>/<day> lists its hours.
_SCAN_DEPTH = 3


def find_link(root: Path) -> Path | None:
    """The first symlink under the data root's areas: an area, a topic or table directory,
    a day or hour directory, or a file beside them. The root itself may be a link."""
    real = root.resolve()
    for area in AREAS:
        found = _scan(area(real), 1)
        if found is not None:
            return found
    return None


def _scan(path: Path, depth: int) -> Path | None:
    if path.is_symlink():
        return path
    if depth > _SCAN_DEPTH or not path.is_dir():
        return None
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return None
    for entry in entries:
        if entry.is_symlink():
            return Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            found = _scan(Path(entry.path), depth + 1)
            if found is not None:
                return found
    return None


def refuse_links(root: Path) -> None:
    """Raise :class:`UnsafePath` naming the first symlink under the data root and where it
    leads: a listing never follows one, nor skips it silently."""
    link = find_link(root)
    if link is not None:
        raise UnsafePath(
            f"{link} is a symlink to {os.path.realpath(link)}; Gravix does not read or "
            "write through links under the data root",
            hint=f"remove the link (rm {link}) and move the data it held inside the data root",
        )


def ensure_inside(root: Path, path: Path) -> Path:
    """Return ``path`` if it (after resolving symlinks) stays inside ``root``; else raise."""
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise UnsafePath(
            f"{path} resolves to {real}, outside the data root {real_root}",
            hint="remove the symlink or move the data inside the data root",
        )
    return path
