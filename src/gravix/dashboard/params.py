"""The data API's query parameters, read and checked: every bad value is a ConfigError
(the app answers 400 with it), never an engine error later.

Windows are whole minutes (the warehouse holds minutes): ``from`` is floored and ``to``
ceiled. A series' points are aligned to the step since the Unix epoch, so a 15-minute
step starts at :00, :15, … whatever ``from`` says, and the first point is complete.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from gravix.errors import ConfigError
from gravix.units import ceil_to, floor_to, parse_time

MINUTE = timedelta(minutes=1)
DEFAULT_WINDOW = timedelta(hours=3)
MAX_WINDOW = timedelta(days=400)
# A default step keeps a series at or under this many points: about one per four pixels
# of a wide chart, and the steps the common monitoring tools choose (5 minutes for a day,
# 10 for two, an hour for a week, 3 hours for a month). A step of whole hours is read from
# request_metrics_hour; a user who wants finer points zooms in or asks for a step.
MAX_POINTS = 300
MAX_EXPLICIT_POINTS = 20_000  # an explicit step may ask for more, up to this
NICE_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
COMPARE = {"1d": timedelta(days=1), "7d": timedelta(days=7)}
SORTS = (
    "errors",
    "requests",
    "error_rate",
    "p95_ms",
    "client_errors",
    "client_error_rate",
    "p50_ms",
    "p99_ms",
    "service",
    "method",
    "path_template",
)
TEXT_SORTS = ("service", "method", "path_template")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
MAX_LIMIT = 1000
_SERVICE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_KNOWN = {
    "from",
    "to",
    "service",
    "method",
    "path",
    "step",
    "compare",
    "apdex_t_ms",
    "sort",
    "limit",
    "order",
}


@dataclass(frozen=True)
class Filters:
    service: str | None = None
    method: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Query:
    """One request of the data API, checked."""

    start: datetime  # inclusive, minute-aligned (a series aligns it further to its step)
    end: datetime  # exclusive, minute-aligned
    filters: Filters
    step_seconds: int | None = None  # as given; None: chosen
    compare: timedelta | None = None
    apdex_t_ms: float | None = None
    sort: str = "errors"
    descending: bool = True
    limit: int = 10

    def shifted(self, delta: timedelta) -> Query:
        return replace(self, start=self.start - delta, end=self.end - delta)


def parse_query(params: Mapping[str, str], *, now: datetime | None = None) -> Query:
    """Read the parameters of any data API route (each route uses the ones it needs)."""
    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise ConfigError(
            f"unknown parameter {unknown[0]!r}", hint=f"known: {', '.join(sorted(_KNOWN))}"
        )
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start, end = _window(params.get("from"), params.get("to"), now)
    sort = _choice(params.get("sort"), "sort", SORTS, "errors")
    natural = "asc" if sort in TEXT_SORTS else "desc"
    order = _choice(params.get("order"), "order", ("asc", "desc"), natural)
    return Query(
        start=start,
        end=end,
        filters=_filters(params),
        step_seconds=_step(params.get("step")),
        compare=_compare(params.get("compare")),
        apdex_t_ms=_threshold(params.get("apdex_t_ms")),
        sort=sort,
        descending=order == "desc",
        limit=_whole(params.get("limit"), "limit", 10, 1, MAX_LIMIT),
    )


def _window(since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    end_at = _time(until, "to", now) if until else now
    start_at = _time(since, "from", now) if since else end_at - DEFAULT_WINDOW
    start, end = floor_to(start_at, MINUTE), ceil_to(end_at, MINUTE)
    if end <= start:
        raise ConfigError(f"the window is empty: from {_z(start)} is not before to {_z(end)}")
    if end - start > MAX_WINDOW:
        raise ConfigError(f"the window is longer than {MAX_WINDOW.days} days")
    return start, end


def _time(value: str, name: str, now: datetime) -> datetime:
    if len(value) > 64:
        raise ConfigError(f"{name} is too long to be a time")
    moment = parse_time(value, name, now=now)
    if not datetime(1971, 1, 1, tzinfo=UTC) <= moment <= datetime(9000, 1, 1, tzinfo=UTC):
        raise ConfigError(f"{name} {value!r} is out of range")
    return moment


def _filters(params: Mapping[str, str]) -> Filters:
    service = params.get("service") or None
    if service is not None and not _SERVICE.match(service):
        raise ConfigError("service must be 1–128 characters of A-Z a-z 0-9 . _ -")
    method = params.get("method") or None
    if method is not None:
        method = _choice(method.upper(), "method", METHODS, "GET")
    path = params.get("path") or None
    if path is not None and (not path.startswith("/") or len(path) > 256):
        raise ConfigError("path must be a path template: starts with / and ≤ 256 characters")
    return Filters(service, method, path)


def _step(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    step = _whole(value, "step", 60, 60, int(MAX_WINDOW.total_seconds()))
    if step % 60:
        raise ConfigError(
            f"step must be a whole number of minutes in seconds (60, 300, 3600, …), got {step}"
        )
    return step


def _compare(value: str | None) -> timedelta | None:
    if value in (None, "", "off", "none"):
        return None
    return COMPARE[_choice(value, "compare", tuple(COMPARE), "1d")]


def _threshold(value: str | None) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"apdex_t_ms must be a number of ms, got {value!r}") from None
    if not (math.isfinite(number) and 0 < number <= 3_600_000):
        raise ConfigError(f"apdex_t_ms must be > 0 and ≤ 3600000 ms, got {value!r}")
    return number


def _choice(value: str | None, name: str, allowed: tuple[str, ...], default: str) -> str:
    if value in (None, ""):
        return default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value[:40]!r}")
    return value


def _whole(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    if len(value) > 12 or not (value.isascii() and value.isdigit()):
        raise ConfigError(f"{name} must be a whole number, got {value[:40]!r}")
    number = int(value)
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def series_step(query: Query) -> int:
    """The step of a series: as given (at most MAX_EXPLICIT_POINTS points), else the
    smallest nice step that keeps it at or under MAX_POINTS."""
    if query.step_seconds is not None:
        if points(query, query.step_seconds) > MAX_EXPLICIT_POINTS:
            raise ConfigError(
                f"step {query.step_seconds} s gives more than {MAX_EXPLICIT_POINTS} points",
                hint="leave step out to get a step chosen for the window",
            )
        return query.step_seconds
    for step in NICE_STEPS:
        if points(query, step) <= MAX_POINTS:
            return step
    day = NICE_STEPS[-1]
    step = day * math.ceil((query.end - query.start).total_seconds() / day / (MAX_POINTS - 1))
    return step


def aligned_start(query: Query, step: int) -> datetime:
    return floor_to(query.start, timedelta(seconds=step))


def points(query: Query, step: int) -> int:
    span = (query.end - aligned_start(query, step)).total_seconds()
    return math.ceil(span / step)


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
