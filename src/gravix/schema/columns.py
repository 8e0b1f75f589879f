"""The column catalogue of the raw and warehouse tables (DESIGN §6): names and logical
types, from which every engine's types are derived."""

from __future__ import annotations

import re
from typing import Any

from gravix.schema.contract import REQUEST_FACTS, SERVICE_EVENTS

_LIST = re.compile(r"list<(.+)>")
# Engine names of the scalar logical types. A raw ``properties`` map stays JSON text for
# polars (its keys differ from event to event), and Trino reads it as a map.
_TRINO = {
    "string": "varchar",
    "int8": "tinyint",
    "int32": "integer",
    "int64": "bigint",
    "double": "double",
    "timestamp[ms, UTC]": "timestamp(3)",
    "map<string,string>": "map(varchar, varchar)",
}

REQUEST_METRICS_COLUMNS: dict[str, str] = {
    "bucket_start": "timestamp[ms, UTC]",
    "service": "string",
    "method": "string",
    "path_template": "string",
    "request_count": "int64",
    "error_count": "int64",
    "client_error_count": "int64",
    "error_rate": "double",
    "latency_sum_ms": "double",
    "latency_min_ms": "double",
    "latency_max_ms": "double",
    "p50_latency_ms": "double",
    "p95_latency_ms": "double",
    "p99_latency_ms": "double",
    "lat_scale": "int8",
    "lat_zero_count": "int64",
    "lat_idx": "list<int32>",
    "lat_cnt": "list<int64>",
}

SERVICE_EVENTS_DAILY_COLUMNS: dict[str, str] = {
    "service": "string",
    "event_type": "string",
    "event_count": "int64",
    "first_event_time": "timestamp[ms, UTC]",
    "last_event_time": "timestamp[ms, UTC]",
}

RAW_COLUMNS: dict[str, dict[str, str]] = {
    REQUEST_FACTS: {
        "event_id": "string",
        "event_time": "timestamp[ms, UTC]",
        "service": "string",
        "method": "string",
        "path_template": "string",
        "status_code": "int64",
        "latency_ms": "double",
        "user_agent_family": "string",
    },
    SERVICE_EVENTS: {
        "event_id": "string",
        "event_time": "timestamp[ms, UTC]",
        "service": "string",
        "event_type": "string",
        "entity_id": "string",
        "message": "string",
        "properties": "map<string,string>",
    },
}


def polars_type(logical: str) -> Any:
    """The polars type of a logical column type (polars is loaded only when asked)."""
    import polars as pl

    scalars: dict[str, Any] = {
        "string": pl.String(),
        "int8": pl.Int8(),
        "int32": pl.Int32(),
        "int64": pl.Int64(),
        "double": pl.Float64(),
        "timestamp[ms, UTC]": pl.Datetime("ms", "UTC"),
        "map<string,string>": pl.String(),
    }
    if logical in scalars:
        return scalars[logical]
    m = _LIST.fullmatch(logical)
    if m:
        return pl.List(polars_type(m.group(1)))
    raise ValueError(f"no polars type for {logical!r}")


def polars_schema(columns: dict[str, str]) -> dict[str, Any]:
    return {name: polars_type(logical) for name, logical in columns.items()}


def trino_type(logical: str) -> str:
    if logical in _TRINO:
        return _TRINO[logical]
    m = _LIST.fullmatch(logical)
    if m:
        return f"array({trino_type(m.group(1))})"
    raise ValueError(f"no Trino type for {logical!r}")
