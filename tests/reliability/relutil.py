"""Shared pieces of the reliability suite: hostile inputs, an independent oracle for
stored lines, and readers of what ended up on disk."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# --- an oracle written from DESIGN §3, independent of gravix.schema ----------------------------

_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_SERVICE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HEX = "[0-9a-fA-F]"
_ANY_UUID = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
FACT_FIELDS = {
    "event_id",
    "event_time",
    "service",
    "method",
    "path_template",
    "status_code",
    "latency_ms",
    "user_agent_family",
}
EVENT_FIELDS = {
    "event_id",
    "event_time",
    "service",
    "event_type",
    "entity_id",
    "message",
    "properties",
}


def _common_problems(obj: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(obj.get("event_id"), str) or not _UUID7.fullmatch(obj["event_id"]):
        problems.append("event_id")
    if not isinstance(obj.get("event_time"), str) or not _TIME.fullmatch(obj["event_time"]):
        problems.append("event_time")
    else:
        from datetime import datetime

        datetime.strptime(obj["event_time"], "%Y-%m-%dT%H:%M:%S.%fZ")  # a real calendar date
    if not isinstance(obj.get("service"), str) or not _SERVICE.fullmatch(obj["service"]):
        problems.append("service")
    return problems


def line_problems(topic: str, line: bytes) -> list[str]:
    """What is wrong with a stored line, judged from the design alone (empty = fine)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return ["not JSON"]
    if not isinstance(obj, dict):
        return ["not an object"]
    problems = _common_problems(obj)
    if topic == "request_facts":
        extra = set(obj) - FACT_FIELDS
        if extra or not {"method", "path_template", "status_code", "latency_ms"} <= set(obj):
            problems.append(f"fields {sorted(obj)}")
            return problems
        path = obj["path_template"]
        if obj["method"] not in METHODS:
            problems.append("method")
        if (
            not isinstance(path, str)
            or not path.startswith("/")
            or len(path) > 256
            or any(c in path for c in "?#")
            or any(ord(c) < 32 or ord(c) == 127 for c in path)
            or _ANY_UUID.search(path)
            or any(seg.isascii() and seg.isdigit() and len(seg) >= 4 for seg in path.split("/"))
        ):
            problems.append("path_template")
        code = obj["status_code"]
        if type(code) is not int or not 100 <= code <= 599:
            problems.append("status_code")
        latency = obj["latency_ms"]
        if type(latency) not in (int, float) or not 0 <= latency <= 3_600_000:
            problems.append("latency_ms")
        ua = obj.get("user_agent_family")
        if ua is not None and (not isinstance(ua, str) or len(ua) > 64):
            problems.append("user_agent_family")
    else:
        extra = set(obj) - EVENT_FIELDS
        if extra or "event_type" not in obj:
            problems.append(f"fields {sorted(obj)}")
            return problems
        if not isinstance(obj["event_type"], str) or not _EVENT_TYPE.fullmatch(obj["event_type"]):
            problems.append("event_type")
        props = obj.get("properties")
        if props is not None and (
            not isinstance(props, dict)
            or len(props) > 32
            or any(not isinstance(v, str) or len(k) > 64 or len(v) > 256 for k, v in props.items())
        ):
            problems.append("properties")
    return problems


# --- hostile inputs -----------------------------------------------------------------------------


def uuid7(counter: int | None = None) -> str:
    """A UUID version 7 (time-ordered); ``counter`` makes it deterministic."""
    ms = int(time.time() * 1000) if counter is None else 1_700_000_000_000 + counter
    rand = int.from_bytes(os.urandom(10), "big") if counter is None else counter
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def now_stamp(offset: float = 0.0) -> str:
    t = time.time() + offset
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


NASTY_STRINGS = [
    "",
    "../",
    "../../etc/passwd",
    "/../../../tmp/x",
    "..\\..\\windows",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "\u2028",
    "\n",
    "\r\n",
    "x" * 300,
    "x" * 5000,
    "😀",
    "Ω",
    "GET",
    "/users/1234",
    "/a?b",
    "NaN",
    "Infinity",
    "0190b6a4-1c2d-4abc-8def-0123456789ab",
    "0190B6A4-1C2D-7ABC-8DEF-0123456789AB",
    "0190b6a4-1c2d-7abc-8def-0123456789ab\n",
    "2026-02-16T10:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59.999-23:59",
    "1970-01-01T00:00:00Z",
    "2026-02-16T10:00:00.\u0661\u0662\u0663Z",
    "2026-13-45T99:99:99Z",
    "2026-W07-1T10:00:00Z",
    "{id}",
]
NASTY_NUMBERS: list[Any] = [
    0,
    -1,
    99,
    100,
    599,
    600,
    2**63,
    -(2**63) - 1,
    10**400,
    1e308,
    -0.0,
    3_600_000,
    3_600_000.0001,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    None,
]


def deep(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


nasty_scalar = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(NASTY_NUMBERS),
    st.text(max_size=40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(deep, st.integers(1, 40)),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


def valid_fact(n: int = 0) -> dict[str, Any]:
    return {
        "event_id": uuid7(),
        "event_time": now_stamp(-(n % 600) - 1),
        "service": f"svc-{n % 3}",
        "method": ["GET", "post", "Delete"][n % 3],
        "path_template": f"/api/{n % 7}/{{id}}",
        "status_code": [200, 404, 503][n % 3],
        "latency_ms": 0.5 + n % 1000,
    }


def valid_event(n: int = 0) -> dict[str, Any]:
    return {
        "event_id": uuid7(),
        "event_time": now_stamp(-(n % 600) - 1),
        "service": f"svc-{n % 3}",
        "event_type": "deploy_started",
        "properties": {"version": str(n)},
    }


CAMEL = {
    "event_id": "eventId",
    "event_time": "eventTime",
    "path_template": "pathTemplate",
    "status_code": "statusCode",
    "latency_ms": "latencyMs",
    "user_agent_family": "userAgentFamily",
    "event_type": "eventType",
    "entity_id": "entityId",
    "properties": "metadata",
}


@st.composite
def mutated_object(draw: st.DrawFn, topic: str = "request_facts") -> Any:
    """A valid event with a few hostile changes: fields dropped, replaced, renamed or added."""
    obj: dict[str, Any] = valid_fact(draw(st.integers(0, 999)))
    if topic != "request_facts":
        obj = valid_event(draw(st.integers(0, 999)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*sorted(obj), "user_agent_family", "extra", "../"]))
        action = draw(st.sampled_from(["replace", "drop", "camel", "both"]))
        if action == "drop":
            obj.pop(key, None)
        elif action == "camel" and key in obj and key in CAMEL:
            obj[CAMEL[key]] = obj.pop(key)
        elif action == "both" and key in obj and key in CAMEL:
            obj[CAMEL[key]] = obj[key]
        else:
            obj[key] = draw(nasty_scalar)
    return obj


def encode(obj: Any, style: str) -> bytes:
    """JSON text in several spellings: plain, ASCII-escaped (lone surrogates as \\udXXX)."""
    if style == "ascii":
        return json.dumps(obj, ensure_ascii=True, allow_nan=True).encode()
    return json.dumps(obj, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def with_duplicate_key(body: bytes, key: str, value: Any) -> bytes:
    """Append ``"key": value`` again at the end of an object's text."""
    if not body.endswith(b"}"):
        return body
    extra = json.dumps(key).encode() + b":" + json.dumps(value, allow_nan=True).encode()
    return body[:-1] + (b"," if body != b"{}" else b"") + extra + b"}"


@st.composite
def hostile_body(draw: st.DrawFn, topic: str = "request_facts") -> bytes:
    """One request body: a mutated event, sometimes with duplicate keys or made invalid."""
    kind = draw(st.sampled_from(["object", "object", "object", "bytes", "text", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if kind == "deep":
        return b'{"event_id":' + b"[" * draw(st.integers(100, 200_000)) + b"]"
    body = encode(draw(mutated_object(topic)), draw(st.sampled_from(["ascii", "utf8"])))
    if draw(st.booleans()):
        body = with_duplicate_key(body, draw(st.sampled_from(sorted(CAMEL))), draw(nasty_scalar))
    cut = draw(st.sampled_from([None, None, None, "truncate", "nul", "garbage"]))
    if cut == "truncate":
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif cut == "nul":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + b"\x00" + body[at:]
    elif cut == "garbage":
        body = body + draw(st.binary(min_size=1, max_size=8))
    return body


@st.composite
def hostile_batch(draw: st.DrawFn, topic: str = "request_facts") -> bytes:
    parts = draw(st.lists(hostile_body(topic), max_size=6))
    if draw(st.booleans()):
        return b"\n".join(parts)
    return b"[" + b",".join(parts) + b"]"


# --- what is on disk ---------------------------------------------------------------------------


def stored_lines(root: Path, topic: str = "request_facts") -> list[bytes]:
    """Every complete line in raw files and buffer files of a topic."""
    lines: list[bytes] = []
    for area in (root / "raw" / topic, root / "buffer" / topic):
        if not area.is_dir():
            continue
        for path in sorted(area.rglob("*.jsonl")):
            data = path.read_bytes()
            lines.extend(line for line in data.split(b"\n")[:-1] if line.strip(b"\x00"))
    return lines


def raw_lines(root: Path, topic: str = "request_facts") -> list[bytes]:
    lines: list[bytes] = []
    area = root / "raw" / topic
    if area.is_dir():
        for path in sorted(area.rglob("*.jsonl")):
            lines.extend(path.read_bytes().splitlines())
    return lines


def event_ids(lines: list[bytes]) -> Counter[str]:
    return Counter(json.loads(line)["event_id"] for line in lines)
