"""Canonical request-fact lines and buffer/raw file helpers for publish and recovery tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gravix.schema import Validator

BASE = datetime(2026, 2, 16, 9, 58, tzinfo=UTC)


def uuid7(n: int) -> str:
    raw = bytearray(uuid.UUID(int=(n * 0x9E3779B97F4A7C15) % (1 << 128)).bytes)
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def fact_lines(count: int, *, start: datetime = BASE, step_s: float = 37.0) -> list[bytes]:
    """Canonical request-fact lines (with newline), event times ``step_s`` apart."""
    out = []
    for i in range(count):
        moment = start + timedelta(seconds=i * step_s)
        body = (
            f'{{"event_id":"{uuid7(i + 1)}","event_time":"{moment.isoformat()}",'
            f'"service":"frontend","method":"get","path_template":"/checkout",'
            f'"status_code":{200 + (i % 4) * 100},"latency_ms":{5 + i % 97:.1f}}}'
        ).encode()
        validator = Validator("request_facts", clock=lambda m=moment: m.timestamp())
        out.append(validator.one(body).line + b"\n")
    return out


def hour_key(line: bytes) -> str:
    """The partition a line belongs in, read independently of the code under test."""
    text = line.decode()
    stamp = text.split('"event_time":"', 1)[1][:13]
    return f"event_day={stamp[:10]}/hour={stamp[11:13]}"


def raw_content(root: Path, topic: str = "request_facts") -> dict[str, list[bytes]]:
    """Every raw file (relative name) and its lines."""
    base = root / "raw" / topic
    out: dict[str, list[bytes]] = {}
    if base.exists():
        for path in sorted(base.rglob("*.jsonl")):
            out[str(path.relative_to(base))] = path.read_bytes().splitlines(keepends=True)
    return out


def write_buffer(root: Path, name: str, data: bytes, topic: str = "request_facts") -> Path:
    directory = root / "buffer" / topic
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path
