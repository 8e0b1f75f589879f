"""What a topic buffer reports to its owner: the observer's callbacks (metrics, lifecycle)
and the snapshots it hands to /metrics and /ready."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class CommitStats:
    """What one group commit did; handed to the ``on_commit`` observer."""

    requests: int
    events: int
    bytes: int
    fsync_seconds: float


@dataclass
class BufferState:
    """A snapshot for /metrics and /ready."""

    topic: str
    active_file: str
    active_bytes: int
    active_age_seconds: float
    sealed_pending: int
    rotations: int
    failed: bool
    storage_error: str | None


@dataclass
class BufferObserver:
    """Callbacks into the owner's metrics and lifecycle; all optional."""

    on_commit: Callable[[str, CommitStats], None] | None = None
    on_rotate: Callable[[str, str], None] | None = None  # (topic, reason)
    on_storage_error: Callable[[str, BaseException], None] | None = None
    on_fatal: Callable[[str, BaseException], None] | None = None
    on_publish: Callable[[str, int], None] | None = None  # (topic, lines)
