"""Storage faults injected into a real server through GRAVIX_FAULT_PLAN (durable's hook)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx

from serverutil import fact, ndjson, raw_lines, running_server, start_server

FACTS = "request_facts"


def post_batch(client: httpx.Client, docs: list[dict[str, object]]) -> httpx.Response:
    return client.post(
        "/api/v1/facts/batch",
        content=ndjson(docs),
        headers={"Content-Type": "application/x-ndjson"},
    )


def test_disk_full_answers_503_not_ready_and_accepts_again_when_space_returns(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    full = tmp_path / "disk-full"
    plan = [{"op": "write", "path": "active-", "action": "enospc", "times": -1,
             "while_exists": str(full)}]  # fmt: skip
    acked: list[str] = []
    with running_server(root, env={"GRAVIX_FAULT_PLAN": json.dumps(plan)}) as srv:
        with srv.client() as c:
            docs = [fact() for _ in range(5)]
            assert post_batch(c, docs).status_code == 200
            acked += [str(d["event_id"]) for d in docs]
            full.touch()
            # A single event first: its group's own write meets the full disk.
            single = c.post("/api/v1/facts", json=fact())
            assert single.status_code == 503
            assert int(single.headers["retry-after"]) >= 1
            refused = post_batch(c, [fact() for _ in range(5)])
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["code"] == 503
            ready = httpx.get(f"{srv.url}/ready")
            assert ready.status_code == 503
            assert "not writable" in ready.json()["error"]
            # nothing half-written: every byte in the buffer is a complete line
            for path in (root / "buffer" / FACTS).glob("active-*.jsonl"):
                data = path.read_bytes()
                assert data.endswith(b"\n")
                assert all(json.loads(line) for line in data.splitlines())
            full.unlink()
            deadline = time.monotonic() + 15
            while httpx.get(f"{srv.url}/ready").status_code != 200:
                assert time.monotonic() < deadline, "never ready again"
                time.sleep(0.2)
            docs = [fact() for _ in range(5)]
            assert post_batch(c, docs).status_code == 200
            acked += [str(d["event_id"]) for d in docs]
        assert srv.stop() == 0
    assert sorted(str(d["event_id"]) for d in raw_lines(root, FACTS)) == sorted(acked)


def test_fsync_failure_acknowledges_nothing_of_the_batch_and_exits_non_zero(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    plan = [{"op": "fsync", "path": "active-", "skip": 20, "action": "eio"}]
    srv = start_server(root, env={"GRAVIX_FAULT_PLAN": json.dumps(plan)})
    acked: list[str] = []
    refused: list[str] = []
    answers: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def client(single: bool) -> None:
        with srv.client() as c:
            while srv.proc.poll() is None:
                docs = [fact() for _ in range(1 if single else 3)]
                try:
                    if single:
                        response = c.post("/api/v1/facts", json=docs[0])
                    else:
                        response = post_batch(c, docs)
                except httpx.TransportError:
                    return
                ids = [str(d["event_id"]) for d in docs]
                ok = response.status_code == (201 if single else 200)
                with lock:
                    (acked if ok else refused).extend(ids)
                    if not ok:
                        answers.append((response.status_code, "retry-after" in response.headers))

    # Half the clients send batches, half single events: both commit paths meet the EIO.
    threads = [threading.Thread(target=client, args=(i % 2 == 1,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        code = srv.proc.wait(120)
    finally:
        for t in threads:
            t.join(60)
    assert code != 0
    assert "fsync" in srv.log_text() and "CRITICAL" in srv.log_text()
    assert len(acked) >= 8  # the 20 fsyncs before the failing one did acknowledge
    assert refused  # the failed batch (and anything after it) got no 2xx
    assert not set(acked) & set(refused)
    assert set(answers) == {(503, True)}
    # Recovery at the next start keeps everything that was acknowledged.
    with running_server(root) as again:
        assert again.stop() == 0
    stored = [str(d["event_id"]) for d in raw_lines(root, FACTS)]
    assert len(stored) == len(set(stored))
    assert set(acked) <= set(stored)
