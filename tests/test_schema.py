"""The data contract of DESIGN §3, rule by rule, on both topics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gravix.errors import ValidationError
from gravix.schema import Validator

NOW = datetime(2026, 2, 16, 10, 30, 0, tzinfo=UTC)
CLOCK = NOW.timestamp()
EID = "0190b6a4-1c2d-7abc-8def-0123456789ab"


def fact(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": EID,
        "event_time": "2026-02-16T10:05:00.123Z",
        "service": "frontend",
        "method": "GET",
        "path_template": "/checkout/{id}",
        "status_code": 200,
        "latency_ms": 12.5,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": EID,
        "event_time": "2026-02-16T10:00:00Z",
        "service": "frontend",
        "event_type": "deploy_started",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def facts() -> Validator:
    return Validator("request_facts", clock=lambda: CLOCK)


def events() -> Validator:
    return Validator("service_events", clock=lambda: CLOCK)


def accept(validator: Validator, obj: Any) -> dict[str, Any]:
    line = validator.one(json.dumps(obj).encode()).line
    stored: dict[str, Any] = json.loads(line)
    return stored


def reject(validator: Validator, obj: Any) -> str:
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    with pytest.raises(ValidationError) as info:
        validator.one(data)
    return info.value.message


# --- RequestFact -------------------------------------------------------------------------------


def test_a_valid_fact_is_stored_as_its_canonical_snake_case_line() -> None:
    assert accept(facts(), fact()) == {
        "event_id": EID,
        "event_time": "2026-02-16T10:05:00.123Z",
        "service": "frontend",
        "method": "GET",
        "path_template": "/checkout/{id}",
        "status_code": 200,
        "latency_ms": 12.5,
    }


@pytest.mark.parametrize(
    "missing",
    ["event_id", "event_time", "service", "method", "path_template", "status_code", "latency_ms"],
)
def test_every_required_fact_field_is_required(missing: str) -> None:
    assert missing in reject(facts(), fact(**{missing: ...}))


def test_event_id_must_be_a_uuid7_and_is_stored_lower_case() -> None:
    assert accept(facts(), fact(event_id=EID.upper()))["event_id"] == EID
    for bad in [
        "0190b6a4-1c2d-4abc-8def-0123456789ab",  # version 4
        "0190b6a4-1c2d-7abc-cdef-0123456789ab",  # wrong variant
        "0190b6a41c2d7abc8def0123456789ab",
        "../../../../../../../../etc/passwd/xx",
        "0190b6a4-1c2d-7abc-8def-0123456789a\n",
        12345,
    ]:
        reject(facts(), fact(event_id=bad))


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-02-16T10:05:00Z", "2026-02-16T10:05:00.000Z"),
        ("2026-02-16T10:05:00.1Z", "2026-02-16T10:05:00.100Z"),
        ("2026-02-16T10:05:00.123999Z", "2026-02-16T10:05:00.123Z"),
        ("2026-02-16T12:05:00.5+02:00", "2026-02-16T10:05:00.500Z"),
        ("2026-02-16T05:35:00-04:30", "2026-02-16T10:05:00.000Z"),
        ("2026-02-16t10:05:00z", "2026-02-16T10:05:00.000Z"),
    ],
)
def test_event_time_is_stored_as_utc_with_milliseconds(given: str, stored: str) -> None:
    assert accept(facts(), fact(event_time=given))["event_time"] == stored


@pytest.mark.parametrize(
    "bad",
    [
        "2026-02-16T10:05:00",  # no zone
        "2026-02-16",
        "yesterday",
        "2026-02-30T10:00:00Z",
        "2026-02-16T25:00:00Z",
        "2026-02-16T10:05:00.\u0661\u0662\u0663Z",  # digits of another script
        "0001-01-01T00:00:00+01:00",  # before the first representable UTC moment
        "9999-12-31T23:59:59-23:59",
        1771236300,
    ],
)
def test_event_times_that_are_not_rfc3339_with_a_zone_are_rejected(bad: Any) -> None:
    reject(facts(), fact(event_time=bad))


def test_event_time_window_is_five_minutes_ahead_and_the_retention_behind() -> None:
    def at(delta: timedelta) -> str:
        return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    accept(facts(), fact(event_time=at(timedelta(seconds=299))))
    assert "future" in reject(facts(), fact(event_time=at(timedelta(seconds=301))))
    accept(facts(), fact(event_time=at(-timedelta(days=29, hours=23))))
    assert "retention" in reject(facts(), fact(event_time=at(-timedelta(days=30, seconds=1))))
    narrow = Validator("request_facts", clock=lambda: CLOCK, max_future_seconds=10, max_age_days=1)
    reject(narrow, fact(event_time=at(timedelta(seconds=11))))
    reject(narrow, fact(event_time=at(-timedelta(days=1, seconds=1))))


def test_service_is_1_to_128_safe_characters() -> None:
    for good in ["a", "A-b_c.9", "x" * 128]:
        assert accept(facts(), fact(service=good))["service"] == good
    for bad in ["", "x" * 129, "has space", "a/b", "../etc", "ünï", "svc\n", "a\x00"]:
        assert "service" in reject(facts(), fact(service=bad))


def test_method_is_an_http_method_stored_upper_case() -> None:
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"]:
        assert accept(facts(), fact(method=method.lower()))["method"] == method
    assert accept(facts(), fact(method="Patch"))["method"] == "PATCH"
    for bad in ["FETCH", "", "GET ", "GETX", 1]:
        reject(facts(), fact(method=bad))


def test_path_template_rules() -> None:
    goods = ["/", "/checkout", "/users/{id}/orders", "/v1/123", "/files/2024x", "/" + "a" * 255]
    for good in goods:
        assert accept(facts(), fact(path_template=good))["path_template"] == good
    for bad in [
        "checkout",  # no leading slash
        "/" + "a" * 256,
        "/search?q=x",
        "/page#top",
        "/users/0190b6a4-1c2d-4abc-8def-0123456789ab",
        "/users/1234",
        "/users/98765/orders",
        "/a\nb",
        "/a\x00b",
        "",
    ]:
        reject(facts(), fact(path_template=bad))


def test_status_code_is_an_integer_from_100_to_599() -> None:
    for good in [100, 200, 599]:
        assert accept(facts(), fact(status_code=good))["status_code"] == good
    for bad in [99, 600, -1, "200", 200.5, True, None]:
        reject(facts(), fact(status_code=bad))


def test_latency_is_finite_non_negative_and_at_most_an_hour() -> None:
    for good in [0, 0.001, 3_600_000]:
        assert accept(facts(), fact(latency_ms=good))["latency_ms"] == good
    for bad in [-0.001, 3_600_000.5, "12", None]:
        reject(facts(), fact(latency_ms=bad))
    body = json.dumps(fact()).encode()
    for literal in [b"NaN", b"Infinity", b"1e400", b"-1e400"]:
        reject(facts(), body.replace(b"12.5", literal))


def test_user_agent_family_is_optional_and_at_most_64_characters() -> None:
    assert "user_agent_family" not in accept(facts(), fact())
    assert accept(facts(), fact(user_agent_family="Chrome"))["user_agent_family"] == "Chrome"
    reject(facts(), fact(user_agent_family="x" * 65))
    reject(facts(), fact(user_agent_family="bad\x07bell"))


@pytest.mark.parametrize("field", ["user_id", "body", "headers", "eventid", "EVENT_ID"])
def test_unknown_fact_fields_are_rejected(field: str) -> None:
    reject(facts(), fact(**{field: "x"}))


def test_camel_case_aliases_are_accepted_and_stored_as_snake_case() -> None:
    camel = {
        "eventId": EID.upper(),
        "eventTime": "2026-02-16T11:05:00+01:00",
        "service": "frontend",
        "method": "get",
        "pathTemplate": "/checkout",
        "statusCode": 503,
        "latencyMs": 7,
        "userAgentFamily": "curl",
    }
    assert accept(facts(), camel) == {
        "event_id": EID,
        "event_time": "2026-02-16T10:05:00.000Z",
        "service": "frontend",
        "method": "GET",
        "path_template": "/checkout",
        "status_code": 503,
        "latency_ms": 7.0,
        "user_agent_family": "curl",
    }


def test_a_field_given_both_as_alias_and_canonical_name_is_rejected() -> None:
    reject(facts(), {**fact(), "statusCode": 200})


@pytest.mark.parametrize(
    "body",
    [b"", b"null", b"[]", b"42", b'"str"', b"{", b"\xff\xfe", b"{" * 50_000, b'{"a":' * 20_000],
)
def test_bodies_that_are_not_one_json_object_are_rejected_cleanly(body: bytes) -> None:
    reject(facts(), body)


def test_canonical_lines_revalidate_to_the_same_bytes() -> None:
    validator = facts()
    first = validator.one(json.dumps(fact(event_time="2026-02-16T11:05:00.5+01:00")).encode())
    again = validator.one(first.line)
    assert again.line == first.line
    assert first.hour == int(datetime(2026, 2, 16, 10, tzinfo=UTC).timestamp()) // 3600
    assert first.event_id == EID
    assert b"\n" not in first.line


# --- ServiceEvent ------------------------------------------------------------------------------


def test_a_valid_service_event_with_every_optional_field() -> None:
    stored = accept(
        events(),
        event(entity_id="build-42", message="rolling out", properties={"version": "1.2.3"}),
    )
    assert stored == {
        "event_id": EID,
        "event_time": "2026-02-16T10:00:00.000Z",
        "service": "frontend",
        "event_type": "deploy_started",
        "entity_id": "build-42",
        "message": "rolling out",
        "properties": {"version": "1.2.3"},
    }


@pytest.mark.parametrize("missing", ["event_id", "event_time", "service", "event_type"])
def test_every_required_event_field_is_required(missing: str) -> None:
    reject(events(), event(**{missing: ...}))


def test_event_type_is_snake_case() -> None:
    for good in ["restart", "deploy_completed", "a", "a" + "b" * 63, "v2_rollout"]:
        assert accept(events(), event(event_type=good))["event_type"] == good
    for bad in ["Deploy", "deploy-started", "_x", "9lives", "a" + "b" * 64, "", "x\n"]:
        reject(events(), event(event_type=bad))


def test_entity_id_and_message_limits() -> None:
    accept(events(), event(entity_id="e" * 128, message="m" * 1024))
    reject(events(), event(entity_id="e" * 129))
    reject(events(), event(message="m" * 1025))


def test_properties_are_a_flat_bounded_string_map_and_metadata_is_an_alias() -> None:
    props = {f"k{i}": "v" * 256 for i in range(32)}
    assert accept(events(), event(properties=props))["properties"] == props
    assert accept(events(), event(metadata={"a": "b"}))["properties"] == {"a": "b"}
    for bad in [
        {f"k{i}": "v" for i in range(33)},
        {"k" * 65: "v"},
        {"k": "v" * 257},
        {"nested": {"a": "b"}},
        {"list": ["a"]},
        {"n": 1},
        ["a", "b"],
    ]:
        reject(events(), event(properties=bad))
    reject(events(), {**event(properties={"a": "b"}), "metadata": {"a": "b"}})


def test_service_events_reject_unknown_fields_and_fact_fields() -> None:
    reject(events(), event(status_code=200))
    reject(events(), event(user="alice"))
    reject(facts(), {**fact(), "event_type": "restart"})


# --- batches -----------------------------------------------------------------------------------


def test_ndjson_batch_reports_errors_by_index_and_keeps_the_good_lines() -> None:
    lines = [
        json.dumps(fact(event_id=EID)),
        json.dumps(fact(status_code=700)),
        "{not json",
        json.dumps(fact(event_id="0190b6a4-1c2d-7abc-8def-0123456789ac")),
    ]
    accepted, errors = facts().batch("\n".join(lines).encode() + b"\n")
    assert [a.event_id for a in accepted] == [EID, "0190b6a4-1c2d-7abc-8def-0123456789ac"]
    assert [index for index, _ in errors] == [1, 2]
    assert "status_code" in errors[0][1]


def test_json_array_batch_reports_errors_by_index() -> None:
    body = json.dumps([fact(), 5, fact(method="FETCH"), {**fact(), "camelCase": 1}]).encode()
    accepted, errors = facts().batch(body)
    assert len(accepted) == 1
    assert [index for index, _ in errors] == [1, 2, 3]


def test_a_batch_that_is_not_an_array_or_ndjson_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        facts().batch(b"[1, 2")
    with pytest.raises(ValidationError):
        facts().batch(b"[" * 10_000 + b"]" * 10_000)
    accepted, errors = facts().batch(b"")
    assert (accepted, errors) == ([], [])


def test_ndjson_crlf_line_endings_are_accepted() -> None:
    body = (json.dumps(fact()) + "\r\n" + json.dumps(fact()) + "\r\n").encode()
    accepted, errors = facts().batch(body)
    assert (len(accepted), errors) == (2, [])


# --- hostile strings (issue 16, items 7 and 26) -------------------------------------------------

# C0 controls, DEL and the C1 controls: ESC starts a terminal escape, and U+009B (CSI) is one
# on its own in terminals that read C1 controls.
CONTROLS = ["\x1b]0;PWNED\x07", "\x1b[2J", "a\nb", "tab\there", "\x00", "\x7f", "\u009b31m"]


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("message", lambda c: event(message=f"deploy {c} done")),
        ("entity_id", lambda c: event(entity_id=f"pod{c}")),
        ("properties", lambda c: event(properties={"version": f"1.2{c}"})),
        ("properties", lambda c: event(properties={f"ver{c}sion": "1.2"})),
        ("properties", lambda c: event(metadata={"version": f"1.2{c}"})),
    ],
)
def test_no_stored_service_event_string_holds_a_control_character(
    name: str, make: Any, control: str
) -> None:
    message = reject(events(), make(control))
    assert name in message and "control character" in message


@pytest.mark.parametrize("control", CONTROLS)
def test_no_stored_fact_string_holds_a_control_character(control: str) -> None:
    assert "user_agent_family" in reject(facts(), fact(user_agent_family=f"Chrome{control}"))
    assert "path_template" in reject(facts(), fact(path_template=f"/a{control}"))
    body = json.dumps([fact(), fact(user_agent_family=f"Chrome{control}")]).encode()
    lines = facts().batch_lines(body)
    assert (lines.events, [index for index, _ in lines.errors]) == (1, [1])


def test_printable_unicode_in_stored_strings_is_kept() -> None:
    text = "déployé ✓ 部署 — ok"
    stored = accept(events(), event(message=text, properties={"note": text}, entity_id=text))
    assert (stored["message"], stored["properties"]["note"], stored["entity_id"]) == (text,) * 3


@pytest.mark.parametrize(
    "value", ['{"foo":"bar"}', "[1,2]", '{"a"}', "[ ]", '{"nested": {"x": 1}}']
)
def test_a_property_value_that_is_serialized_json_is_rejected(value: str) -> None:
    message = reject(events(), event(properties={"meta": value}))
    assert "nested JSON" in message and "meta" in message


@pytest.mark.parametrize("value", ["{}", "[]", "{", "x}", "[a", "{a]", "a{b}", " {a} ", "}{"])
def test_a_property_value_that_only_looks_like_json_at_one_end_is_kept(value: str) -> None:
    assert accept(events(), event(properties={"meta": value}))["properties"] == {"meta": value}


def test_a_whole_number_float_status_code_is_an_integer_as_json_schema_says() -> None:
    # JSON Schema (and so the OpenAPI document) calls 247.0 an integer; the validator agrees
    # and stores the integer.
    for literal, stored in [(b"247.0", 247), (b"2.47e2", 247), (b"599.0", 599)]:
        body = json.dumps(fact(status_code=777777)).encode().replace(b"777777", literal)
        line = facts().one(body).line
        assert b'"status_code":%d,' % stored in line
        assert json.loads(line)["status_code"] == stored
        batch = facts().batch_lines(body + b"\n" + json.dumps(fact()).encode())
        assert (batch.events, batch.errors) == (2, [])
    for bad in [b"247.5", b"99.0", b"600.0", b"1e400"]:
        reject(facts(), json.dumps(fact(status_code=777777)).encode().replace(b"777777", bad))


def test_a_bad_batch_keeps_only_the_first_errors_and_counts_the_rest() -> None:
    body = b"1\n" * 10_000
    lines = facts().batch_lines(body, max_errors=100)
    assert len(lines.errors) == 100 and lines.errors[0][0] == 0 and lines.errors[-1][0] == 99
    assert lines.rejected == 10_000
    uncapped = facts().batch_lines(body)
    assert (len(uncapped.errors), uncapped.rejected) == (10_000, 10_000)
