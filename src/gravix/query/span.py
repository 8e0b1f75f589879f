"""A span of event time, and the partition column that names a file's day: what a scan
needs to pick its files, kept apart from the SQL side (:mod:`gravix.query.prune` reads
spans from a parsed WHERE) so that a reader of the tables does not load the SQL parser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

PARTITION_COLUMN = "event_day"


@dataclass(frozen=True)
class Span:
    """Event time ``[start, end)``; None is unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    def narrow(self, other: Span) -> Span:
        starts = [s for s in (self.start, other.start) if s is not None]
        ends = [e for e in (self.end, other.end) if e is not None]
        return Span(max(starts) if starts else None, min(ends) if ends else None)

    def holds_hour(self, hour_start: datetime) -> bool:
        """Whether the hour starting at ``hour_start`` may hold a moment of the span."""
        return (self.start is None or hour_start + timedelta(hours=1) > self.start) and (
            self.end is None or hour_start < self.end
        )
