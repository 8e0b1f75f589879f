"""Data for the dashboard tests, written as raw facts and rolled up by the real rollup, and
DuckDB references computed from the same raw facts.

Two data sets:

* :func:`incident_night` — 2026-03-01 22:00 to 2026-03-02 02:00 UTC, across hour and day
  boundaries: ``frontend`` is deployed (v7) at 23:50; after it ``POST /checkout`` fails
  half the time and slows down; nothing at all is served from 23:20 to 23:35 (empty steps);
  some facts are written twice, as a retried rotation could leave them.
* :func:`demo_like` — what ``gravix demo`` sends (its traffic model, its incident on
  ``frontend POST /checkout`` after a deploy), ending at the current minute.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gravix import schema
from gravix.rollup import run_rollup
from gravix.storage import layout
from gravix.tools.traffic import Incident, Traffic

START = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
END = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
GAP = (datetime(2026, 3, 1, 23, 20, tzinfo=UTC), datetime(2026, 3, 1, 23, 35, tzinfo=UTC))
DEPLOY = datetime(2026, 3, 1, 23, 50, 0, 250_000, tzinfo=UTC)
ENDPOINTS: dict[str, list[tuple[str, str]]] = {
    "frontend": [("GET", "/"), ("GET", "/products/{id}"), ("POST", "/checkout"), ("GET", "/cart")],
    "api": [("GET", "/v1/items"), ("POST", "/v1/orders"), ("DELETE", "/v1/items/{id}")],
}


# One server error that arrives after its hour (00:00-01:00) was rolled up: the rollup that
# follows rebuilds that hour alone.
LATE_FACT: dict[str, Any] = {
    "event_id": "019cab8e-3a00-7000-8000-000000000001",
    "event_time": "2026-03-02T00:30:00.000Z",
    "service": "frontend",
    "method": "GET",
    "path_template": "/",
    "status_code": 500,
    "latency_ms": 12.5,
}


def uuid7(ms: int, rng: random.Random) -> str:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64)
    value |= (0b10 << 62) | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def write_raw(root: Path, topic: str, records: list[dict[str, Any]], *, again: int = 0) -> None:
    """Records as raw JSONL files, two per hour; ``again`` of them written a second time."""
    rng = random.Random(3)
    by_hour: dict[layout.Hour, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        moment = datetime.fromisoformat(record["event_time"].replace("Z", "+00:00"))
        by_hour[layout.Hour.of(moment)].append(record)
    twice = {records[i]["event_id"] for i in rng.sample(range(len(records)), again)}
    for n, (hour, rows) in enumerate(sorted(by_hour.items())):
        half = len(rows) // 2
        parts = [rows[:half], rows[half:] + [r for r in rows[:half] if r["event_id"] in twice]]
        for k, part in enumerate(parts):
            if part:
                path = layout.raw_file_path(root, topic, hour, f"t{n:04d}-{k}")
                path.parent.mkdir(parents=True, exist_ok=True)
                text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in part)
                path.write_text(text)


def _night_facts(per_minute: int = 20, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    facts: list[dict[str, Any]] = []
    minute = START
    while minute < END:
        if not GAP[0] <= minute < GAP[1]:
            for _ in range(per_minute):
                service = rng.choice(["frontend", "frontend", "api"])
                method, path = rng.choice(ENDPOINTS[service])
                moment = minute + timedelta(milliseconds=rng.randrange(60_000))
                broken = (service, path) == ("frontend", "/checkout") and moment >= DEPLOY
                facts.append(_fact(rng, moment, service, method, path, broken))
        minute += timedelta(minutes=1)
    return facts


def _fact(
    rng: random.Random, moment: datetime, service: str, method: str, path: str, broken: bool
) -> dict[str, Any]:
    latency = round(rng.lognormvariate(3.5, 0.9) * (4 if broken else 1), 3)
    roll = rng.random()
    if roll < 0.03:
        latency = 0.0
    elif roll < 0.06:
        latency = float(2 ** rng.randrange(0, 11))  # exactly on a bucket boundary
    if broken and rng.random() < 0.5:
        status = 503
    else:
        status = rng.choices([200, 201, 404, 429, 500], [80, 10, 6, 2, 2])[0]
    return {
        "event_id": uuid7(int(moment.timestamp() * 1000), rng),
        "event_time": stamp(moment),
        "service": service,
        "method": method,
        "path_template": path,
        "status_code": status,
        "latency_ms": latency,
    }


def _night_events() -> list[dict[str, Any]]:
    rng = random.Random(11)

    def event(moment: datetime, service: str, kind: str, **extra: Any) -> dict[str, Any]:
        return {
            "event_id": uuid7(int(moment.timestamp() * 1000), rng),
            "event_time": stamp(moment),
            "service": service,
            "event_type": kind,
            **extra,
        }

    return [
        event(START + timedelta(minutes=14, seconds=3), "api", "deploy_completed", entity_id="a3"),
        event(DEPLOY - timedelta(minutes=2), "frontend", "deploy_started", entity_id="v7"),
        event(DEPLOY, "frontend", "deploy_completed", entity_id="v7", message="release v7"),
        event(START + timedelta(hours=3, minutes=5), "api", "restart"),
    ]


def incident_night(root: Path) -> Path:
    write_raw(root, schema.REQUEST_FACTS, _night_facts(), again=60)
    write_raw(root, schema.SERVICE_EVENTS, _night_events())
    run_rollup(root=root)
    return root


# --- demo-like data ---------------------------------------------------------------------------

DEMO_SERVICE, DEMO_METHOD, DEMO_PATH = "frontend", "POST", "/checkout"


def demo_like(
    root: Path, *, end: datetime, hours: float = 2.0, facts: int = 40_000, previous_day: bool = True
) -> dict[str, Any]:
    """The demo's traffic (its model and incident) written straight into raw and rolled up;
    with ``previous_day``, the same hours a day earlier too, calm, for the comparison."""
    start = end - timedelta(hours=hours)
    span = hours * 3600
    incident = Incident(DEMO_SERVICE, DEMO_PATH, span * 2 / 3, 20 * 60)
    traffic = Traffic(["frontend", "checkout", "catalog"], [incident], seed=7, span=span)
    rows = _traffic_rows(traffic, start, span, facts)
    events = [traffic.event(e, _ms(start) + int(e.offset * 1000)) for e in traffic.events]
    if previous_day:
        calm = Traffic(["frontend", "checkout", "catalog"], [], seed=8, deploys=False)
        rows += _traffic_rows(calm, start - timedelta(days=1), span, facts)
    write_raw(root, schema.REQUEST_FACTS, rows)
    write_raw(root, schema.SERVICE_EVENTS, events)
    run_rollup(root=root)
    return {
        "start": start,
        "end": end,
        "incident_from": start + timedelta(seconds=incident.start),
        "events": events,
    }


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _traffic_rows(
    traffic: Traffic, start: datetime, span: float, facts: int
) -> list[dict[str, Any]]:
    base = _ms(start)
    return [
        traffic.fact(base + int(span * n / facts * 1000), span * n / facts) for n in range(facts)
    ]


# --- DuckDB references ------------------------------------------------------------------------

FACT_COLUMNS = (
    "{'event_id': 'VARCHAR', 'event_time': 'TIMESTAMPTZ', 'service': 'VARCHAR', "
    "'method': 'VARCHAR', 'path_template': 'VARCHAR', 'status_code': 'BIGINT', "
    "'latency_ms': 'DOUBLE'}"
)
EVENT_COLUMNS = (
    "{'event_id': 'VARCHAR', 'event_time': 'TIMESTAMPTZ', 'service': 'VARCHAR', "
    "'event_type': 'VARCHAR', 'entity_id': 'VARCHAR', 'message': 'VARCHAR'}"
)


def duck() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def facts_sql(root: Path) -> str:
    """Raw facts de-duplicated by event_id, as the rollup counts them."""
    glob = layout.raw_glob(root, schema.REQUEST_FACTS)
    return (
        f"(SELECT DISTINCT * FROM read_json('{glob}', format='newline_delimited', "
        f"columns={FACT_COLUMNS}, hive_partitioning=false))"
    )


def events_sql(root: Path) -> str:
    glob = layout.raw_glob(root, schema.SERVICE_EVENTS)
    return (
        f"(SELECT DISTINCT * FROM read_json('{glob}', format='newline_delimited', "
        f"columns={EVENT_COLUMNS}, hive_partitioning=false))"
    )


def metrics_sql(root: Path) -> str:
    glob = layout.warehouse_glob(root, schema.REQUEST_METRICS_MINUTE)
    return f"read_parquet('{glob}', hive_partitioning=true)"


def ts(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{moment.isoformat()}'"


def rank_value(q: float) -> str:
    """The exact value at the rank the sketch's rule reads (DESIGN §6): the ⌈q·n⌉-th smallest."""
    return f"list_sort(list(latency_ms))[greatest(1, ceil({q} * count(*))::BIGINT)]"


def parse_z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
