"""Crash loop: four client processes send batches while the server is SIGKILLed at random
moments (some during rotation) and restarted; then rotate, recover and roll up. Nothing
acknowledged is missing, the warehouse holds every event once, and every restart comes
up by itself."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scenario import raw_counts_by_hour, raw_ids, read_acks, warehouse_counts_by_hour

from gravix.rollup import run_rollup
from gravix.storage import layout
from gravix.storage.orphans import recover_buffers
from serverutil import free_port, server_env, start_server

SCALE = float(os.environ.get("GRAVIX_RELIABILITY_SCALE", "1"))
KEY = "test-key"
CLIENT = Path(__file__).parent / "loadclient.py"


def _crash_loop(
    tmp_path: Path, *, kills: int, batch_size: int, min_acked: int, max_seconds: float
) -> dict[str, object]:
    root = tmp_path / "data"
    root.mkdir()
    port = free_port()
    rng = random.Random(int(os.environ.get("GRAVIX_CRASH_SEED", "8")))
    args = ("--rotate-seconds", "0.5")
    server = start_server(root, *args, api_key=KEY, port=port)
    stop = tmp_path / "stop"
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                str(CLIENT),
                server.url,
                KEY,
                str(tmp_path / f"acks-{i}"),
                str(stop),
                str(batch_size),
                *(["late"] if i == 0 else []),
            ],
            env=server_env(),
        )
        for i in range(4)
    ]
    figures: dict[str, object] = {"kills": 0, "kills_with_sealed_files": 0, "restarts": 0}
    started = time.monotonic()
    try:
        while figures["kills"] < kills or (  # type: ignore[operator]
            sum(len(read_acks(tmp_path / f"acks-{i}")) for i in range(4)) < min_acked
            and time.monotonic() - started < max_seconds
        ):
            time.sleep(rng.uniform(0.2, 1.5))
            server.kill()
            figures["kills"] += 1  # type: ignore[operator]
            sealed = list(layout.buffer_root(root).rglob("sealed-*.jsonl"))
            if sealed:
                figures["kills_with_sealed_files"] += 1  # type: ignore[operator]
            # Any restart that does not come up by itself fails here: no hand is allowed.
            server = start_server(root, *args, api_key=KEY, port=port)
            figures["restarts"] += 1  # type: ignore[operator]
    finally:
        stop.touch()
        for client in clients:
            client.wait(60)
        if server.proc.poll() is None:
            assert server.stop() == 0
    assert all(client.returncode == 0 for client in clients)
    acked: set[str] = set()
    for i in range(4):
        acked |= read_acks(tmp_path / f"acks-{i}")
    recover_buffers(root)
    run_rollup(root=root)
    ids, problems = raw_ids(root)
    assert problems == []
    missing = acked - set(ids)
    assert not missing, f"{len(missing)} acknowledged events missing"
    warehouse = warehouse_counts_by_hour(root)
    assert warehouse == raw_counts_by_hour(root)  # each event counted once
    assert sum(warehouse.values()) == len(ids)
    figures.update(
        acked=len(acked),
        raw_lines=sum(ids.values()),
        raw_duplicates=sum(n - 1 for n in ids.values()),
        warehouse_events=sum(warehouse.values()),
        seconds=round(time.monotonic() - started, 1),
        clients=[json.loads(Path(f"{tmp_path}/acks-{i}.stats").read_text()) for i in range(4)],
    )
    assert len(acked) >= min_acked
    return figures


def test_acknowledged_events_survive_repeated_sigkills_during_load(tmp_path: Path) -> None:
    figures = _crash_loop(tmp_path, kills=6, batch_size=50, min_acked=2_000, max_seconds=60)
    print(f"crash loop: {figures}")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fifty_sigkills_and_a_hundred_thousand_acknowledged_events(tmp_path: Path) -> None:
    figures = _crash_loop(
        tmp_path,
        kills=int(50 * SCALE),
        batch_size=200,
        min_acked=int(100_000 * SCALE),
        max_seconds=1800,
    )
    print(f"crash loop (long): {figures}")
    assert figures["kills"] >= 50 * SCALE
