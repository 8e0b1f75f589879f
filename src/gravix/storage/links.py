"""Links and escapes: nothing under the data root is read or written through a symlink,
and no path leaves the root. :mod:`layout` names the directories; this module checks them."""

from __future__ import annotations

import os
from pathlib import Path

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
    order. Every answer comes from the directory listings (no ``stat`` per entry): every
    query checks the whole root this way."""
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


def refuse_links(areas: list[Path]) -> None:
    """Raise :class:`UnsafePath` naming the first symlink under ``areas`` and where it
    leads: a listing never follows one, nor skips it silently."""
    link = find_link(areas)
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
