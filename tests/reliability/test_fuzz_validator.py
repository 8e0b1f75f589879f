"""Fuzzing the validator: hostile bodies never raise anything but ValidationError, every
line it accepts passes an independent reading of the contract and re-validates unchanged,
and its fast paths (whole batches; single bodies validated together) answer exactly as the
per-event path does."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relutil import hostile_batch, hostile_body, line_problems, now_stamp

from gravix.errors import ValidationError
from gravix.schema import Lines, Validator

SCALE = float(os.environ.get("GRAVIX_RELIABILITY_SCALE", "1"))
QUICK = int(1000 * SCALE)
LONG = int(100_000 * SCALE)
TOPICS = ["request_facts", "service_events"]
_validators = {topic: Validator(topic) for topic in TOPICS}
GOOD = {
    "request_facts": b'{"event_id":"0190b6a4-1c2d-7abc-8def-0123456789ab","event_time":"'
    + now_stamp(-5).encode()
    + b'","service":"a","method":"GET","path_template":"/x","status_code":200,'
    b'"latency_ms":1.5}',
    "service_events": b'{"event_id":"0190b6a4-1c2d-7abc-8def-0123456789ac","event_time":"'
    + now_stamp(-5).encode()
    + b'","service":"a","event_type":"deploy_started"}',
}


def _check_one(topic: str, body: bytes) -> None:
    validator = _validators[topic]
    now = time.time()
    # Validated together with a copy of itself and a valid event, it gets its own answer.
    good = validator.one(GOOD[topic], now).line
    together = validator.many([body, good, body], now)
    try:
        accepted = validator.one(body, now)
    except ValidationError as exc:
        assert together.errors == [(0, exc.message), (2, exc.message)]
        assert together.data == good + b"\n"
        return
    assert together.errors == []
    assert together.data == b"".join(line + b"\n" for line in (accepted.line, good, accepted.line))
    assert together.hours == {accepted.hour, validator.one(good, now).hour}
    assert line_problems(topic, accepted.line) == [], accepted.line
    again = validator.one(accepted.line)
    assert again.line == accepted.line
    assert (again.hour, again.event_id) == (accepted.hour, accepted.event_id)


def _check_batch(topic: str, body: bytes) -> None:
    validator = _validators[topic]
    now = time.time()
    try:
        accepted, errors = validator.batch(body, now)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as fast:
            validator.batch_lines(body, now)
        assert fast.value.message == exc.message
        return
    assert validator.batch_lines(body, now) == Lines.of(accepted, errors)
    indices = [i for i, _ in errors]
    assert indices == sorted(set(indices))
    assert all(isinstance(message, str) and message for _, message in errors)
    for item in accepted:
        assert line_problems(topic, item.line) == [], item.line
        assert validator.one(item.line).line == item.line


_SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=QUICK, **_SETTINGS)  # type: ignore[arg-type]
@given(st.sampled_from(TOPICS).flatmap(lambda t: st.tuples(st.just(t), hostile_body(t))))
def test_hostile_single_bodies_only_raise_validation_errors(case: tuple[str, bytes]) -> None:
    _check_one(*case)


@settings(max_examples=QUICK // 3, **_SETTINGS)  # type: ignore[arg-type]
@given(st.sampled_from(TOPICS).flatmap(lambda t: st.tuples(st.just(t), hostile_batch(t))))
def test_hostile_batches_only_raise_validation_errors_and_index_their_rejects(
    case: tuple[str, bytes],
) -> None:
    _check_batch(*case)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@settings(max_examples=LONG, **_SETTINGS)  # type: ignore[arg-type]
@given(st.sampled_from(TOPICS).flatmap(lambda t: st.tuples(st.just(t), hostile_body(t))))
def test_hostile_single_bodies_long_run(case: tuple[str, bytes]) -> None:
    _check_one(*case)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@settings(max_examples=LONG // 4, **_SETTINGS)  # type: ignore[arg-type]
@given(st.sampled_from(TOPICS).flatmap(lambda t: st.tuples(st.just(t), hostile_batch(t))))
def test_hostile_batches_long_run(case: tuple[str, bytes]) -> None:
    _check_batch(*case)


def test_the_oracle_can_tell_a_bad_line_from_a_good_one() -> None:
    good = _validators["request_facts"].one(
        b'{"event_id":"0190b6a4-1c2d-7abc-8def-0123456789ab","event_time":"'
        + now_stamp().encode()
        + b'","service":"a","method":"GET","path_template":"/x","status_code":200,'
        b'"latency_ms":1}'
    )
    assert line_problems("request_facts", good.line) == []
    for old, new in [
        (b'"service":"a"', b'"service":"a\\n"'),
        (b'"GET"', b'"get"'),
        (b'"/x"', b'"/x/1234"'),
        (b"200", b"700"),
        (b'"latency_ms":1.0', b'"latency_ms":1.0,"user":"x"'),
    ]:
        assert line_problems("request_facts", good.line.replace(old, new)), new
