"""The data root's safety, checked at the start of every command: no symlink under it that
could lead a write or a read elsewhere, and a permission error named in the operator's
terms (path, owner, fix) rather than a traceback.

The root itself may be a symlink (``/var/lib/gravix -> /srv/gravix``): it is resolved once.
Below it, no area (``buffer``, ``raw``, ``warehouse``, ``quarantine``, ``state``), no topic
or table directory, no day or hour directory and no file beside them may be a link.
"""

from __future__ import annotations

import errno as errno_mod
import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gravix.errors import ConfigError, GravixError, StorageError
from gravix.storage import layout

_DENIED = (errno_mod.EACCES, errno_mod.EPERM)


def check_root(root: Path, *, create: bool = False) -> Path:
    """Refuse a data root that is not a directory or holds a symlink; returns ``root``.
    With ``create`` a missing root is fine (the server and the demo make it)."""
    if not root.exists():
        if create and not root.is_symlink():
            return root
        raise ConfigError(
            f"data root {root} does not exist", hint="pass --data-dir or set GRAVIX_DATA_DIR"
        )
    if not root.is_dir():
        raise ConfigError(
            f"data root {root} is not a directory",
            hint="--data-dir (or GRAVIX_DATA_DIR) names the directory that holds buffer/, "
            "raw/, warehouse/ and state/",
        )
    with explain_permissions(root):
        layout.refuse_links(root)
    return root


def owner_of(path: Path) -> str:
    """The user name owning ``path`` (or its nearest existing parent), else its uid."""
    for candidate in (path, *path.parents):
        try:
            uid = candidate.stat().st_uid
        except OSError:
            continue
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)
    return "?"


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def permission_error(root: Path, path: Path | str, action: str = "access") -> StorageError:
    """The error for a path this user may not ``action``: who owns it and the fix."""
    where = Path(path)
    owner = owner_of(where)
    user = current_user()
    if owner == user:
        fix = f"make it writable: chmod -R u+rwX {root}"
    else:
        fix = f"run Gravix as {owner}, or give the data root to {user}: chown -R {user} {root}"
    return StorageError(
        f"permission denied: {user} cannot {action} {where} (owned by {owner})",
        hint=fix,
        errno=errno_mod.EACCES,
    )


def _denied_path(exc: BaseException) -> str | None:
    """The path of a permission error, also when it was wrapped in a StorageError."""
    for err in (exc, exc.__cause__):
        if isinstance(err, OSError) and err.errno in _DENIED:
            return str(err.filename) if err.filename is not None else ""
    return None


@contextmanager
def explain_permissions(root: Path) -> Iterator[None]:
    """Turn a permission error under ``root`` into a :class:`StorageError` that names the
    path, its owner and the ``chown`` that fixes it."""
    try:
        yield
    except (OSError, StorageError) as exc:
        denied = _denied_path(exc)
        if denied is None or (isinstance(exc, GravixError) and "permission denied:" in str(exc)):
            raise
        raise permission_error(root, denied or root) from exc


@contextmanager
def guarded(root: Path, *, create: bool = False) -> Iterator[Path]:
    """A library entry point's frame: the root checked before anything is written, and
    permission errors explained."""
    check_root(root, create=create)
    with explain_permissions(root):
        yield root


def writable_places(root: Path) -> list[Path]:
    """Where the commands write: the lock and rollup state, the warehouse, raw, the
    buffer and quarantine (each judged by its nearest existing directory)."""
    return [
        layout.locks_dir(root),
        layout.rollup_runs_path(root).parent,
        layout.warehouse_root(root),
        layout.raw_root(root),
        layout.buffer_root(root),
        layout.quarantine_root(root),
    ]


def first_unwritable(root: Path) -> Path | None:
    """The first place a command will write that this user cannot, or None."""
    locks = layout.locks_dir(root)
    if locks.is_dir():
        for lock in sorted(locks.iterdir()):
            if lock.is_file() and not os.access(lock, os.W_OK):
                return lock
    for place in writable_places(root):
        probe = place
        while not probe.exists() and probe != root and probe.parent != probe:
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            return probe
    return None
