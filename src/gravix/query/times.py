"""Time windows for presets: relative (``24h``, ``7d``) or RFC 3339 times, and steps.
A bad value is a usage error (ConfigError, exit 2)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from gravix.errors import ConfigError

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Steps a default picks from, so that a window is shown in about a hundred rows or fewer.
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
MAX_DEFAULT_ROWS = 100


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_when(value: str | datetime, *, now: datetime, name: str = "time") -> datetime:
    """``24h`` / ``90m`` / ``7d`` (ago), ``now``, or an RFC 3339 time with a zone → UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{name} needs a time zone: {value.isoformat()}")
        return value.astimezone(UTC)
    text = value.strip()
    if text.lower() == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(
            f"{name} {value!r} is neither a relative time nor an RFC 3339 time with a zone",
            hint="use e.g. 24h, 90m, 7d, now, or 2026-02-16T10:00:00Z",
        )
    return moment.astimezone(UTC)


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def ceil_minute(moment: datetime) -> datetime:
    floored = floor_minute(moment)
    return floored if floored == moment else floored + timedelta(minutes=1)


def resolve_window(
    since: str | datetime | None,
    until: str | datetime | None,
    *,
    now: datetime | None = None,
    default_since: str = "24h",
) -> tuple[datetime, datetime]:
    """The minute-aligned window ``[since, until)`` the presets read: since is floored and until
    ceiled to whole minutes, because the warehouse holds whole minutes."""
    now = (now or utc_now()).astimezone(UTC)
    start = floor_minute(parse_when(since or default_since, now=now, name="--since"))
    end = ceil_minute(parse_when(until or "now", now=now, name="--until"))
    if end <= start:
        raise ConfigError(
            f"the window is empty: --since {start.isoformat()} is not before --until "
            f"{end.isoformat()}"
        )
    return start, end


def check_step(step_minutes: int) -> int:
    if isinstance(step_minutes, bool) or not isinstance(step_minutes, int) or step_minutes < 1:
        raise ConfigError(f"--step must be a whole number of minutes ≥ 1, got {step_minutes!r}")
    return step_minutes


def default_step(start: datetime, end: datetime) -> int:
    """The smallest nice step that shows the window in at most MAX_DEFAULT_ROWS rows."""
    minutes = (end - start).total_seconds() / 60
    for step in _NICE_STEPS:
        if math.ceil(minutes / step) <= MAX_DEFAULT_ROWS:
            return step
    return math.ceil(minutes / MAX_DEFAULT_ROWS)
