"""Moving buffer files into raw, and deleting old partitions.

``publish_sealed`` (what every rotation and ``gravix recover`` does to one buffer file) is
measured against two references doing the same job on the same file in the same run: a
durable copy of the file into one raw file (the I/O floor: no parsing, no split) and a
plain ``json.loads`` per line with the same split by hour. ``run_cleanup`` is measured
against ``shutil.rmtree`` of an identical tree. Each measurement runs in a fresh process
so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SERVICES = ("frontend", "checkout", "catalog", "payments")
PATHS = ("/", "/api/items", "/api/items/{id}", "/api/cart", "/api/checkout")


def _uuid7(ms: int, rng: random.Random) -> str:
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64
    value |= 0b10 << 62 | rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _buffer_bytes(size: int) -> bytes:
    """Canonical lines of about ``size`` bytes, event times spread over two hours."""
    import msgspec

    from gravix.schema import RequestFact, format_time

    rng = random.Random(3)
    encode = msgspec.json.Encoder().encode
    start = datetime(2026, 2, 16, 9, 40, tzinfo=UTC)
    lines: list[bytes] = []
    total = 0
    i = 0
    while total < size:
        moment = start + timedelta(milliseconds=i * 7 % 7_200_000)
        line = encode(
            RequestFact(
                event_id=_uuid7(int(moment.timestamp() * 1000), rng),
                event_time=format_time(moment),
                service=SERVICES[i % 4],
                method="GET",
                path_template=PATHS[i % 5],
                status_code=200 if i % 50 else 500,
                latency_ms=round(rng.lognormvariate(3.0, 0.8), 3),
                user_agent_family="Chrome",
            )
        )
        lines.append(line + b"\n")
        total += len(line) + 1
        i += 1
    return b"".join(lines)


def _child(kind: str, root: str, source: str) -> None:
    """One measurement in this (fresh) process; prints seconds and peak RSS as JSON."""
    import resource

    from gravix import schema
    from gravix.ops import recovery, retention
    from gravix.storage import durable, layout

    base = Path(root)
    started = time.perf_counter()
    if kind == "publish":
        recovery.publish_sealed(base, schema.REQUEST_FACTS, Path(source))
    elif kind == "copy":
        data = Path(source).read_bytes()
        hour = layout.Hour(datetime(2026, 2, 16).date(), 9)
        durable.atomic_write(layout.raw_file_path(base, schema.REQUEST_FACTS, hour, "copy"), data)
        durable.unlink(Path(source))
    elif kind == "json":
        from gravix.schema import parse_time

        by_hour: dict[int, list[bytes]] = {}
        for line in Path(source).read_bytes().splitlines(keepends=True):
            seconds, _ = parse_time(json.loads(line)["event_time"])
            by_hour.setdefault(int(seconds // 3600), []).append(line)
        for index, lines in by_hour.items():
            moment = datetime.fromtimestamp(index * 3600, UTC)
            target = layout.raw_file_path(base, schema.REQUEST_FACTS, layout.Hour.of(moment), "j")
            durable.atomic_write(target, b"".join(lines))
        durable.unlink(Path(source))
    elif kind == "cleanup":
        retention.run_cleanup(
            root=base, days=1, warehouse_days=1, today=datetime(2026, 3, 1).date()
        )
    elif kind == "rmtree":
        shutil.rmtree(base / "raw")
    seconds = time.perf_counter() - started
    # ru_maxrss survives exec and so would count the parent's memory; VmHWM does not
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss}))


def _measure(kind: str, root: Path, source: Path | None = None) -> dict[str, float]:
    code = "import sys; from bench.bench_recovery import _child; _child(*sys.argv[1:])"
    out = subprocess.run(
        [sys.executable, "-c", code, kind, str(root), str(source or "")],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _partition_tree(root: Path, days: int, files_per_hour: int) -> int:
    count = 0
    for d in range(days):
        day = datetime(2026, 1, 1) + timedelta(days=d)
        for hour in range(24):
            directory = (
                root / "raw" / "request_facts" / f"event_day={day.date()}" / f"hour={hour:02d}"
            )
            directory.mkdir(parents=True)
            for f in range(files_per_hour):
                (directory / f"{f:05d}.jsonl").write_bytes(b"x" * 200)
                count += 1
    return count


def run(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    size = (8 if quick else 64) * 1024 * 1024
    data = _buffer_bytes(size)
    mb = len(data) / 1e6
    with tempfile.TemporaryDirectory(prefix="gravix-bench-recovery-") as tmp:
        timings: dict[str, dict[str, float]] = {}
        for kind in ("publish", "copy", "json"):
            root = Path(tmp) / kind
            sealed = root / "buffer" / "request_facts" / "sealed-bench.jsonl"
            sealed.parent.mkdir(parents=True)
            sealed.write_bytes(data)
            timings[kind] = _measure(kind, root, sealed)
            shutil.rmtree(root)
        publish = timings["publish"]
        for ref, label in (("copy", "durable copy"), ("json", "json.loads split")):
            rows.append(
                {
                    "name": f"publish_sealed {mb:.0f} MB vs {label}",
                    "value": round(mb / publish["seconds"], 1),
                    "unit": "MB/s",
                    "reference": round(mb / timings[ref]["seconds"], 1),
                    "ratio": round(timings[ref]["seconds"] / publish["seconds"], 3),
                    "peak_rss_mb": round(publish["rss_mb"], 1),
                }
            )
        # the copy is the floor, for scale; the json.loads split does the same job
        rows[-1].update(target="≥ 1× json.loads split", ok=rows[-1]["ratio"] >= 1.0)
        rows[-2].update(target="(I/O floor, for scale)")

        days, per_hour = (3, 10) if quick else (10, 30)
        cleanup_root, rmtree_root = Path(tmp) / "cleanup", Path(tmp) / "rmtree"
        files = _partition_tree(cleanup_root, days, per_hour)
        _partition_tree(rmtree_root, days, per_hour)
        cleanup = _measure("cleanup", cleanup_root)
        rmtree = _measure("rmtree", rmtree_root)
        rows.append(
            {
                "name": f"cleanup {files:,} files vs shutil.rmtree",
                "value": round(files / cleanup["seconds"]),
                "unit": "files/s",
                "reference": round(files / rmtree["seconds"]),
                "ratio": round(rmtree["seconds"] / cleanup["seconds"], 3),
                "target": "≥ 0.3× rmtree",
                "ok": rmtree["seconds"] / cleanup["seconds"] >= 0.3,
                "peak_rss_mb": round(cleanup["rss_mb"], 1),
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
