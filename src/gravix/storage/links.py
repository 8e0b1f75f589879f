"""Links and escapes: nothing under the data root is read or written through a symlink,
and no path leaves the root. :mod:`layout` names the directories; this module checks them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

from gravix.errors import UnsafePath

# How deep below the root directories are listed: <area>/<topic>/<day> lists its hours.
_SCAN_DEPTH = 3


def find_link(areas: list[Path]) -> Path | None:
    """The first symlink in or under ``areas`` (the data root's top directories): an area,
    a topic or table directory, a day or hour directory, or a file beside them."""
    for path in areas:
        if path.is_symlink():
            return path
        found = _scan(str(path), 1) if path.is_dir() else None
        if found is not None:
            return Path(found)
    return None


def _scan(path: str, depth: int) -> str | None:
    """The first link in directory ``path`` or below it (to ``_SCAN_DEPTH``), by name
    order. Every answer comes from the directory listings (no ``stat`` per entry)."""
    try:
        with os.scandir(path) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return None
    for entry in entries:
        if entry.is_symlink():
            return entry.path
        if depth < _SCAN_DEPTH and entry.is_dir(follow_symlinks=False):
            found = _scan(entry.path, depth + 1)
            if found is not None:
                return found
    return None


def _first_met(path: str, depth: int, skip: str) -> str | None:
    """A link in directory ``path`` or below it (to ``_SCAN_DEPTH``, not descending into
    ``skip``), the first met in listing order: :func:`_scan` without the sorting, for the
    walk that every query pays."""
    try:
        with os.scandir(path) as listing:
            entries = list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return None
    for entry in entries:
        if entry.is_symlink():
            return entry.path
    if depth == _SCAN_DEPTH:
        return None
    for entry in entries:
        if entry.path != skip and entry.is_dir(follow_symlinks=False):
            found = _first_met(entry.path, depth + 1, skip)
            if found is not None:
                return found
    return None


def refuse_links(areas: list[Path], *, skip: str = "") -> None:
    """Raise :class:`UnsafePath` naming the first symlink under ``areas`` and where it
    leads: a listing never follows one, nor skips it silently. A caller that lists the
    directory ``skip`` itself (and refuses a link it meets there with :func:`refuse_seen`)
    has it left out of this walk, but not the check that ``skip`` is no link."""
    for path in areas:
        seen = str(path) if os.path.islink(path) else _first_met(str(path), 1, skip)
        if seen is not None:
            refuse_seen(areas, seen)


def refuse_seen(areas: list[Path], seen: Path | str) -> NoReturn:
    """Raise :class:`UnsafePath` for a link met under ``areas``: the first one by name
    order, as every listing names it (``seen``, should it be gone by now)."""
    link = find_link(areas) or Path(seen)
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
