"""The one parser of sizes, durations and times, for every flag and setting.

The same spellings work everywhere:

* sizes: ``65536``, ``64KiB``, ``10MB``, ``1.5GiB`` (SI and binary units);
* durations: ``500ms``, ``90s``, ``15m`` (or ``15min``), ``24h``, ``7d``, ``2w``; a bare
  number is seconds;
* times: RFC 3339 with a zone (``2026-02-16T10:00:00Z``, ``…+02:00``), ``now``, or a
  duration meaning that long ago (``24h`` = 24 hours before now).

A bad value raises :class:`ConfigError` naming the flag (exit 2).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from gravix.errors import ConfigError

SIZE_EXAMPLES = "65536, 64KiB, 10MB, 1GiB"
DURATION_EXAMPLES = "500ms, 90s, 15m, 24h, 7d, 2w"
TIME_EXAMPLES = "2026-02-16T10:00:00Z, now, or a duration ago such as 90s, 15m, 24h, 7d, 2w"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    **{p + "B": 1000**n for n, p in enumerate("KMGT", 1)},
    **{p: 1000**n for n, p in enumerate("KMGT", 1)},
    **{p + "IB": 1024**n for n, p in enumerate("KMGT", 1)},
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}


def _flag(flag: str) -> str:
    return f"{flag} " if flag else ""


def parse_size(value: str | int, flag: str = "") -> int:
    """Bytes from ``64MiB``, ``10MB``, ``4096``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{_flag(flag)}must not be negative, got {value}")
        return value
    m = _SIZE.match(str(value))
    unit = (m.group(2) or "").upper() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise ConfigError(
            f"{_flag(flag)}{value!r} is not a size", hint=f"use bytes or a unit: {SIZE_EXAMPLES}"
        )
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def format_size(n: float) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB`` … ``2.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover (the loop returns at TiB)


def parse_duration(value: str | float, flag: str = "") -> float:
    """Seconds from ``90s``, ``15m``, ``24h``, ``7d``, ``2w``, ``500ms`` (bare = seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ConfigError(
                f"{_flag(flag)}{value!r} is not a duration", hint=f"use e.g. {DURATION_EXAMPLES}"
            )
        seconds = float(m.group(1)) * _DURATION_SECONDS[(m.group(2) or "").lower()]
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{_flag(flag)}must be a finite duration ≥ 0, got {value!r}")
    return seconds


def parse_rfc3339(value: str, flag: str = "") -> datetime:
    """An RFC 3339 time with a zone (``Z`` or an offset) → an aware UTC datetime."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        raise ConfigError(
            f"{_flag(flag)}{value!r} is not an RFC 3339 time",
            hint="write it as 2026-02-16T10:00:00Z or 2026-02-16T12:00:00+02:00",
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(
            f"{_flag(flag)}{value!r} has no time zone",
            hint="add Z for UTC or an offset, e.g. 2026-02-16T10:00:00Z or …T12:00:00+02:00",
        )
    return moment.astimezone(UTC)


def parse_time(value: str | datetime, flag: str = "", *, now: datetime | None = None) -> datetime:
    """An RFC 3339 time, ``now``, or a duration ago (``24h``) → an aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(
                f"{_flag(flag)}{value.isoformat()} has no time zone",
                hint="add Z for UTC or an offset",
            )
        return value.astimezone(UTC)
    text = value.strip()
    current = (now or datetime.now(UTC)).astimezone(UTC)
    if text.lower() == "now":
        return current
    if _DURATION.match(text):
        try:
            return current - timedelta(seconds=parse_duration(text, flag))
        except OverflowError:
            raise ConfigError(
                f"{_flag(flag)}{value!r} reaches before the year 1", hint=f"use {TIME_EXAMPLES}"
            ) from None
    if not text[:4].isdigit():
        raise ConfigError(f"{_flag(flag)}{value!r} is not a time", hint=f"use {TIME_EXAMPLES}")
    return parse_rfc3339(text, flag)


def utc_stamp(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``: how reports print a time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_to(moment: datetime, step: timedelta) -> datetime:
    """``moment`` rounded down to a multiple of ``step`` since the Unix epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


def ceil_to(moment: datetime, step: timedelta) -> datetime:
    floored = floor_to(moment, step)
    return floored if floored == moment else floored + step
