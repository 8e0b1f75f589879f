"""Synthetic raw facts for rollup tests: canonical lines written straight into raw files."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from gravix import schema
from gravix.storage import layout
from gravix.storage.layout import Hour

DAY1 = date(2026, 2, 16)
DAY2 = date(2026, 2, 17)
SERVICES = ("checkout", "frontend", "search")
ROUTES = (("GET", "/"), ("GET", "/items/{id}"), ("POST", "/checkout"), ("DELETE", "/cart"))
STATUSES = (200, 200, 200, 201, 204, 301, 400, 404, 429, 500, 502, 503)


def uuid7(rng: random.Random, moment: datetime) -> str:
    ms = int(moment.timestamp() * 1000)
    rand_a = rng.getrandbits(12)
    rand_b = rng.getrandbits(62)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def stamp(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def latency(rng: random.Random) -> float:
    roll = rng.random()
    if roll < 0.03:
        return 0.0
    if roll < 0.06:
        return rng.randint(1, 64) / 64  # sub-millisecond fractions
    # Multiples of 1/64 keep sums exact whatever the order of addition.
    return round(rng.lognormvariate(3.5, 1.0) * 64) / 64


@dataclass
class Facts:
    """Raw lines by hour and file, and the distinct facts behind them."""

    lines: dict[Hour, dict[str, list[bytes]]] = field(default_factory=dict)

    def add(self, hour: Hour, file_id: str, line: bytes) -> None:
        self.lines.setdefault(hour, {}).setdefault(file_id, []).append(line)

    def write(self, root: Path, topic: str = schema.REQUEST_FACTS) -> list[Path]:
        written: list[Path] = []
        for hour, files in self.lines.items():
            for file_id, lines in files.items():
                path = layout.raw_file_path(root, topic, hour, file_id)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"".join(line + b"\n" for line in lines))
                written.append(path)
        return written


def fact_line(rng: random.Random, moment: datetime, service: str | None = None) -> bytes:
    method, path = rng.choice(ROUTES)
    fact = {
        "event_id": uuid7(rng, moment),
        "event_time": stamp(moment),
        "service": service or rng.choice(SERVICES),
        "method": method,
        "path_template": path,
        "status_code": rng.choice(STATUSES),
        "latency_ms": latency(rng),
    }
    if rng.random() < 0.5:
        fact["user_agent_family"] = rng.choice(("Chrome", "curl", "Firefox"))
    return json.dumps(fact, separators=(",", ":")).encode()


def boundary_moments(hours: list[Hour]) -> list[datetime]:
    """The first and last millisecond of each hour, and of each minute around them."""
    out: list[datetime] = []
    for hour in hours:
        start = hour.start
        out += [
            start,
            start + timedelta(hours=1) - timedelta(milliseconds=1),
            start + timedelta(minutes=1) - timedelta(milliseconds=1),
            start + timedelta(minutes=1),
        ]
    return out


def generate(
    rng: random.Random,
    hours: list[Hour],
    per_hour: int,
    *,
    files_per_hour: int = 2,
    duplicate_rate: float = 0.1,
    prefix: str = "f",
) -> Facts:
    """``per_hour`` distinct facts in each hour, spread over files; some ``event_id``s
    appear two or three times (in the same file or another one)."""
    facts = Facts()
    extra = boundary_moments(hours)
    for hour in hours:
        moments = [
            hour.start + timedelta(milliseconds=rng.randrange(3_600_000)) for _ in range(per_hour)
        ]
        moments += [m for m in extra if Hour.of(m) == hour]
        for moment in moments:
            line = fact_line(rng, moment)
            copies = 1
            if rng.random() < duplicate_rate:
                copies = rng.choice((2, 3))
            for _ in range(copies):
                file_id = f"{prefix}{rng.randrange(files_per_hour):03d}"
                facts.add(hour, file_id, line)
    return facts


def event_line(
    rng: random.Random, moment: datetime, event_type: str, service: str | None = None
) -> bytes:
    event = {
        "event_id": uuid7(rng, moment),
        "event_time": stamp(moment),
        "service": service or rng.choice(SERVICES),
        "event_type": event_type,
        "entity_id": f"v{rng.randint(1, 99)}",
        "properties": {"version": "1.2.3"},
    }
    return json.dumps(event, separators=(",", ":")).encode()
