"""Time windows and steps for presets; times are read by :mod:`gravix.units`.
A bad value is a usage error (ConfigError, exit 2)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from gravix.errors import ConfigError
from gravix.units import ceil_to, floor_to, parse_time

MINUTE = timedelta(minutes=1)
# Steps a default picks from, so that a window is shown in about a hundred rows or fewer.
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
MAX_DEFAULT_ROWS = 100


def resolve_window(
    since: str | datetime | None,
    until: str | datetime | None,
    *,
    now: datetime | None = None,
    default_since: str = "24h",
) -> tuple[datetime, datetime]:
    """The minute-aligned window ``[since, until)`` the presets read: since is floored and until
    ceiled to whole minutes, because the warehouse holds whole minutes."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start = floor_to(parse_time(since or default_since, "--since", now=now), MINUTE)
    end = ceil_to(parse_time(until or "now", "--until", now=now), MINUTE)
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
