"""The data contract of DESIGN §3: topic and table names, the rules every field keeps, and
the msgspec Structs that declare them (the validator decodes with them, and the OpenAPI
document is generated from them)."""

from __future__ import annotations

from typing import Annotated

import msgspec

REQUEST_FACTS = "request_facts"
SERVICE_EVENTS = "service_events"
TOPICS: tuple[str, ...] = (REQUEST_FACTS, SERVICE_EVENTS)

REQUEST_METRICS_MINUTE = "request_metrics_minute"
SERVICE_EVENTS_DAILY = "service_events_daily"
TABLES: tuple[str, ...] = (REQUEST_METRICS_MINUTE, SERVICE_EVENTS_DAILY)
# Which raw topic each warehouse table is built from.
TABLE_SOURCE: dict[str, str] = {
    REQUEST_METRICS_MINUTE: REQUEST_FACTS,
    SERVICE_EVENTS_DAILY: SERVICE_EVENTS,
}

UUID7_PATTERN = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)
_UUID_ANY = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
# starts with "/", no "?" "#" or control characters, no raw UUID, no numeric segment of 4+ digits
PATH_TEMPLATE_PATTERN = rf"^(?!.*{_UUID_ANY})(?!.*/[0-9]{{4,}}(?:/|$))/[^?#\x00-\x1f\x7f]*$"
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"
SERVICE_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


# Declared constraints run in C during decoding; string rules that need a regex are
# checked afterwards with a cache, because services, paths and agents repeat a lot.
EventTime = Annotated[str, msgspec.Meta(min_length=20, max_length=40)]
StatusCode = Annotated[int, msgspec.Meta(ge=100, le=599)]
LatencyMs = Annotated[float, msgspec.Meta(ge=0, le=3_600_000)]
Properties = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=64)], Annotated[str, msgspec.Meta(max_length=256)]],
    msgspec.Meta(max_length=32),
]


# gc=False: the fields are strings, numbers and a str→str map, so a struct can never be part
# of a reference cycle, and a batch of a thousand of them costs the collector nothing.
class RequestFact(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    event_id: Annotated[str, msgspec.Meta(min_length=36, max_length=36)]
    event_time: EventTime
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    method: Annotated[str, msgspec.Meta(max_length=7)]
    path_template: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    status_code: StatusCode
    latency_ms: LatencyMs
    user_agent_family: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class ServiceEvent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    event_id: Annotated[str, msgspec.Meta(min_length=36, max_length=36)]
    event_time: EventTime
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    event_type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    entity_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    message: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    properties: Properties | None = None


ALIASES: dict[str, dict[str, str]] = {
    REQUEST_FACTS: {
        "eventId": "event_id",
        "eventTime": "event_time",
        "pathTemplate": "path_template",
        "statusCode": "status_code",
        "latencyMs": "latency_ms",
        "userAgentFamily": "user_agent_family",
    },
    SERVICE_EVENTS: {
        "eventId": "event_id",
        "eventTime": "event_time",
        "eventType": "event_type",
        "entityId": "entity_id",
        "metadata": "properties",
    },
}
STRUCTS: dict[str, type[RequestFact] | type[ServiceEvent]] = {
    REQUEST_FACTS: RequestFact,
    SERVICE_EVENTS: ServiceEvent,
}
