"""The data contract: topics and tables, the Structs and rules of DESIGN §3, the validator
that applies them, the column catalogue of §6 with its engine types, and the latency
histogram that every table row carries."""

from gravix.schema.columns import RAW_COLUMNS, REQUEST_METRICS_COLUMNS, SERVICE_EVENTS_DAILY_COLUMNS
from gravix.schema.contract import (
    ALIASES,
    BUILT_BY,
    HTTP_METHODS,
    PATH_TEMPLATE_PATTERN,
    REQUEST_FACTS,
    REQUEST_METRICS_HOUR,
    REQUEST_METRICS_MINUTE,
    SERVICE_EVENTS,
    SERVICE_EVENTS_DAILY,
    STRUCTS,
    TABLE_OUTPUTS,
    TABLE_SOURCE,
    TABLES,
    TOPICS,
    UUID7_PATTERN,
    WAREHOUSE_TABLES,
    RequestFact,
    ServiceEvent,
)
from gravix.schema.validate import Accepted, Lines, Validator, format_time, parse_time

__all__ = [
    "ALIASES",
    "BUILT_BY",
    "HTTP_METHODS",
    "PATH_TEMPLATE_PATTERN",
    "RAW_COLUMNS",
    "REQUEST_FACTS",
    "REQUEST_METRICS_COLUMNS",
    "REQUEST_METRICS_HOUR",
    "REQUEST_METRICS_MINUTE",
    "SERVICE_EVENTS",
    "SERVICE_EVENTS_DAILY",
    "SERVICE_EVENTS_DAILY_COLUMNS",
    "STRUCTS",
    "TABLES",
    "TABLE_OUTPUTS",
    "TABLE_SOURCE",
    "TOPICS",
    "UUID7_PATTERN",
    "WAREHOUSE_TABLES",
    "Accepted",
    "Lines",
    "RequestFact",
    "ServiceEvent",
    "Validator",
    "format_time",
    "parse_time",
]
