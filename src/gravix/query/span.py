"""Spans of event time: what a read needs, and which hours (files) can hold it. Kept apart
from the SQL parser, so that the presets, which need spans but no SQL, start without it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

PARTITION_COLUMN = "event_day"
HOUR = timedelta(hours=1)


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
        return self.holds(hour_start, hour_start + HOUR)

    def holds(self, start: datetime, end: datetime) -> bool:
        """Whether ``[start, end)`` and the span share a moment."""
        return (self.start is None or end > self.start) and (self.end is None or start < self.end)
