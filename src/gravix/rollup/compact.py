"""Compaction: a closed day of an hourly table becomes one file, with DESIGN §7 kept.

A month is 720 hour files per table, and opening files is most of what a query over a month
costs (in any engine). Once a day is over, its hour files are joined into the day's
``part-day.parquet`` (rows sorted by service, then minute, as in every file; written in row
groups, so a filter on ``service`` skips most of a day by the row groups' statistics), and
the hour files go.

Readers never see an hour missing or twice:

* the compacted directory is assembled in the staging area (``state/compact/…``) and
  swapped with the live day directory in one step (:func:`gravix.storage.durable.exchange`):
  a reader that globs the table (DuckDB, polars, Trino) finds the hour files or the day
  file, never both and never neither. Where the system cannot swap two directories, days
  are not compacted (the hour files serve as before);
* Gravix's readers also take a day file as the whole day
  (:func:`gravix.storage.layout.readable_files`), should hour files ever sit beside it.

The hours' manifests are not touched, so the rollup's incremental planning still compares
each hour's raw file set. A late fact into a compacted day rebuilds its hour from raw as
before, and :func:`replace_hour` puts the new rows in the day file in place of the hour's
old ones (the day's other rows are copied, not recomputed), replacing the file atomically.

Compaction runs under the rollup lock (``gravix cleanup`` holds it), so no rollup writes a
day while it is compacted; within one rollup, the hours of a compacted day are one task
(:mod:`gravix.rollup.run`), built one after another by one worker.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from gravix import schema
from gravix.rollup.files import read_parquet, remove_output, write_parquet
from gravix.rollup.plan import read_manifest
from gravix.storage import durable, layout
from gravix.storage.layout import Hour

if TYPE_CHECKING:
    import polars as pl

# The hourly tables: the daily table is one file per day already.
COMPACTED_TABLES = (schema.REQUEST_METRICS_MINUTE, schema.REQUEST_METRICS_HOUR)
SORT_KEYS = ["service", "bucket_start", "method", "path_template"]
# Rows per row group of a day file: a few groups per service on a busy day, so a filter on
# one service reads a fraction of the day, and few enough that a footer stays small. The
# hour table has a sixtieth of the minutes' rows, each with a longer histogram.
ROW_GROUP_ROWS = 4096
HOUR_TABLE_ROW_GROUP_ROWS = 128


def row_group_rows(table: str) -> int:
    return HOUR_TABLE_ROW_GROUP_ROWS if table == schema.REQUEST_METRICS_HOUR else ROW_GROUP_ROWS


@dataclass(frozen=True)
class CompactedDay:
    """One day joined into one file."""

    table: str
    day: date
    hour_files: int
    rows: int


@dataclass
class CompactReport:
    """What a compaction did: the days it joined, and those it left as they were (why)."""

    days: list[CompactedDay] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (day directory, why)


def _names(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as entries:
            return [e.name for e in entries if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _hour_names(names: list[str]) -> list[str]:
    return sorted(n for n in names if layout.is_hour_file(n))


def closed_days(root: Path, today: date) -> list[tuple[str, date]]:
    """Days before ``today`` (UTC) of the hourly tables that still have hour files."""
    found: list[tuple[str, date]] = []
    for table in COMPACTED_TABLES:
        for day, directory in layout.warehouse_days(root, table).items():
            if day < today and _hour_names(_names(directory)):
                found.append((table, day))
    return found


def _read_day(directory: Path, names: list[str]) -> pl.DataFrame:
    import polars as pl

    frames = [pl.read_parquet(directory / name) for name in names]
    return pl.concat(frames, how="vertical").sort(SORT_KEYS)


def _remove_tree(directory: Path) -> None:
    """Remove a staging day directory and what it holds (no link is followed)."""
    if directory.is_symlink():
        durable.unlink(directory)
    elif directory.is_dir():
        shutil.rmtree(directory)
        durable.fsync_dir(directory.parent)


class CannotCompact(Exception):
    """A day that is left as it is, and why."""


def _check_complete(root: Path, table: str, day: date, hours: list[str]) -> None:
    """A day of a table written beside another (the hour table beside the minutes) is
    joined only when it holds every hour the other holds: a day file stands for all 24
    hours, so one joined while an hour was still to be built would hide that hour's minutes
    from the readers that take the hour table's files as the whole of those hours."""
    built_by = schema.BUILT_BY[table]
    if built_by == table:
        return
    live = layout.warehouse_day_dir(root, table, day)
    held = {h for name in hours for h in layout.parse_warehouse_file(table, live / name)}
    for hour in (Hour(day, h) for h in range(24)):
        if hour in held:
            continue
        manifest = read_manifest(root, built_by, hour)
        if manifest is not None and int(manifest.get("facts", 0) or 0) > 0:
            raise CannotCompact(f"hour {hour.hour:02d} is not built yet (run `gravix rollup`)")


def compact_day(root: Path, table: str, day: date) -> CompactedDay | None:
    """Join the hour files of one day into its day file, swapped in for the day's
    directory in one step; None when there is nothing to join. The directory swapped out
    stays in the staging area until the next compaction removes it, so a reader that
    opened it just before the swap fails to open its files (and plans again) instead of
    finding it emptied."""
    live = layout.warehouse_day_dir(root, table, day)
    names = [n for n in _names(live) if not n.startswith(".")]
    hours = _hour_names(names)
    if not hours:
        return None
    if layout.DAY_FILE in names:  # joined already: the day file stands for these
        for name in hours:
            durable.unlink(live / name)
        return None
    if sorted(names) != hours:
        others = sorted(set(names) - set(hours))
        raise CannotCompact(f"it holds other files than hour files ({', '.join(others[:3])})")
    _check_complete(root, table, day, hours)
    rows = _read_day(live, hours)
    staging = layout.compact_staging_dir(root, table, day)
    _remove_tree(staging)
    durable.makedirs(staging)
    write_parquet(root, rows, staging / layout.DAY_FILE, row_group_rows=row_group_rows(table))
    if not durable.exchange(staging, live):
        _remove_tree(staging)
        raise CannotCompact(
            "this file system cannot swap two directories in one step (Linux "
            "renameat2 RENAME_EXCHANGE), which compaction needs to keep readers whole"
        )
    return CompactedDay(table, day, len(hours), rows.height)


def compact_closed_days(root: Path, *, today: date) -> CompactReport:
    """Join every closed day (before ``today``, UTC) that still has hour files; a day that
    cannot be joined (a file that does not read, a file system that cannot swap) is left
    as it is and named. The caller holds the rollup lock."""
    import polars as pl

    report = CompactReport()
    for staging in layout.compact_staging_days(root):
        _remove_tree(staging)  # swapped out by the last compaction, or never swapped in
    for table, day in closed_days(root, today):
        try:
            done = compact_day(root, table, day)
        except (CannotCompact, OSError, pl.exceptions.PolarsError) as exc:
            where = str(layout.warehouse_day_dir(root, table, day))
            report.skipped.append((where, str(exc).splitlines()[0][:200]))
            continue
        if done is not None:
            report.days.append(done)
    return report


def replace_hour(root: Path, table: str, hour: Hour, rows: pl.DataFrame) -> bool:
    """When ``hour``'s day is compacted, put ``rows`` in its day file in place of the
    hour's old rows (one atomic replacement) and return True; else False, and the caller
    writes the hour's own file."""
    import polars as pl

    day_file = layout.warehouse_day_file(root, table, hour.day)
    if table not in COMPACTED_TABLES:
        return False
    if not day_file.exists():
        return False
    live = day_file.parent
    for name in _hour_names(_names(live)):
        durable.unlink(live / name)  # leftovers: the day file stands for them
    old = read_parquet(day_file, f"put {hour} in it")
    start = pl.lit(hour.start).cast(old.schema["bucket_start"])
    end = pl.lit(hour.start + timedelta(hours=1)).cast(old.schema["bucket_start"])
    kept = old.filter((pl.col("bucket_start") < start) | (pl.col("bucket_start") >= end))
    day = pl.concat([kept, rows.select(old.columns)], how="vertical").sort(SORT_KEYS)
    if day.height:
        write_parquet(root, day, day_file, row_group_rows=row_group_rows(table))
    else:
        remove_output(day_file)
    return True
