"""Durability under crash: clients keep sending while the server is SIGKILLed again and again
(at random moments, and inside rotation and publishing through fault-plan kills); at the end
every acknowledged event is in raw exactly once."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from serverutil import RunningServer, fact, free_port, ndjson, raw_lines, start_server

FACTS = "request_facts"

# Kills that land inside a rotation or a publish (fault-plan "kill" = SIGKILL of itself).
ROTATION_KILLS = [
    {"op": "replace", "path": "sealed-"},  # renaming active → sealed
    {"op": "fsync_dir", "path": "buffer"},  # after the rename, before it is durable
    {"op": "replace", "path": "/raw/"},  # between raw files of one publish
    {"op": "unlink", "path": "sealed-"},  # raw complete, sealed file not yet removed
    {"op": "fsync", "path": "/raw/"},  # a raw temporary written, not yet renamed
]


class Clients:
    def __init__(self, port: int, count: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.acked: list[str] = []
        self.singles = 0  # acknowledged single-event requests
        self.sent = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        # Half the clients send batches, half single events: the two commit paths.
        self.threads = [
            threading.Thread(target=self.run, args=(i % 2 == 1,), daemon=True) for i in range(count)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def run(self, single: bool) -> None:
        headers = {"X-API-Key": "test-key"}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=10)
        while not self.stop.is_set():
            docs = [fact() for _ in range(1 if single else random.randint(1, 8))]
            try:
                if single:
                    response = client.post("/api/v1/facts", json=docs[0])
                else:
                    response = client.post(
                        "/api/v1/facts/batch",
                        content=ndjson(docs),
                        headers={"Content-Type": "application/x-ndjson"},
                    )
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if response.status_code == (201 if single else 200):
                assert response.json()["accepted"] == len(docs)
                with self.lock:
                    self.acked.extend(str(d["event_id"]) for d in docs)
                    self.singles += single
        client.close()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _start(root: Path, port: int, plan: list[dict[str, object]] | None) -> RunningServer:
    env = {"GRAVIX_FAULT_PLAN": json.dumps(plan)} if plan else None
    srv = start_server(root, "--rotate-seconds", "0.25", port=port, env=env, wait=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and srv.proc.poll() is None:
        try:
            if httpx.get(f"{srv.url}/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return srv


def crash_loop(root: Path, kills: int, seed: int) -> tuple[int, int, int]:
    """Returns (acknowledged events, acknowledged single-event requests, kills inside a
    rotation or publish)."""
    rng = random.Random(seed)
    port = free_port()
    clients = Clients(port, 8)
    clients.start()
    during_rotation = 0
    try:
        for round_no in range(kills):
            plan = None
            if round_no % 2 == 1:  # every other kill lands inside a rotation or publish
                rule = dict(ROTATION_KILLS[(round_no // 2) % len(ROTATION_KILLS)])
                rule.update(action="kill", skip=rng.randint(0, 3), times=1)
                plan = [rule]
            srv = _start(root, port, plan)
            if plan:
                try:
                    srv.proc.wait(rng.uniform(2.0, 4.0))
                    during_rotation += 1
                except Exception:
                    pass  # the rule did not fire in time; a plain SIGKILL then
            else:
                time.sleep(rng.uniform(0.2, 1.2))
            srv.kill()
        assert during_rotation >= 2, "no kill landed inside a rotation"
        # A last, clean run: start-up recovery, then a graceful stop seals the rest.
        final = _start(root, port, None)
        time.sleep(0.5)
    finally:
        clients.finish()
    assert final.stop() == 0, final.log_text()
    stored = Counter(str(d["event_id"]) for d in raw_lines(root, FACTS))
    acked = clients.acked
    assert len(acked) > 50 and clients.singles > 50
    missing = [e for e in acked if stored[e] == 0]
    doubled = [e for e, n in stored.items() if n > 1]
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert not doubled, f"{len(doubled)} events stored twice"
    assert not list((root / "buffer" / FACTS).glob("*.jsonl"))
    return len(acked), clients.singles, during_rotation


def test_acked_events_survive_repeated_kills_including_during_rotation(tmp_path: Path) -> None:
    crash_loop(tmp_path / "data", kills=10, seed=7)


@pytest.mark.slow
def test_acked_events_survive_many_kills(tmp_path: Path) -> None:
    crash_loop(tmp_path / "data", kills=40, seed=11)
