"""Shared pieces of the reliability suite: hostile inputs, an independent oracle for
stored lines, and readers of what ended up on disk."""

from __future__ import annotations

import functools
import json
import os
import random
import re
import struct
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

T = TypeVar("T")

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


class Choices(Protocol):
    """Where the hostile generators below take every decision from: hypothesis draws
    (:class:`Drawn`; failures shrink) or a seeded ``random.Random`` (:class:`Seeded`; the
    same kinds of input for a small fraction of the cost, for runs of 100,000 cases)."""

    def below(self, n: int) -> int: ...  # 0 <= i < n; 0 is where hypothesis shrinks to
    def integer(self, lo: int, hi: int) -> int: ...
    def any_int(self) -> int: ...
    def any_float(self) -> float: ...
    def text(self, max_size: int) -> str: ...
    def binary(self, max_size: int) -> bytes: ...


def pick(c: Choices, items: Sequence[T]) -> T:
    return items[c.below(len(items))]


def one_in(c: Choices, n: int) -> bool:
    """True once in ``n``; False is where hypothesis shrinks to."""
    return c.below(n) == n - 1


_integers = functools.cache(st.integers)
_texts = functools.cache(lambda max_size: st.text(max_size=max_size))
_binaries = functools.cache(lambda max_size: st.binary(max_size=max_size))
_ANY_INT = st.integers()
_ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


class Drawn:
    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def below(self, n: int) -> int:
        return self._draw(_integers(0, n - 1))

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(_integers(lo, hi))

    def any_int(self) -> int:
        return self._draw(_ANY_INT)

    def any_float(self) -> float:
        return self._draw(_ANY_FLOAT)

    def text(self, max_size: int) -> str:
        return self._draw(_texts(max_size))

    def binary(self, max_size: int) -> bytes:
        return self._draw(_binaries(max_size))


_BITS = (1, 2, 7, 8, 15, 16, 31, 32, 53, 63, 64, 65, 128, 1400)
_FLOATS = (0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0**53 + 1)
_FLOATS += (float("nan"), float("inf"), float("-inf"))
# Code point ranges for Seeded.text, printable ASCII weighted up; unlike hypothesis' text()
# they include lone surrogates.
_CHARS = ((0x20, 0x7E),) * 4 + (
    (0x00, 0x1F),
    (0x7F, 0xFF),
    (0x660, 0x669),  # Arabic-Indic digits
    (0x100, 0xD7FF),
    (0xD800, 0xDFFF),
    (0xE000, 0xFFFF),
    (0x10000, 0x10FFFF),
)


class Seeded:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def below(self, n: int) -> int:
        return int(self.rng.random() * n)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def any_int(self) -> int:
        value = self.rng.getrandbits(pick(self, _BITS))
        return -value if self.rng.random() < 0.5 else value

    def any_float(self) -> float:
        way = self.below(3)
        if way == 0:
            return pick(self, _FLOATS)
        if way == 1:  # any bit pattern: subnormals, NaN payloads
            return float(struct.unpack("<d", self.rng.randbytes(8))[0])
        return self.rng.uniform(-1, 1) * 10.0 ** self.rng.randint(-320, 308)

    def text(self, max_size: int) -> str:
        uniform = self.rng.random
        chars = []
        for _ in range(self.rng.randint(0, max_size)):
            lo, hi = _CHARS[int(uniform() * len(_CHARS))]
            chars.append(chr(lo + int(uniform() * (hi - lo + 1))))
        return "".join(chars)

    def binary(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))


def nasty_value(c: Choices) -> Any:
    way = c.below(7)
    if way == 0:
        return pick(c, NASTY_STRINGS)
    if way == 1:
        return pick(c, NASTY_NUMBERS)
    if way == 2:
        return c.text(40)
    if way == 3:
        return c.any_int()
    if way == 4:
        return c.any_float()
    if way == 5:
        return deep(c.integer(1, 40))
    return {c.text(5): c.text(5) for _ in range(c.below(4))}


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
_CAMEL_KEYS = sorted(CAMEL)
_ACTIONS = ("replace", "drop", "camel", "both")


def mutate(c: Choices, topic: str = "request_facts") -> dict[str, Any]:
    """A valid event with a few hostile changes: fields dropped, replaced, renamed or added."""
    n = c.below(1000)
    obj = valid_fact(n) if topic == "request_facts" else valid_event(n)
    for _ in range(c.below(4)):
        key = pick(c, [*sorted(obj), "user_agent_family", "extra", "../"])
        action = pick(c, _ACTIONS)
        if action == "drop":
            obj.pop(key, None)
        elif action == "camel" and key in obj and key in CAMEL:
            obj[CAMEL[key]] = obj.pop(key)
        elif action == "both" and key in obj and key in CAMEL:
            obj[CAMEL[key]] = obj[key]
        else:
            obj[key] = nasty_value(c)
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


_BODY_KINDS = ("object", "object", "object", "bytes", "text", "deep")
_STYLES = ("ascii", "utf8")
_CUTS = (None, None, None, "truncate", "nul", "garbage")


def body_from(c: Choices, topic: str = "request_facts") -> bytes:
    """One request body: a mutated event, sometimes with duplicate keys or made invalid."""
    kind = pick(c, _BODY_KINDS)
    if kind == "bytes":
        return c.binary(300)
    if kind == "text":
        return c.text(200).encode("utf-8", "surrogatepass")
    if kind == "deep":
        # Depths spread evenly on a log scale over 100..200,000: every parser limit in
        # between is crossed, and the bodies stay ~26 kB on average instead of ~100 kB.
        depth = int(100 * 2000 ** (c.below(1001) / 1000))
        closed = b"]" * depth + b"}" if c.below(2) else b"]"  # valid JSON, or cut off
        return b'{"event_id":' + b"[" * depth + closed
    body = encode(mutate(c, topic), pick(c, _STYLES))
    if c.below(2):
        body = with_duplicate_key(body, pick(c, _CAMEL_KEYS), nasty_value(c))
    cut = pick(c, _CUTS)
    if cut == "truncate":
        body = body[: c.integer(0, max(0, len(body) - 1))]
    elif cut == "nul":
        at = c.integer(0, len(body))
        body = body[:at] + b"\x00" + body[at:]
    elif cut == "garbage":
        body = body + c.binary(7) + bytes([c.below(256)])  # 1 to 8 bytes
    return body


def batch_from(c: Choices, topic: str = "request_facts") -> bytes:
    parts = [body_from(c, topic) for _ in range(c.below(7))]
    if c.below(2):
        return b"\n".join(parts)
    return b"[" + b",".join(parts) + b"]"


@st.composite
def mutated_object(draw: st.DrawFn, topic: str = "request_facts") -> Any:
    return mutate(Drawn(draw), topic)


@st.composite
def hostile_body(draw: st.DrawFn, topic: str = "request_facts") -> bytes:
    return body_from(Drawn(draw), topic)


@st.composite
def hostile_batch(draw: st.DrawFn, topic: str = "request_facts") -> bytes:
    return batch_from(Drawn(draw), topic)


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
