"""The fast paths of the validator (batches, and single-event bodies validated together)
give exactly what the per-event path gives."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gravix.errors import ValidationError
from gravix.schema import Lines, Validator
from serverutil import fact, uuid7

NOW = 1_795_000_000.0


def _fmt(seconds: float) -> str:
    ms = round(seconds * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(seconds))) + f".{ms:03d}Z"


# Values near the rules' edges, valid and not, mixed into otherwise valid facts.
FIELD_VALUES = {
    "event_id": st.one_of(
        st.builds(uuid7),
        st.builds(lambda: uuid7().upper()),
        st.just("3b241101-e2bb-4255-8caf-4136c566a962"),
        st.just("0190a0b0-0000-7000-c000-000000000000"),
        st.just("0190a0b0-0000-7000-8000-00000000000g"),
    ),
    "event_time": st.one_of(
        st.integers(0, 3000).map(lambda s: _fmt(NOW - s)),
        st.just(_fmt(NOW + 301)),
        st.just(_fmt(NOW - 31 * 86400)),
        st.just("2026-11-28T10:00:00Z"),
        st.just("2026-11-28T10:00:00.5+01:00"),
        st.just("2026-02-30T10:00:00.000Z"),
        st.just("2026-11-28T24:00:00.000Z"),
        st.just("2026-11-28T10:61:00.000Z"),
        st.just("2026-11-28T10:00:00.000z"),
        st.just("２026-11-28T10:00:00.000Z"),
    ),
    "service": st.sampled_from(["frontend", "a.b-c_d", "", "bad service", "s" * 129]),
    "method": st.sampled_from(["GET", "post", "Get", "FETCH", "DELETE"]),
    "path_template": st.sampled_from(["/", "/a/{id}", "x", "/a?b", "/orders/1234", "/o/123"]),
    "user_agent_family": st.sampled_from([None, "Chrome", "u" * 65, "bad\x01agent"]),
}


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, object]]:
    """Valid facts, and in about half of the batches one field of one fact set to a value
    near a rule's edge (valid or not), so that the fast path's every check is exercised."""
    size = draw(st.integers(1, 12))
    docs = [fact(event_time=_fmt(NOW - draw(st.integers(0, 7200)))) for _ in range(size)]
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(FIELD_VALUES)))
        docs[draw(st.integers(0, size - 1))][name] = draw(FIELD_VALUES[name])
    return [{k: v for k, v in d.items() if v is not None} for d in docs]


def _hour_of(line: bytes) -> int:
    """The event hour of a stored line, read without gravix code."""
    stamp = json.loads(line)["event_time"]
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp() // 3600)


def _lines(validator: Validator, body: bytes) -> Lines:
    """The per-event path's answer, in the form of :meth:`Validator.batch_lines`."""
    accepted, errors = validator.batch(body, now=NOW)
    data = b"".join(a.line + b"\n" for a in accepted)
    hours = frozenset(_hour_of(a.line) for a in accepted)
    return Lines(data, len(accepted), hours, [a.event_id for a in accepted], errors)


def _many_by_one(validator: Validator, bodies: list[bytes]) -> Lines:
    """What validating each body on its own with :meth:`Validator.one` gives."""
    accepted, errors = [], []
    for index, body in enumerate(bodies):
        try:
            accepted.append(validator.one(body, now=NOW))
        except ValidationError as exc:
            errors.append((index, exc.message))
    data = b"".join(a.line + b"\n" for a in accepted)
    hours = frozenset(_hour_of(a.line) for a in accepted)
    return Lines(data, len(accepted), hours, [a.event_id for a in accepted], errors)


@settings(max_examples=300, deadline=None)
@given(
    batches(),
    st.booleans(),
    st.sampled_from([b"\n", b"\n\n", b"\n  \n", b"\r\n", b"\r"]),
)
def test_batch_lines_equals_the_per_event_path(
    docs: list[dict[str, object]], array: bool, separator: bytes
) -> None:
    body = (
        json.dumps(docs).encode()
        if array
        else separator.join(json.dumps(d).encode() for d in docs) + b"\n"
    )
    fast = Validator("request_facts", clock=lambda: NOW)
    slow = Validator("request_facts", clock=lambda: NOW)
    fast.batch_lines(body, now=NOW)  # warm the caches, as a running server has them
    assert fast.batch_lines(body, now=NOW) == _lines(slow, body)


EDGE_VALUES = [
    ("event_id", "3b241101-e2bb-4255-8caf-4136c566a962"),
    ("event_id", "0190a0b0-0000-7000-c000-000000000000"),
    ("event_id", "0190A0B0-0000-7000-8000-000000000000"),
    ("event_time", _fmt(NOW + 301)),
    ("event_time", _fmt(NOW + 299)),
    ("event_time", _fmt(NOW - 31 * 86400)),
    ("event_time", "2026-11-18T10:00:00Z"),
    ("event_time", "2026-11-18T10:00:00.5+01:00"),
    ("event_time", "2026-02-30T10:00:00.000Z"),
    ("event_time", "2026-11-18T24:00:00.000Z"),
    ("event_time", "2026-11-18T10:61:00.000Z"),
    ("event_time", "２026-11-18T10:00:00.000Z"),
    ("service", ""),
    ("service", "bad service"),
    ("method", "post"),
    ("method", "Get"),
    ("method", "FETCH"),
    ("path_template", "x"),
    ("path_template", "/orders/1234"),
    ("user_agent_family", "bad\x01agent"),
]


@pytest.mark.parametrize(("name", "value"), EDGE_VALUES)
def test_one_edge_value_in_a_batch_gives_what_the_per_event_path_gives(
    name: str, value: object
) -> None:
    docs = [fact(event_time=_fmt(NOW - 60)) for _ in range(3)]
    docs[1][name] = value
    body = b"\n".join(json.dumps(d).encode() for d in docs) + b"\n"
    fast = Validator("request_facts", clock=lambda: NOW)
    fast.batch_lines(body, now=NOW)
    assert fast.batch_lines(body, now=NOW) == _lines(Validator("request_facts"), body)


def test_two_values_on_one_line_are_not_accepted_as_two_events() -> None:
    validator = Validator("request_facts", clock=lambda: NOW)
    one, two = (json.dumps(fact(event_time=_fmt(NOW))) for _ in range(2))
    body = f"{one} {two}\n{one}\n".encode()
    lines = validator.batch_lines(body, now=NOW)
    assert lines.events == 1
    assert [index for index, _ in lines.errors] == [0]


def _split_across_two(doc: dict[str, object]) -> tuple[bytes, bytes]:
    """One fact's JSON cut into two pieces, neither valid alone, that read as the fact when
    joined with a comma; the cut is inside the path template, which then holds a comma."""
    text = json.dumps({**doc, "path_template": "/a<CUT>b"})
    head, tail = text.split("<CUT>")
    return head.encode(), tail.encode()


def test_lines_that_only_parse_when_joined_are_each_rejected() -> None:
    # Three lines, none of them a valid fact alone: a fact cut in two, and a line holding two
    # facts. Joined with commas into one array they would read as three valid facts.
    validator = Validator("request_facts", clock=lambda: NOW)
    head, tail = _split_across_two(fact(event_time=_fmt(NOW - 5)))
    pair = f"{json.dumps(fact(event_time=_fmt(NOW)))},{json.dumps(fact(event_time=_fmt(NOW)))}"
    body = b"\n".join([head, tail, pair.encode()]) + b"\n"
    json.loads(b"[" + body.rstrip(b"\n").replace(b"\n", b",") + b"]")  # valid when joined
    lines = validator.batch_lines(body, now=NOW)
    assert lines.events == 0
    assert [index for index, _ in lines.errors] == [0, 1, 2]


def test_single_bodies_that_only_parse_when_joined_are_each_rejected() -> None:
    validator = Validator("request_facts", clock=lambda: NOW)
    head, tail = _split_across_two(fact(event_time=_fmt(NOW - 5)))
    pair = f"{json.dumps(fact(event_time=_fmt(NOW)))},{json.dumps(fact(event_time=_fmt(NOW)))}"
    good = json.dumps(fact(event_time=_fmt(NOW))).encode()
    lines = validator.many([head, good, tail, pair.encode()], now=NOW)
    assert lines.events == 1
    assert [index for index, _ in lines.errors] == [0, 2, 3]
    assert lines.ids == [json.loads(good)["event_id"]]


@settings(max_examples=200, deadline=None)
@given(batches())
def test_many_single_bodies_give_what_each_body_alone_gives(docs: list[dict[str, object]]) -> None:
    bodies = [json.dumps(d).encode() for d in docs]
    fast = Validator("request_facts", clock=lambda: NOW)
    fast.many(bodies, now=NOW)  # warm the caches, as a running server has them
    assert fast.many(bodies, now=NOW) == _many_by_one(Validator("request_facts"), bodies)


def test_many_names_the_hours_of_a_batch_that_spans_midnight() -> None:
    validator = Validator("request_facts", clock=lambda: NOW)
    midnight = NOW - NOW % 86400
    times = [midnight - 1, midnight, midnight + 3600 * 2 + 5]
    bodies = [json.dumps(fact(event_time=_fmt(t))).encode() for t in times]
    lines = validator.many(bodies, now=NOW)
    assert lines.events == 3
    assert lines.hours == {int(t // 3600) for t in times}
    assert len(lines.hours) == 3


def test_many_of_service_events_gives_what_each_body_alone_gives() -> None:
    validator = Validator("service_events", clock=lambda: NOW)
    good = {
        "event_id": uuid7(),
        "event_time": _fmt(NOW - 30),
        "service": "frontend",
        "event_type": "deploy_completed",
    }
    bodies = [json.dumps(good).encode(), b"{}", json.dumps({**good, "event_type": "X"}).encode()]
    assert validator.many(bodies, now=NOW) == _many_by_one(Validator("service_events"), bodies)
