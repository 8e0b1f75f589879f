"""The column catalogue of the raw and warehouse tables (DESIGN §6): names and logical
types, from which every engine's types are derived."""

from __future__ import annotations

from gravix.schema.contract import REQUEST_FACTS, SERVICE_EVENTS

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
