"""The data contract of DESIGN §3: topic and table names, the rules every field keeps, and
the msgspec Structs that declare them (the validator decodes with them, and the OpenAPI
document is generated from them)."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from gravix.errors import ValidationError

REQUEST_FACTS = "request_facts"
SERVICE_EVENTS = "service_events"
TOPICS: tuple[str, ...] = (REQUEST_FACTS, SERVICE_EVENTS)

REQUEST_METRICS_MINUTE = "request_metrics_minute"
REQUEST_METRICS_HOUR = "request_metrics_hour"
SERVICE_EVENTS_DAILY = "service_events_daily"
# The tables rollup plans and records (one manifest per hour of each).
TABLES: tuple[str, ...] = (REQUEST_METRICS_MINUTE, SERVICE_EVENTS_DAILY)
# Every table with files in the warehouse: the hour table is a second output of the minute
# table's hour task, recorded by that table's manifests.
WAREHOUSE_TABLES: tuple[str, ...] = (
    REQUEST_METRICS_MINUTE,
    REQUEST_METRICS_HOUR,
    SERVICE_EVENTS_DAILY,
)
# The tables an hour task of each rolled-up table writes.
TABLE_OUTPUTS: dict[str, tuple[str, ...]] = {
    REQUEST_METRICS_MINUTE: (REQUEST_METRICS_MINUTE, REQUEST_METRICS_HOUR),
    SERVICE_EVENTS_DAILY: (SERVICE_EVENTS_DAILY,),
}
# The rolled-up table whose hour task writes each warehouse table.
BUILT_BY: dict[str, str] = {out: table for table, outs in TABLE_OUTPUTS.items() for out in outs}
# Which raw topic each warehouse table is built from.
TABLE_SOURCE: dict[str, str] = {
    REQUEST_METRICS_MINUTE: REQUEST_FACTS,
    REQUEST_METRICS_HOUR: REQUEST_FACTS,
    SERVICE_EVENTS_DAILY: SERVICE_EVENTS,
}

UUID7_PATTERN = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)
_UUID_ANY = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
# Control characters (DESIGN §3: no stored string holds one): C0, DEL and C1 — ESC starts a
# terminal escape, and U+009B is one on its own in terminals that read C1 controls.
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
# starts with "/", no "?" "#" or control characters, no raw UUID, no numeric segment of 4+ digits
PATH_TEMPLATE_PATTERN = rf"^(?!.*{_UUID_ANY})(?!.*/[0-9]{{4,}}(?:/|$))/[^?#{CONTROL_CHARACTERS}]*$"
NO_CONTROL_PATTERN = rf"^[^{CONTROL_CHARACTERS}]*$"
# A property value is a flat string: no control character, and not itself serialized JSON
# (longer than 2 characters, starting with { and ending with }, or [ and ]), as the seed's
# validator has it. [\s\S] rather than `.`, which stops at line separators in ECMA regexes.
PROPERTY_VALUE_PATTERN = rf"^(?!\{{[\s\S]+\}}$)(?!\[[\s\S]+\]$)[^{CONTROL_CHARACTERS}]*$"
SERVICE_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def check_properties(properties: dict[str, str]) -> None:
    """The rules of PROPERTY_VALUE_PATTERN and of keys, checked fast with one regex search
    over the joined strings: no control character in a key or a value, and no value that
    is serialized JSON."""
    if _CONTROL.search("".join(properties)) or _CONTROL.search("".join(properties.values())):
        for key, value in properties.items():
            if _CONTROL.search(key):
                raise ValidationError(
                    f"`properties` key {key[:64]!r} must not contain control characters"
                )
            if _CONTROL.search(value):
                raise ValidationError(
                    f"`properties` value of {key[:64]!r} must not contain control characters: "
                    f"{value[:80]!r}"
                )
    for key, value in properties.items():
        if len(value) > 2 and (value[0], value[-1]) in _JSON_ENDS:
            raise ValidationError(
                f"`properties` value of {key[:64]!r} looks like nested JSON; properties must "
                "be flat strings"
            )


_JSON_ENDS = {("{", "}"), ("[", "]")}


# Declared constraints (lengths, bounds) run in C during decoding. The regex rules go in
# ``extra_json_schema``: msgspec puts them in the JSON Schema but does not enforce them on
# decode, so the validator checks them afterwards with the same constants, a cache (services,
# paths and agents repeat a lot) and its own error messages.
def _str(
    description: str,
    rules: dict[str, object] | None = None,
    *,
    min_length: int | None = None,
    max_length: int | None = None,
) -> msgspec.Meta:
    return msgspec.Meta(
        description=description,
        extra_json_schema=rules,
        min_length=min_length,
        max_length=max_length,
    )


def _any_case(words: tuple[str, ...]) -> str:
    """A JSON Schema pattern matching each word in any mix of cases, as the validator reads
    methods (JSON Schema has no case-insensitive flag)."""
    spelled = ("".join(f"[{c.upper()}{c.lower()}]" for c in word) for word in words)
    return "^(?:" + "|".join(spelled) + ")$"


EventId = Annotated[
    str,
    _str(
        "a UUID version 7 (stored lower-case); alias `eventId`",
        {"pattern": UUID7_PATTERN},
        min_length=36,
        max_length=36,
    ),
]
EventTime = Annotated[
    str,
    _str(
        "RFC 3339 with a zone (`Z` or an offset), stored as UTC with millisecond precision; "
        "at most 5 minutes in the future and not older than the raw retention (both "
        "configurable, so not expressed here); alias `eventTime`",
        {"format": "date-time"},
        min_length=20,
        max_length=40,
    ),
]
Service = Annotated[
    str,
    _str(
        "1–128 characters of [A-Za-z0-9._-]",
        {"pattern": SERVICE_PATTERN},
        min_length=1,
        max_length=128,
    ),
]
Method = Annotated[
    str,
    _str(
        "an HTTP method, in any case; stored upper-case",
        {"pattern": _any_case(HTTP_METHODS)},
        max_length=7,
    ),
]
PathTemplate = Annotated[
    str,
    _str(
        "starts with /, no ? # or control characters, no raw UUID and no numeric segment of "
        "4+ digits (use {id}); alias `pathTemplate`",
        {"pattern": PATH_TEMPLATE_PATTERN},
        min_length=1,
        max_length=256,
    ),
]
StatusCode = Annotated[int, msgspec.Meta(ge=100, le=599, description="alias `statusCode`")]
LatencyMs = Annotated[
    float, msgspec.Meta(ge=0, le=3_600_000, description="milliseconds; alias `latencyMs`")
]
UserAgentFamily = Annotated[
    str,
    _str(
        "no control characters; alias `userAgentFamily`",
        {"pattern": NO_CONTROL_PATTERN},
        max_length=64,
    ),
]
EventType = Annotated[
    str,
    _str(
        "snake_case; alias `eventType`",
        {"pattern": EVENT_TYPE_PATTERN},
        min_length=1,
        max_length=64,
    ),
]
EntityId = Annotated[
    str,
    _str(
        "no control characters; alias `entityId`", {"pattern": NO_CONTROL_PATTERN}, max_length=128
    ),
]
Message = Annotated[
    str, _str("no control characters", {"pattern": NO_CONTROL_PATTERN}, max_length=1024)
]
PropertyKey = Annotated[
    str, _str("no control characters", {"pattern": NO_CONTROL_PATTERN}, max_length=64)
]
PropertyValue = Annotated[
    str,
    _str(
        "no control characters, and not serialized JSON ({…} or […])",
        {"pattern": PROPERTY_VALUE_PATTERN},
        max_length=256,
    ),
]
Properties = Annotated[
    dict[PropertyKey, PropertyValue],
    msgspec.Meta(max_length=32, description="a flat string → string map; alias `metadata`"),
]
_FACT_DOC = (
    "One HTTP request seen by a service. Unknown fields are rejected. lowerCamelCase "
    "spellings (eventId, eventTime, pathTemplate, statusCode, latencyMs, userAgentFamily) are "
    "accepted as aliases."
)
_EVENT_DOC = (
    "Something that happened to a service (a deploy, a restart). Unknown fields are rejected. "
    "Aliases: eventId, eventTime, eventType, entityId, and metadata for properties."
)


# gc=False: the fields are strings, numbers and a str→str map, so a struct can never be part
# of a reference cycle, and a batch of a thousand of them costs the collector nothing.
class RequestFact(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    event_id: EventId
    event_time: EventTime
    service: Service
    method: Method
    path_template: PathTemplate
    status_code: StatusCode
    latency_ms: LatencyMs
    user_agent_family: UserAgentFamily | None = None


class ServiceEvent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    event_id: EventId
    event_time: EventTime
    service: Service
    event_type: EventType
    entity_id: EntityId | None = None
    message: Message | None = None
    properties: Properties | None = None


RequestFact.__doc__ = _FACT_DOC
ServiceEvent.__doc__ = _EVENT_DOC


# -- what the ingestion API answers (DESIGN §4); the server encodes these, and the OpenAPI
# document's response schemas are generated from them


class Accepted(msgspec.Struct):
    """One event stored and fsynced."""

    accepted: int
    event_id: str


class BatchError(msgspec.Struct):
    """Why the event at ``index`` of a batch was rejected."""

    index: int
    error: str


# A batch answer lists at most this many errors (the first ones), so a bad batch never costs
# more than a good one (DESIGN §4); ``errors_truncated`` counts the others.
MAX_BATCH_ERRORS = 100
ErrorsTruncated = Annotated[
    int,
    msgspec.Meta(
        ge=1, description=f"rejected events beyond the first {MAX_BATCH_ERRORS} listed in errors"
    ),
]


class BatchResult(msgspec.Struct, omit_defaults=True):
    """Every accepted event of a batch is stored and fsynced; the others are listed (the
    first 100; ``errors_truncated`` counts the rest)."""

    accepted: int
    rejected: int
    errors: list[BatchError]
    errors_truncated: ErrorsTruncated | msgspec.UnsetType = msgspec.UNSET


class Error(msgspec.Struct, omit_defaults=True):
    """Any refusal; a 503 from /ready says why in ``reasons``, and a batch of which no event
    was accepted carries the batch fields."""

    error: str
    code: Annotated[int, msgspec.Meta(ge=400, le=599)]
    reasons: list[str] | msgspec.UnsetType = msgspec.UNSET
    accepted: int | msgspec.UnsetType = msgspec.UNSET
    rejected: int | msgspec.UnsetType = msgspec.UNSET
    errors: list[BatchError] | msgspec.UnsetType = msgspec.UNSET
    errors_truncated: ErrorsTruncated | msgspec.UnsetType = msgspec.UNSET


class Status(msgspec.Struct):
    """The answer of /live, /health and a ready /ready."""

    status: str


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
