"""Raw facts with an incident in them, written into a data root, and DuckDB references.

Shared by the query tests (library and CLI) and the query benchmark. The story: ``frontend``
is deployed at 10:00 (completed 10:02); after it, ``POST /checkout`` fails half the time
and slows down. Some facts are written twice (same ``event_id`` in two raw files), as a
retried rotation could leave them.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gravix import schema
from gravix.storage import layout

START = datetime(2026, 2, 16, 8, 0, tzinfo=UTC)
DEPLOY_STARTED = datetime(2026, 2, 16, 10, 0, 12, tzinfo=UTC)
DEPLOY_COMPLETED = datetime(2026, 2, 16, 10, 2, 30, tzinfo=UTC)
ENDPOINTS: dict[str, list[tuple[str, str]]] = {
    "frontend": [("GET", "/"), ("GET", "/products/{id}"), ("POST", "/checkout"), ("GET", "/cart")],
    "api": [("GET", "/v1/items"), ("POST", "/v1/orders")],
}


def uuid7(ms: int, rng: random.Random) -> str:
    rand_a = rng.getrandbits(12)
    rand_b = rng.getrandbits(62) | (0b10 << 62)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_facts(
    start: datetime = START, minutes: int = 240, per_minute: int = 12, seed: int = 7
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    facts: list[dict[str, Any]] = []
    for minute in range(minutes):
        base = start + timedelta(minutes=minute)
        for _ in range(per_minute):
            service = rng.choice(["frontend", "frontend", "api"])
            method, path = rng.choice(ENDPOINTS[service])
            moment = base + timedelta(milliseconds=rng.randrange(60_000))
            broken = service == "frontend" and path == "/checkout" and moment >= DEPLOY_COMPLETED
            latency = round(rng.lognormvariate(3.5, 0.8) * (3 if broken else 1), 3)
            roll = rng.random()
            if roll < 0.03:
                latency = 0.0  # served from cache in no measurable time
            elif roll < 0.06:
                latency = float(2 ** rng.randrange(0, 10))  # exactly on a bucket boundary
            if broken and rng.random() < 0.5:
                status = 503
            else:
                status = rng.choices([200, 201, 404, 429, 500], [80, 10, 6, 2, 2])[0]
            facts.append(
                {
                    "event_id": uuid7(int(moment.timestamp() * 1000), rng),
                    "event_time": stamp(moment),
                    "service": service,
                    "method": method,
                    "path_template": path,
                    "status_code": status,
                    "latency_ms": latency,
                    "user_agent_family": rng.choice(["Chrome", "Firefox", "curl"]),
                }
            )
    return facts


def make_events(seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def event(moment: datetime, service: str, kind: str, **extra: Any) -> dict[str, Any]:
        return {
            "event_id": uuid7(int(moment.timestamp() * 1000), rng),
            "event_time": stamp(moment),
            "service": service,
            "event_type": kind,
            **extra,
        }

    earlier = DEPLOY_STARTED - timedelta(hours=1, minutes=30)
    return [
        event(earlier, "frontend", "deploy_started", entity_id="v41", message="release v41"),
        event(earlier + timedelta(minutes=1), "frontend", "deploy_completed", entity_id="v41"),
        event(
            DEPLOY_STARTED,
            "frontend",
            "deploy_started",
            entity_id="v42",
            message="release v42",
            properties={"commit": "abc123", "by": "ci"},
        ),
        event(DEPLOY_COMPLETED, "frontend", "deploy_completed", entity_id="v42"),
        event(DEPLOY_STARTED + timedelta(minutes=20), "api", "restart"),
    ]


def write_raw(
    root: Path, topic: str, records: list[dict[str, Any]], *, duplicates: int = 0, seed: int = 3
) -> None:
    """Write records as raw JSONL files, two files per hour; ``duplicates`` records are
    written a second time into another file of their hour."""
    rng = random.Random(seed)
    by_hour: dict[layout.Hour, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        moment = datetime.fromisoformat(record["event_time"].replace("Z", "+00:00"))
        by_hour[layout.Hour.of(moment)].append(record)
    again = set(rng.sample(range(len(records)), duplicates)) if duplicates else set()
    again_ids = {records[i]["event_id"] for i in again}
    for n, (hour, rows) in enumerate(sorted(by_hour.items())):
        half = len(rows) // 2
        parts = [rows[:half], rows[half:] + [r for r in rows[:half] if r["event_id"] in again_ids]]
        for k, part in enumerate(parts):
            if not part:
                continue
            path = layout.raw_file_path(root, topic, hour, f"{n:04d}-{k}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in part))


def populate(root: Path, *, minutes: int = 240, per_minute: int = 12) -> None:
    write_raw(
        root,
        schema.REQUEST_FACTS,
        make_facts(minutes=minutes, per_minute=per_minute),
        duplicates=40,
    )
    write_raw(root, schema.SERVICE_EVENTS, make_events())


def build_warehouse(root: Path) -> None:
    """Roll the raw facts up with the real rollup."""
    from gravix.rollup import run_rollup

    run_rollup(root=root)


# --- DuckDB references -------------------------------------------------------------------------

FACT_COLUMNS = (
    "{'event_id': 'VARCHAR', 'event_time': 'TIMESTAMPTZ', 'service': 'VARCHAR', "
    "'method': 'VARCHAR', 'path_template': 'VARCHAR', 'status_code': 'BIGINT', "
    "'latency_ms': 'DOUBLE', 'user_agent_family': 'VARCHAR'}"
)
EVENT_COLUMNS = (
    "{'event_id': 'VARCHAR', 'event_time': 'TIMESTAMPTZ', 'service': 'VARCHAR', "
    "'event_type': 'VARCHAR', 'entity_id': 'VARCHAR', 'message': 'VARCHAR', 'properties': 'JSON'}"
)


def duck() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def duck_sources(root: Path) -> dict[str, str]:
    """DuckDB table expressions reading the same files the query layer reads."""
    return {
        "request_facts": f"read_json('{layout.raw_glob(root, schema.REQUEST_FACTS)}', "
        f"format='newline_delimited', columns={FACT_COLUMNS}, hive_partitioning=false)",
        "service_events": f"read_json('{layout.raw_glob(root, schema.SERVICE_EVENTS)}', "
        f"format='newline_delimited', columns={EVENT_COLUMNS}, hive_partitioning=false)",
        "request_metrics_minute": "read_parquet('"
        + layout.warehouse_glob(root, schema.REQUEST_METRICS_MINUTE)
        + "', hive_partitioning=true)",
        "service_events_daily": "read_parquet('"
        + layout.warehouse_glob(root, schema.SERVICE_EVENTS_DAILY)
        + "', hive_partitioning=true)",
    }


def deduped_facts(root: Path) -> str:
    """Raw facts de-duplicated by event_id, as the rollup counts them."""
    return f"(SELECT DISTINCT * FROM {duck_sources(root)['request_facts']})"
