"""The one place that knows paths and file names under the data root.

Pure functions (apart from :func:`new_file_id` and :func:`ensure_inside`, which
look at the clock and the file system); every other module builds paths here.

::

    <root>/buffer/<topic>/active-<id>.jsonl
    <root>/buffer/<topic>/sealed-<id>.jsonl
    <root>/raw/<topic>/event_day=YYYY-MM-DD/hour=HH/<id>.jsonl
    <root>/warehouse/<table>/event_day=YYYY-MM-DD/part-HH.parquet   (hourly tables)
    <root>/warehouse/<table>/event_day=YYYY-MM-DD/part-day.parquet  (daily tables, and a
                                                                     compacted day of an
                                                                     hourly table)
    <root>/quarantine/<kind>/<stamp>-<name>
    <root>/state/locks/<name>.lock
    <root>/state/rollup/<table>/event_day=YYYY-MM-DD/hour=HH.json
    <root>/state/compact/<table>/event_day=YYYY-MM-DD/             (a day being compacted)

Object names in a store (DESIGN §11) are the same paths relative to the store's root,
``/``-separated; an ingest node's raw objects carry its node id::

    raw/<topic>/event_day=YYYY-MM-DD/hour=HH/<node-id>-<id>.jsonl
    quarantine/<kind>/<node-id>-<name>
    state/leases/<name>/lease-<generation>.json                     (one rollup at a time)
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import ClassVar

from gravix.errors import UnsafePath
from gravix.schema.contract import SERVICE_EVENTS_DAILY, TABLE_OUTPUTS, TOPICS, WAREHOUSE_TABLES
from gravix.storage import links

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
DAY_FILE = f"part-day{PARQUET}"
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

    @cached_property  # kept: a listing compares the hours of every file with each span
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


def file_id_time(file_id: str) -> float | None:
    """When a buffer file id was made (Unix seconds), from its leading clock part."""
    head = file_id.split("-", 1)[0]
    return int(head) / 1e9 if head.isascii() and head.isdigit() else None


def check_file_id(file_id: str) -> str:
    if not _FILE_ID.match(file_id):
        raise UnsafePath(f"not a valid file id: {file_id!r}")
    return file_id


def _topic(topic: str) -> str:
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}")
    return topic


def _table(table: str) -> str:
    if table not in WAREHOUSE_TABLES:
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


@lru_cache(maxsize=4096)
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


def _day_dirs(base: Path) -> dict[date, str]:
    """The event-day directories directly under ``base`` (none if it is missing)."""
    if not base.is_dir():
        return {}
    return {
        day: entry.path
        for entry in os.scandir(base)
        if (day := parse_day_dir(entry.name)) is not None and entry.is_dir(follow_symlinks=False)
    }


def raw_hours(root: Path, topic: str) -> dict[Hour, Path]:
    """Every raw hour partition directory of a topic, by hour (no symlinks followed)."""
    out: dict[Hour, Path] = {}
    refuse_links(root)
    for day, day_path in _day_dirs(raw_topic_dir(root, topic)).items():
        for hour_entry in os.scandir(day_path):
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
    """The file of a whole day: the daily table's, or an hourly table's compacted day."""
    return warehouse_day_dir(root, table, day) / DAY_FILE


def table_outputs(root: Path, table: str, hour: Hour) -> tuple[Path, ...]:
    """The files of one table that may hold ``hour``: for an hourly table its hour file
    and its day's compacted file (which, once there, is the one readers use)."""
    if table == SERVICE_EVENTS_DAILY:
        return (warehouse_day_file(root, table, hour.day),)
    return (warehouse_hour_file(root, table, hour), warehouse_day_file(root, table, hour.day))


def warehouse_outputs(root: Path, table: str, hour: Hour) -> tuple[Path, ...]:
    """The files that an hour task of ``table`` may write for ``hour``: those of
    :func:`table_outputs` for each table the task writes (``request_metrics_minute``'s
    task also writes ``request_metrics_hour``)."""
    return tuple(p for out in TABLE_OUTPUTS[table] for p in table_outputs(root, out, hour))


def readable_files(table: str, names: list[str]) -> list[str]:
    """Of the data file names in one day directory, those a reader uses: a compacted day
    file stands for the whole day, so hour files beside it (left by a compaction that
    stopped before removing them) are never read as well."""
    data = sorted(n for n in names if n.endswith(PARQUET) and not n.startswith("."))
    if table != SERVICE_EVENTS_DAILY and DAY_FILE in data:
        return [DAY_FILE]
    return data


def parse_warehouse_file(table: str, path: Path | str) -> list[Hour]:
    """The hours a warehouse file holds, judged by its path (``part-HH`` or ``part-day``)."""
    directory, _, name = os.fspath(path).rpartition(os.sep)
    day = parse_day_dir(directory.rpartition(os.sep)[2])
    return [] if day is None else list(file_hours(table, day, name))


@lru_cache(maxsize=16384)
def file_hours(table: str, day: date, name: str) -> tuple[Hour, ...]:
    """The hours that file ``name`` of ``table``'s directory for ``day`` holds. A name's
    meaning depends on its text alone, so it is kept: listings judge every name each time."""
    if name == DAY_FILE:
        return tuple(Hour(day, h) for h in range(24))
    m = _HOUR_FILE.match(name)
    if table == SERVICE_EVENTS_DAILY or not m or int(m.group(1)) >= 24:
        return ()
    return (Hour(day, int(m.group(1))),)


def is_hour_file(name: str) -> bool:
    """Whether ``name`` is an hourly table's file (``part-HH.parquet``)."""
    return _HOUR_FILE.match(name) is not None


def warehouse_glob(root: Path, table: str) -> str:
    return str(warehouse_table_dir(root, table) / "**" / f"*{PARQUET}")


def warehouse_days(root: Path, table: str) -> dict[date, Path]:
    refuse_links(root)
    days = _day_dirs(warehouse_table_dir(root, table))
    return {day: Path(path) for day, path in sorted(days.items())}


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


def compact_staging_dir(root: Path, table: str, day: date) -> Path:
    """Where a day's compacted directory is assembled before it is swapped in."""
    return state_root(root) / "compact" / _table(table) / day_dir_name(day)


def compact_staging_days(root: Path) -> list[Path]:
    """Every day directory left in the compaction staging area."""
    base = state_root(root) / "compact"
    if not base.is_dir():
        return []
    return sorted(
        Path(day.path)
        for table in os.scandir(base)
        if table.is_dir(follow_symlinks=False)
        for day in os.scandir(table.path)
        if parse_day_dir(day.name) is not None and day.is_dir(follow_symlinks=False)
    )


def manifest_hours(root: Path, table: str) -> dict[Hour, Path]:
    """Every hour of ``table`` with a rollup manifest, and the manifest's path."""
    out: dict[Hour, Path] = {}
    for day, day_path in _day_dirs(rollup_state_dir(root, table)).items():
        for entry in os.scandir(day_path):
            stem = entry.name.removesuffix(".json")
            value = parse_hour_dir(stem) if entry.name.endswith(".json") else None
            if value is not None:
                out[Hour(day, value)] = Path(entry.path)
    return out


def newest_manifest_hour(root: Path, table: str) -> Hour | None:
    """The newest hour of ``table`` with a rollup manifest (None before the first rollup,
    or when the state cannot be read)."""
    try:
        return max(manifest_hours(root, table), default=None)
    except OSError:
        return None


def rollup_runs_path(root: Path) -> Path:
    """Summaries of recent rollup runs (bad-line counts etc.), read by doctor."""
    return state_root(root) / "rollup" / "runs.jsonl"


def store_marker_path(root: Path) -> Path:
    """Written by an ingest node with a store: its sealed buffer files go to that store."""
    return state_root(root) / "store.json"


def demo_marker_path(root: Path) -> Path:
    """Written by ``gravix demo``: this data root holds demo data it may replace."""
    return state_root(root) / "demo.json"


def quarantine_path(root: Path, kind: str, original: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return quarantine_root(root) / check_file_id(kind) / f"{stamp}-{original.name}"


def tmp_path(final: Path, *, unique: bool = False) -> Path:
    """Temporary sibling of ``final``: hidden and not matching ``*.jsonl`` / ``*.parquet``;
    ``unique`` adds a random part, for writers racing in one process."""
    token = f"-{secrets.token_hex(4)}" if unique else ""
    return final.with_name(f".{final.name}.{os.getpid()}{token}{TMP_SUFFIX}")


def is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX)


# --- object names in a store ----------------------------------------------------------------

STORE_AREAS = ("raw", "warehouse", "quarantine", "state")
_KEY_PART = re.compile(r"^[A-Za-z0-9_=-][A-Za-z0-9_.=-]*$")


def check_object_key(key: str) -> str:
    """``key`` if it is a safe object name: an area, then parts of letters, digits and
    ``_ . = -`` (none hidden, none ``..``) joined by single slashes; else UnsafePath."""
    parts = key.split("/")
    if parts[0] not in STORE_AREAS or len(parts) < 2 or not all(map(_KEY_PART.match, parts)):
        raise UnsafePath(f"not a valid object name: {key!r}")
    return key


def check_key_prefix(prefix: str) -> str:
    """A listing prefix: an area, or a complete object-name directory ending in ``/``."""
    if prefix.rstrip("/") not in STORE_AREAS:
        check_object_key(prefix.rstrip("/"))
    return prefix


def raw_object_prefix(topic: str) -> str:
    return f"raw/{_topic(topic)}/"


def raw_object_key(topic: str, hour: Hour, node_id: str, file_id: str) -> str:
    """The raw object that node ``node_id``'s buffer file ``file_id`` contributes to
    ``hour``: deterministic (an upload redone after a crash rewrites the same name) and
    unique to the node (nodes never overwrite each other's objects)."""
    return (
        f"{raw_object_prefix(topic)}{day_dir_name(hour.day)}/{hour_dir_name(hour.hour)}/"
        f"{check_file_id(node_id)}-{check_file_id(file_id)}{JSONL}"
    )


def quarantine_object_key(kind: str, node_id: str, name: str) -> str:
    return check_object_key(f"quarantine/{check_file_id(kind)}/{check_file_id(node_id)}-{name}")


def object_hour(key: str) -> Hour | None:
    """The hour of a raw object (``…/event_day=…/hour=HH/<name>``) or manifest (``….json``)."""
    parts = key.removesuffix(".json").split("/")
    for day, hour in zip(map(parse_day_dir, parts), map(parse_hour_dir, parts[1:]), strict=False):
        if day is not None and hour is not None:
            return Hour(day, hour)
    return None


def lease_key(name: str, generation: int) -> str:
    """Generation ``generation`` of lease ``name``, zero-padded: names sort by generation."""
    return f"state/leases/{check_file_id(name)}/lease-{generation:012d}.json"


def store_work_dir(root: Path, name: str = "") -> Path:
    """A rollup task's private data root for the store objects it reads and writes."""
    return state_root(root) / "work" / (check_file_id(name) if name else "")


def object_path(root: Path, key: str) -> Path:
    """The file under the data root that holds object ``key`` in the local store."""
    return root.joinpath(*check_object_key(key).split("/"))


def object_key(root: Path, path: Path) -> str:
    """The object name of a file under the data root (inverse of :func:`object_path`)."""
    return "/".join(path.relative_to(root).parts)


def link_areas(real: Path) -> list[Path]:
    """The data root's areas under ``real``, the root's real path (the root may be a link)."""
    areas = (buffer_root, raw_root, warehouse_root, quarantine_root, state_root)
    return [area(real) for area in areas]


def refuse_links(root: Path) -> None:
    """Raise UnsafePath naming the first symlink in the data root's areas and its target."""
    links.refuse_links(link_areas(Path(os.path.realpath(root))))
