"""Durable, atomic file operations and locks.

Every operation first calls :func:`gravix.storage.faults.check`, so that tests can inject
faults (EIO, ENOSPC, death) at any of them; see that module.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from gravix.errors import LockHeld, UnsafePath
from gravix.storage.faults import check as _check

# Re-exported: tests and commands reach the hook through this module.
from gravix.storage.faults import install_fault_plan as install_fault_plan
from gravix.storage.faults import set_hook as set_hook
from gravix.storage.layout import tmp_path

# --- primitive operations -----------------------------------------------------------------------


# Every file under the data root is opened for writing without following a symlink: a link
# planted where Gravix writes must not make it write (or truncate) a file elsewhere.
def open_nofollow(path: Path, flags: int) -> int:
    """``os.open`` that refuses a symlink with :class:`UnsafePath`."""
    try:
        return os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno != errno_mod.ELOOP:
            raise
        raise UnsafePath(
            f"{path} is a symlink to {os.path.realpath(path)}; Gravix does not write through links",
            hint="remove the link; files under the data root must be regular files",
        ) from None


def open_for_write(path: Path, flags: int) -> int:
    return open_nofollow(path, os.O_WRONLY | flags)


def open_append(path: Path) -> int:
    """Open (creating) a file for appending; the caller makes the directory entry durable."""
    _check("open", path)
    return open_for_write(path, os.O_APPEND | os.O_CREAT)


def write_all(fd: int, data: bytes | memoryview, path: str | Path = "") -> None:
    _check("write", path)
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_fd(fd: int, path: str | Path = "") -> None:
    """fdatasync: file data and the size, which is what appends need."""
    _check("fsync", path)
    os.fdatasync(fd)


def fsync_dir(path: Path) -> None:
    _check("fsync_dir", path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        _check("mkdir", d)
        try:
            os.mkdir(d)
        except FileExistsError:
            continue
        fsync_dir(d.parent)


def replace(src: Path, dst: Path, *, sync_dir: bool = True) -> None:
    """Atomically rename ``src`` over ``dst`` and make the new entry durable."""
    _check("replace", dst)
    os.replace(src, dst)
    if sync_dir:
        fsync_dir(dst.parent)
        if src.parent != dst.parent:
            fsync_dir(src.parent)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_CANNOT_EXCHANGE = {errno_mod.EINVAL, errno_mod.ENOSYS, errno_mod.ENOTSUP, errno_mod.EXDEV}


def exchange(a: Path, b: Path) -> bool:
    """Swap two directories (or files) in one step, as Linux's ``renameat2`` with
    ``RENAME_EXCHANGE`` does: every reader that resolves either path sees the old entry or
    the new, never neither. False (and nothing changed) where the system cannot."""
    import ctypes  # only compaction swaps: not a cost of every command's start

    _check("replace", b)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE):
        code = ctypes.get_errno()
        if code in _CANNOT_EXCHANGE:
            return False
        raise OSError(code, os.strerror(code), str(b))
    fsync_dir(b.parent)
    if a.parent != b.parent:
        fsync_dir(a.parent)
    return True


def unlink(path: Path, *, missing_ok: bool = True, sync_dir: bool = True) -> None:
    _check("unlink", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        if not missing_ok:
            raise
        return
    if sync_dir:
        fsync_dir(path.parent)


def rmdir_if_empty(path: Path) -> bool:
    _check("rmdir", path)
    try:
        os.rmdir(path)
    except OSError:
        return False
    fsync_dir(path.parent)
    return True


def atomic_write(path: Path, data: bytes, *, make_parents: bool = True) -> None:
    """Write ``path`` so that readers see the old content or the new, never a mix:
    write a temporary sibling, fsync it, rename it over ``path``, fsync the directory."""
    if make_parents:
        makedirs(path.parent)
    tmp = tmp_path(path)
    fd = open_for_write(tmp, os.O_CREAT | os.O_TRUNC)
    try:
        _check("open", tmp)
        write_all(fd, data, tmp)
        fsync_fd(fd, tmp)
    except BaseException:
        os.close(fd)
        with suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    replace(tmp, path)


def create_new(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` only if no file has that name (False if one has),
    atomically: readers never see it empty. The content is written and fsynced under a
    temporary name first, then hard-linked to ``path`` (which fails if it exists)."""
    makedirs(path.parent)
    tmp = tmp_path(path, unique=True)
    fd = open_for_write(tmp, os.O_CREAT | os.O_EXCL)
    try:
        write_all(fd, data, tmp)
        fsync_fd(fd, tmp)
    finally:
        os.close(fd)
    try:
        _check("create", path)
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        return False
    finally:
        with suppress(OSError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return True


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write (e.g. by pyarrow); on success fsync it and
    rename it over ``path`` atomically. On error the temporary file is removed."""
    makedirs(path.parent)
    tmp = tmp_path(path)
    with suppress(FileNotFoundError):
        os.unlink(tmp)  # a left-over (or a planted link): the writer must create a new file
    try:
        yield tmp
        _check("open", tmp)
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            fsync_fd(fd, tmp)
        finally:
            os.close(fd)
        replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


# --- locks --------------------------------------------------------------------------------------


def _holder_info(purpose: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "purpose": purpose,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "an unknown process"
    return (
        f"pid {info.get('pid', '?')} on {info.get('host', '?')} "
        f"({info.get('purpose', '?')}, since {info.get('since', '?')})"
    )


class FileLock:
    """An exclusive ``flock`` on a file under ``state/locks``. The kernel drops it when
    the holder dies, so a lock left by a dead process is simply taken over."""

    def __init__(self, path: Path, purpose: str, *, shared: bool = False) -> None:
        self.path = path
        self.purpose = purpose
        self.shared = shared
        self._fd: int | None = None

    def acquire(self, *, wait: bool = False, timeout: float | None = None) -> FileLock:
        makedirs(self.path.parent)
        access = os.O_RDONLY if self.shared else os.O_WRONLY
        fd = open_nofollow(self.path, access | os.O_CREAT)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or (deadline is not None and time.monotonic() >= deadline):
                    os.close(fd)
                    holder = describe_holder(self.path)
                    raise LockHeld(
                        f"{self.path.stem} lock is held by {holder}",
                        hint="wait for that run to finish; a lock of a dead process is taken over",
                        holder=holder,
                    ) from None
                time.sleep(0.05)
        if not self.shared:
            # The holder details are a courtesy for describe_holder. On a full disk the
            # write fails; raising here would leak a descriptor that keeps the lock taken
            # for the rest of the process, and block `gravix cleanup` from freeing space.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(_holder_info(self.purpose)).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            if not self.shared:
                # An empty file means "released cleanly"; holder info left behind in a free
                # lock therefore marks a holder that died, which doctor reports.
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_locked(path: Path) -> bool:
    """True if some live process holds an flock on ``path`` (orphan detection)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (FileNotFoundError, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
