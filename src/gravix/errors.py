"""Every error the library raises on purpose.

The tree::

    GravixError                 anything Gravix reports to a user (message + hint)
    ├── ConfigError             bad settings or flags; the CLI exits 2
    ├── ValidationError         one event or request body broke the data contract
    ├── StorageError            the disk refused a write or an fsync
    │   └── DurabilityLost      an fsync failed: the process must stop accepting
    ├── StoreError              the object store refused a request or could not be reached
    ├── LockHeld                another live process holds a lock this job needs
    ├── UnsafePath              a path would leave the data root
    └── QueryError              SQL or a preset could not be answered
        └── StatementRefused    (gravix.query.sql) a write or a file read; the CLI exits 2

Only the CLI boundary (``gravix.cli``) prints errors and exits.
"""

from __future__ import annotations


class GravixError(Exception):
    """Base class; catch it at a boundary that reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(GravixError):
    """A setting or flag is invalid; catch to report a usage error (exit 2)."""

    exit_code = 2


class ValidationError(GravixError):
    """An event or body broke the data contract; the server answers 400 with it."""


class StorageError(GravixError):
    """A write to disk failed (ENOSPC, EIO, read-only); nothing was acknowledged."""

    def __init__(self, message: str, *, hint: str | None = None, errno: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.errno = errno


class DurabilityLost(StorageError):
    """An fsync failed. The page cache state is unknown, so the process must not
    retry the fsync or acknowledge anything more; it exits and recovery takes over."""


class StoreError(GravixError):
    """An object store request failed (unreachable, refused, a confirmation that did not
    match); catch it to retry later: nothing local was given up."""


class LockHeld(GravixError):
    """Another live process holds the lock; ``holder`` describes it."""

    def __init__(self, message: str, *, hint: str | None = None, holder: str = "") -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


class UnsafePath(GravixError):
    """A path resolves outside the data root (for example through a symlink)."""


class QueryError(GravixError):
    """SQL or a preset failed; the message names the problem in one line."""
