"""A rollup run's summary, its progress, and how its plan is sorted: shared by the run on a
data root (:mod:`gravix.rollup.run`) and the run on a store (:mod:`gravix.rollup.store_run`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from gravix import schema
from gravix.errors import ConfigError
from gravix.report import to_json
from gravix.rollup.build import HourResult
from gravix.rollup.plan import REMOVED, PlannedHour, choose_tables
from gravix.storage.layout import Hour
from gravix.units import ceil_to, floor_to, parse_time, utc_stamp

HOUR = timedelta(hours=1)

Progress = Callable[[str, int, int], None]


@dataclass
class RollupSummary:
    """The outcome of one rollup run (``gravix rollup`` renders it)."""

    JSON_EXTRA: ClassVar[tuple[str, ...]] = (
        "widened",
        "notes",
        "nothing_to_do",
        "message",
        "hours_built",
        "files",
        "bytes",
        "lines",
        "bad_lines",
        "duplicates",
        "facts",
        "rows",
    )

    mode: str  # incremental | window | rebuild
    tables: list[str]
    start: datetime | None = None
    end: datetime | None = None
    requested_start: datetime | None = None
    requested_end: datetime | None = None
    hours: list[HourResult] = field(default_factory=list)
    hours_without_raw: int = 0
    # Whole seconds: the runs log records when a run started, and the planner compares.
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    seconds: float = 0.0

    @property
    def notes(self) -> list[str]:
        return [n for n in (self.widened_note,) if n]

    @property
    def hours_built(self) -> int:
        return len({(h.table, h.hour) for h in self.hours})

    @property
    def files(self) -> int:
        return self.total("files")

    @property
    def bytes(self) -> int:
        return self.total("bytes")

    @property
    def lines(self) -> int:
        return self.total("lines")

    @property
    def duplicates(self) -> int:
        return self.total("duplicates")

    @property
    def facts(self) -> int:
        return self.total("facts")

    @property
    def rows(self) -> int:
        return self.total("rows")

    @property
    def widened(self) -> bool:
        return (self.requested_start, self.requested_end) != (self.start, self.end)

    @property
    def widened_note(self) -> str | None:
        if not self.widened or self.start is None or self.end is None:
            return None
        return (
            f"window widened to whole hours: {utc_stamp(self.start)} – {utc_stamp(self.end)} "
            f"(end exclusive)"
        )

    @property
    def nothing_to_do(self) -> bool:
        return not self.hours

    def total(self, name: str) -> int:
        return sum(int(getattr(h, name)) for h in self.hours)

    @property
    def bad_lines(self) -> int:
        return self.total("bad_lines")

    @property
    def message(self) -> str:
        if self.nothing_to_do:
            if self.mode == "incremental":
                return "Nothing to do: every raw hour is already rolled up."
            return "Nothing to do: no raw data in the window."
        hours = len({(h.table, h.hour) for h in self.hours})
        text = (
            f"Rolled up {hours} hour(s): {self.total('facts'):,} facts → "
            f"{self.total('rows'):,} rows"
        )
        if self.total("duplicates"):
            text += f", {self.total('duplicates'):,} duplicate(s) dropped"
        if self.bad_lines:
            text += f", {self.bad_lines:,} bad line(s) skipped"
        return text + f" in {self.seconds:.1f}s."


@dataclass
class Ticker:
    """Counts the hours a run has finished, for its progress bar (``progress``)."""

    progress: Progress | None
    total: int
    done: int = 0

    def __post_init__(self) -> None:
        if self.progress is not None:
            self.progress("rollup", 0, self.total)

    def __call__(self, label: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(label, self.done, self.total)


@dataclass
class SortedPlan:
    """A plan's hours by how they are built: kept as they are (raw removed), hour tasks of
    request_metrics_minute, and the days of service_events_daily."""

    removed: list[PlannedHour] = field(default_factory=list)
    hourly: list[PlannedHour] = field(default_factory=list)
    daily: dict[date, dict[Hour, PlannedHour]] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: list[PlannedHour]) -> SortedPlan:
        out = cls()
        for planned in plan:
            if planned.reason == REMOVED:
                out.removed.append(planned)
            elif planned.table == schema.REQUEST_METRICS_MINUTE:
                out.hourly.append(planned)
            else:
                out.daily.setdefault(planned.hour.day, {})[planned.hour] = planned
        return out


def run_document(summary: RollupSummary) -> dict[str, Any]:
    """A run's entry in the runs log: its summary without the per-hour rows."""
    document: dict[str, Any] = to_json(summary)
    document.pop("hours")
    document["bad_lines_by_hour"] = {
        f"{h.table} {h.hour}": h.bad_lines for h in summary.hours if h.bad_lines
    }
    return document


def new_summary(
    tables: Iterable[str] | str | None,
    start: datetime | str | None,
    end: datetime | str | None,
) -> RollupSummary:
    """The summary a run starts from: its tables and its window (checked, widened to whole
    hours), or incremental without one."""
    chosen = choose_tables(tables)
    requested_start = None if start in (None, "") else parse_time(start, "--start-time")
    requested_end = None if end in (None, "") else parse_time(end, "--end-time")
    if requested_start and requested_end and requested_start >= requested_end:
        raise ConfigError("--start-time must be before --end-time (the end is exclusive)")
    windowed = requested_start is not None or requested_end is not None
    return RollupSummary(
        mode="window" if windowed else "incremental",
        tables=chosen,
        requested_start=requested_start,
        requested_end=requested_end,
        start=floor_to(requested_start, HOUR) if requested_start else None,
        end=ceil_to(requested_end, HOUR) if requested_end else None,
    )
