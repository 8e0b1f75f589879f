"""The one reader of the environment: flag > environment variable > default."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gravix.errors import ConfigError

DEFAULT_DATA_DIR = "./data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
DEFAULT_URL = "http://127.0.0.1:8090"
DEFAULT_ROTATE_SECONDS = 60.0
DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024
DEFAULT_RETENTION_DAYS = 30
DEFAULT_MAX_FUTURE_SECONDS = 300.0
DEFAULT_MAX_SINGLE_BYTES = 1024 * 1024
DEFAULT_MAX_BATCH_BYTES = 16 * 1024 * 1024
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "KIB": 1024,
    "M": 1000**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1000**3,
    "GB": 1000**3,
    "GIB": 1024**3,
    "T": 1000**4,
    "TB": 1000**4,
    "TIB": 1024**4,
}


def parse_size(text: str | int) -> int:
    """Parse ``64MiB``, ``10MB``, ``4096`` into bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    unit = (m.group(2) or "").upper() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(
            f"not a size: {text!r}", hint="use bytes or a unit, e.g. 65536, 64MiB, 10MB"
        )
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    api_keys: tuple[str, ...] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    url: str = DEFAULT_URL
    rate_limit: float = 0.0
    rotate_seconds: float = DEFAULT_ROTATE_SECONDS
    rotate_bytes: int = DEFAULT_ROTATE_BYTES
    retention_days: int = DEFAULT_RETENTION_DAYS
    warehouse_retention_days: int = DEFAULT_RETENTION_DAYS
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS
    max_single_bytes: int = DEFAULT_MAX_SINGLE_BYTES
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    # Test-only fault injection plan for the durable-file module (JSON); see durable.py.
    fault_plan: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # keys never appear in logs, even by accident
        keys = f"<{len(self.api_keys)} key(s)>"
        return (
            f"Settings(data_dir={str(self.data_dir)!r}, api_keys={keys}, host={self.host!r}, "
            f"port={self.port}, url={self.url!r})"
        )


def _pick(flag: object, env: Mapping[str, str], name: str) -> object:
    if flag is not None:
        return flag
    value = env.get(name)
    return value if value not in (None, "") else None


def _number(
    value: object, name: str, kind: type[int] | type[float], *, minimum: float = 0
) -> int | float:
    try:
        number = kind(value)  # type: ignore[call-overload,arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):  # "nan" < minimum is False, so NaN would slip through
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if number < minimum:
        raise ConfigError(f"{name} must be ≥ {minimum}, got {value!r}")
    return number


def load_settings(
    *,
    data_dir: str | Path | None = None,
    api_keys: list[str] | tuple[str, ...] | None = None,
    host: str | None = None,
    port: int | None = None,
    url: str | None = None,
    rate_limit: float | None = None,
    rotate_seconds: float | None = None,
    rotate_bytes: str | int | None = None,
    retention_days: int | None = None,
    warehouse_retention_days: int | None = None,
    max_future_seconds: float | None = None,
    max_single_bytes: str | int | None = None,
    max_batch_bytes: str | int | None = None,
    min_free_bytes: str | int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from flags (None = not given), then the environment, then defaults."""
    env = os.environ if environ is None else environ
    keys: list[str] = list(api_keys or [])
    if not keys:
        if env.get("API_KEY"):
            keys.append(env["API_KEY"])
        keys.extend(k.strip() for k in env.get("GRAVIX_API_KEYS", "").split(",") if k.strip())
    keys = list(dict.fromkeys(keys))
    if any(not k or any(c.isspace() for c in k) for k in keys):
        raise ConfigError("an API key is empty or contains whitespace")

    def num(
        flag: object,
        var: str,
        default: float,
        kind: type[int] | type[float],
        label: str,
        minimum: float = 0,
    ) -> int | float:
        value = _pick(flag, env, var)
        return default if value is None else _number(value, label, kind, minimum=minimum)

    def size(flag: object, var: str | None, default: int) -> int:
        value = _pick(flag, env, var) if var else flag
        return default if value is None else parse_size(value)  # type: ignore[arg-type]

    port_value = int(num(port, "GRAVIX_PORT", DEFAULT_PORT, int, "--port"))
    if not 0 <= port_value <= 65535:
        raise ConfigError(f"--port must be 0–65535, got {port_value}")
    return Settings(
        data_dir=Path(str(_pick(data_dir, env, "GRAVIX_DATA_DIR") or DEFAULT_DATA_DIR)),
        api_keys=tuple(keys),
        host=str(_pick(host, env, "GRAVIX_HOST") or DEFAULT_HOST),
        port=port_value,
        url=str(_pick(url, env, "GRAVIX_URL") or DEFAULT_URL).rstrip("/"),
        rate_limit=float(num(rate_limit, "GRAVIX_RATE_LIMIT", 0.0, float, "--rate-limit")),
        rotate_seconds=float(
            num(
                rotate_seconds,
                "GRAVIX_ROTATE_SECONDS",
                DEFAULT_ROTATE_SECONDS,
                float,
                "--rotate-seconds",
                0.01,
            )
        ),
        rotate_bytes=size(rotate_bytes, "GRAVIX_ROTATE_BYTES", DEFAULT_ROTATE_BYTES),
        retention_days=int(
            num(retention_days, "GRAVIX_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, int, "--days", 1)
        ),
        warehouse_retention_days=int(
            num(
                warehouse_retention_days,
                "GRAVIX_WAREHOUSE_RETENTION_DAYS",
                DEFAULT_RETENTION_DAYS,
                int,
                "--warehouse-days",
                1,
            )
        ),
        max_future_seconds=float(
            num(
                max_future_seconds,
                "GRAVIX_MAX_FUTURE_SECONDS",
                DEFAULT_MAX_FUTURE_SECONDS,
                float,
                "--max-future-seconds",
            )
        ),
        max_single_bytes=size(max_single_bytes, None, DEFAULT_MAX_SINGLE_BYTES),
        max_batch_bytes=size(max_batch_bytes, None, DEFAULT_MAX_BATCH_BYTES),
        min_free_bytes=size(min_free_bytes, "GRAVIX_MIN_FREE_BYTES", DEFAULT_MIN_FREE_BYTES),
        fault_plan=env.get("GRAVIX_FAULT_PLAN") or None,
    )
