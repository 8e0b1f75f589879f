"""A table's files as a reader finds them: one pass over its directories, each file with
the hours its name says it holds, and no symlink among them or anywhere under the data root.

Every query, SQL statement and dashboard answer lists its tables afresh, since a rollup may
add or replace a file at any moment: nothing listed is kept between calls. What is kept is
the meaning of a name (:func:`layout.file_hours`), which depends on its text alone. The
walk that refuses links elsewhere under the root leaves out the table's own directory,
which the listing reads anyway and checks entry by entry (the type of an entry comes with
its directory listing: no ``stat`` per file).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from pathlib import Path

from gravix.storage import layout, links
from gravix.storage.layout import Hour


def warehouse_files(root: Path, table: str) -> list[tuple[str, tuple[Hour, ...]]]:
    """Every data file of ``table`` that a reader uses (:func:`layout.readable_files`), day
    by day, with the hours it holds; raises UnsafePath at a link under the data root."""
    areas = _refuse_links_beside(root, layout.warehouse_table_dir, table)
    files: list[tuple[str, tuple[Hour, ...]]] = []
    for day, day_dir in _day_dirs(areas, layout.warehouse_table_dir(root, table)):
        paths = {
            e.name: e.path for e in _entries(areas, day_dir) if e.is_file(follow_symlinks=False)
        }
        for name in layout.readable_files(table, list(paths)):
            files.append((paths[name], layout.file_hours(table, day, name)))
    return files


def raw_files(root: Path, topic: str) -> list[tuple[str, Hour]]:
    """Every complete raw file of ``topic`` (as :func:`layout.raw_files` judges them), hour
    by hour, with its hour; raises UnsafePath at a link under the data root above the
    files (a link among the files is not one of them, as for the rollup)."""
    areas = _refuse_links_beside(root, layout.raw_topic_dir, topic)
    files: list[tuple[str, Hour]] = []
    for day, day_dir in _day_dirs(areas, layout.raw_topic_dir(root, topic)):
        hours = [
            (hour, entry.path)
            for entry in _entries(areas, day_dir)
            if (hour := layout.parse_hour_dir(entry.name)) is not None
            and entry.is_dir(follow_symlinks=False)
        ]
        for hour, hour_dir in sorted(hours):
            files.extend((path, Hour(day, hour)) for path in _raw_names(hour_dir))
    return files


def _refuse_links_beside(
    root: Path, directory: Callable[[Path, str], Path], name: str
) -> list[Path]:
    """Refuse a link under the data root outside ``directory(root, name)`` (which the
    caller lists and checks itself); returns the areas, to name a link found there."""
    real = Path(os.path.realpath(root))
    areas = layout.link_areas(real)
    links.refuse_links(areas, skip=str(directory(real, name)))
    return areas


def _day_dirs(areas: list[Path], base: Path) -> list[tuple[date, str]]:
    """The event-day directories of a table or topic directory, by day."""
    days = [
        (day, entry.path)
        for entry in _entries(areas, str(base))
        if (day := layout.parse_day_dir(entry.name)) is not None
        and entry.is_dir(follow_symlinks=False)
    ]
    return sorted(days)


def _entries(areas: list[Path], directory: str) -> list[os.DirEntry[str]]:
    """The entries of ``directory`` (none once cleanup has removed it); raises UnsafePath
    naming the first link under the root when one is among them."""
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if entry.is_symlink():
            links.refuse_seen(areas, entry.path)
    return entries


def _raw_names(hour_dir: str) -> list[str]:
    try:
        with os.scandir(hour_dir) as listing:
            return sorted(
                e.path
                for e in listing
                if e.name.endswith(layout.JSONL)
                and not e.name.startswith(".")
                and e.is_file(follow_symlinks=False)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []
