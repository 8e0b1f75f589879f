"""One append + rotate + rollup commit, run in-process against a data root, and the
checks that must hold after any crash and a recovery."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relutil import line_problems, uuid7

from gravix import schema
from gravix.storage import durable, layout

TOPIC = "request_facts"


def make_lines(count: int, *, hours_back: tuple[int, ...] = (0, 1), seed: int = 0) -> list[bytes]:
    """Canonical lines of ``count`` facts spread over the given hours before now."""
    validator = schema.Validator(TOPIC)
    now = time.time()
    lines = []
    for i in range(count):
        back = hours_back[i % len(hours_back)]
        base = (int(now // 3600) - back) * 3600
        moment = min(now - 1, base + 60 + (seed * 37 + i * 13) % 3000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{i % 1000:03d}Z"
        fact = {
            "event_id": uuid7(),
            "event_time": stamp,
            "service": f"svc-{i % 2}",
            "method": "GET",
            "path_template": f"/p/{i % 3}",
            "status_code": 200 if i % 5 else 503,
            "latency_ms": 1.0 + (i * 7) % 500,
        }
        lines.append(validator.one(json.dumps(fact).encode()).line + b"\n")
    return lines


def hours_of(lines: list[bytes]) -> frozenset[int]:
    """The event hours (since the epoch) of canonical lines, as the server passes them."""
    hours = set()
    for line in lines:
        moment = datetime.strptime(json.loads(line)["event_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        hours.add(int(moment.replace(tzinfo=UTC).timestamp() // 3600))
    return frozenset(hours)


def run_append_rotate_rollup(
    root: Path, batches: list[list[bytes]], acks: Path, *, rollup: bool = True
) -> None:
    """Append each batch (one group commit each), recording acknowledged event ids in
    ``acks`` as soon as the append returns; then rotate into raw and run a rollup."""
    from gravix.ingest.buffer import TopicBuffer

    async def main() -> None:
        buf = TopicBuffer(root, TOPIC, rotate_seconds=3600, rotate_bytes=1 << 40)
        await buf.start()
        fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for batch in batches:
                await buf.append(b"".join(batch), len(batch), hours_of(batch))
                ids = [json.loads(line)["event_id"] for line in batch]
                os.write(fd, "".join(f"{i}\n" for i in ids).encode())
            await buf.rotate("test")
        finally:
            os.close(fd)
            await buf.close()

    asyncio.run(main())
    if rollup:
        from gravix.rollup import run_rollup

        run_rollup(root=root)


def counting_hook(
    kill_at: int | None, counter: list[int], log: list[str]
) -> Callable[[str, str], None]:
    def hook(op: str, path: str) -> None:
        if counter[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        counter[0] += 1
        log.append(f"{op} {path}")

    return hook


def child_main(root: str, batches: list[list[bytes]], acks: str, kill_at: int | None) -> None:
    """The body of a crash-sweep child process: die at durable operation ``kill_at``. A run
    that is not killed writes its operation count and log beside ``acks``."""
    counter = [0]
    log: list[str] = []
    durable.set_hook(counting_hook(kill_at, counter, log))
    run_append_rotate_rollup(Path(root), batches, Path(acks))
    Path(acks + ".ops").write_text(str(counter[0]))
    Path(acks + ".oplog").write_text("\n".join(log) + "\n")


# --- invariants ------------------------------------------------------------------------------


def read_acks(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line for line in path.read_text().splitlines() if len(line) == 36}


def buffer_files(root: Path) -> list[Path]:
    base = layout.buffer_root(root)
    return sorted(p for p in base.rglob("*.jsonl")) if base.is_dir() else []


def raw_ids(root: Path) -> tuple[Counter[str], list[str]]:
    """Event ids of every raw line, and what is wrong with any line (oracle problems)."""
    ids: Counter[str] = Counter()
    problems: list[str] = []
    for topic in schema.TOPICS:
        for _hour, hour_dir in layout.raw_hours(root, topic).items():
            for path in layout.raw_files(hour_dir):
                data = path.read_bytes()
                if data and not data.endswith(b"\n"):
                    problems.append(f"{path.name}: no final newline")
                for line in data.splitlines():
                    bad = line_problems(topic, line)
                    if bad:
                        problems.append(f"{path.name}: {bad}")
                        continue
                    ids[json.loads(line)["event_id"]] += 1
    return ids, problems


def raw_counts_by_hour(root: Path) -> dict[str, int]:
    """Distinct event ids per hour, computed from raw lines without Gravix code."""
    per_hour: dict[str, set[str]] = {}
    for hour, hour_dir in layout.raw_hours(root, TOPIC).items():
        for path in layout.raw_files(hour_dir):
            for line in path.read_bytes().splitlines():
                per_hour.setdefault(str(hour), set()).add(json.loads(line)["event_id"])
    return {hour: len(ids) for hour, ids in per_hour.items()}


def warehouse_counts_by_hour(root: Path) -> dict[str, int]:
    """request_count per hour as DuckDB reads the warehouse (every file must be readable)."""
    import duckdb

    base = layout.warehouse_table_dir(root, schema.REQUEST_METRICS_MINUTE)
    files = sorted(base.rglob("*.parquet")) if base.is_dir() else []
    out: dict[str, int] = {}
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for path in files:
            rows = con.execute(
                "SELECT strftime(bucket_start::TIMESTAMP, '%Y-%m-%dT%H'), sum(request_count) "
                "FROM read_parquet(?) GROUP BY 1",
                [str(path)],
            ).fetchall()
            for hour, count in rows:
                out[hour] = out.get(hour, 0) + int(count)
    finally:
        con.close()
    return out


def check_after_recovery(root: Path, acked: set[str]) -> dict[str, Any]:
    """Every invariant of a recovered root; returns the figures, raises AssertionError."""
    ids, problems = raw_ids(root)
    assert problems == [], problems[:5]
    missing = acked - set(ids)
    assert not missing, f"{len(missing)} acknowledged events missing, e.g. {sorted(missing)[:3]}"
    dupes = {i: n for i, n in ids.items() if n > 1}
    assert not dupes, f"{len(dupes)} events stored twice, e.g. {list(dupes.items())[:3]}"
    leftovers = [p.name for p in buffer_files(root) if p.stat().st_size > 0]
    assert leftovers == [], leftovers
    return {"raw_events": sum(ids.values()), "acked": len(acked)}
