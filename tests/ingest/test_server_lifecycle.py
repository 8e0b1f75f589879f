"""Start-up, graceful stop, worker processes, group commit and logs of a real server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from gravix.storage import durable
from serverutil import (
    fact,
    free_port,
    hammer,
    ndjson,
    raw_lines,
    running_server,
    server_env,
    start_server,
)

FACTS = "request_facts"


def buffer_names(root: Path, topic: str = FACTS) -> list[str]:
    folder = root / "buffer" / topic
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gravix", "ingest-server", "--data-dir", str(tmp_path / "d"),
         "--port", str(free_port())],
        capture_output=True, text=True, env=server_env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no API key configured" in result.stderr
    assert "--insecure-no-auth" in result.stderr


def test_insecure_no_auth_accepts_writes_without_a_key(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--insecure-no-auth", api_key=None) as srv:
        response = httpx.post(f"{srv.url}/api/v1/facts", json=fact())
        assert response.status_code == 201
        assert "insecure-no-auth" in srv.log_text()


def test_key_from_environment_is_used_and_never_logged(tmp_path: Path) -> None:
    key = "env-secret-key-987"
    env = {"API_KEY": key}
    with running_server(tmp_path / "data", api_key=None, env=env) as srv:
        assert httpx.post(f"{srv.url}/api/v1/facts", json=fact()).status_code == 401
        ok = httpx.post(f"{srv.url}/api/v1/facts", json=fact(), headers={"X-API-Key": key})
        assert ok.status_code == 201
        assert key not in httpx.get(f"{srv.url}/metrics").text
        assert srv.stop() == 0
        assert key not in srv.log_text()


def test_sigterm_drains_in_flight_requests_seals_and_exits_0(tmp_path: Path) -> None:
    root = tmp_path / "data"
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    srv = start_server(root)

    def client() -> None:
        with srv.client() as c:
            while not stop.is_set():
                docs = [fact() for _ in range(20)]
                try:
                    r = c.post(
                        "/api/v1/facts/batch",
                        content=ndjson(docs),
                        headers={"Content-Type": "application/x-ndjson"},
                    )
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    with lock:
                        acked.extend(str(d["event_id"]) for d in docs)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(60)
    stop.set()
    for t in threads:
        t.join(30)
    assert code == 0, srv.log_text()
    assert len(acked) > 0
    stored = [str(d["event_id"]) for d in raw_lines(root, FACTS)]
    assert len(stored) == len(set(stored))
    assert set(acked) <= set(stored)
    assert buffer_names(root) == []  # sealed and moved into raw; nothing left behind
    assert "Application shutdown complete" in srv.log_text()


def test_group_commit_at_32_clients_needs_at_most_0_2_fsyncs_per_event(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        bodies = [[json.dumps(fact()).encode() for _ in range(40)] for _ in range(32)]
        statuses = hammer(srv.port, "/api/v1/facts", bodies)
        assert statuses == [201] * 32 * 40
        text = httpx.get(f"{srv.url}/metrics").text
    accepted = metric(text, "gravix_events_accepted_total")
    fsyncs = metric(text, "gravix_fsyncs_total")
    assert accepted == 32 * 40
    assert fsyncs / accepted <= 0.2, (fsyncs, accepted)


def test_rotation_flag_moves_lines_into_raw_while_running(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with running_server(root, "--rotate-seconds", "0.3") as srv, srv.client() as c:
        docs = [fact() for _ in range(5)]
        r = c.post(
            "/api/v1/facts/batch",
            content=ndjson(docs),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert r.status_code == 200
        deadline = time.monotonic() + 15
        while len(raw_lines(root, FACTS)) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(d["event_id"] for d in raw_lines(root, FACTS)) == sorted(
            d["event_id"] for d in docs
        )
        assert 'gravix_rotations_total{reason="age"' in httpx.get(f"{srv.url}/metrics").text


def test_rotation_at_size_limit(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with running_server(root, "--rotate-bytes", "2KiB") as srv, srv.client() as c:
        for _ in range(6):
            r = c.post(
                "/api/v1/facts/batch",
                content=ndjson([fact() for _ in range(5)]),
                headers={"Content-Type": "application/x-ndjson"},
            )
            assert r.status_code == 200
        deadline = time.monotonic() + 15
        text = ""
        while time.monotonic() < deadline:
            text = httpx.get(f"{srv.url}/metrics").text
            if metric(text, "gravix_rotations_total") >= 2:
                break
            time.sleep(0.1)
        assert 'gravix_rotations_total{reason="size"' in text
    assert len(raw_lines(root, FACTS)) == 30


def test_two_workers_each_own_an_active_file_and_a_killed_one_is_recovered(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    srv = start_server(root, "--workers", "2")
    try:
        workers = psutil.Process(srv.proc.pid).children()
        assert len(workers) == 2
        deadline = time.monotonic() + 30  # /ready answered by one; the other may be starting
        actives: list[str] = []
        while len(actives) < 2 and time.monotonic() < deadline:
            actives = [n for n in buffer_names(root) if n.startswith("active-")]
            time.sleep(0.05)
        assert len(actives) == 2
        owners = {n.split("-")[2] for n in actives}  # <time>-<pid>-<random>
        assert owners == {str(w.pid) for w in workers}
        for name in actives:
            assert durable.is_locked(root / "buffer" / FACTS / name)
        docs = [fact() for _ in range(40)]
        acked = [str(d["event_id"]) for d in docs]
        # one connection each, so both listeners get some
        statuses = hammer(srv.port, "/api/v1/facts", [[json.dumps(d).encode()] for d in docs])
        assert statuses == [201] * 40
        sizes = [(root / "buffer" / FACTS / n).stat().st_size for n in actives]
        assert all(size > 0 for size in sizes), sizes  # both processes served requests
        victim = workers[0]
        victim.kill()
        code = srv.proc.wait(60)
        assert code != 0  # the supervisor reports the lost worker
        assert "ended with status" in srv.log_text()
        orphan = next(n for n in actives if n.split("-")[2] == str(victim.pid))
        assert (root / "buffer" / FACTS / orphan).exists()
        assert not durable.is_locked(root / "buffer" / FACTS / orphan)
    finally:
        srv.kill()
    with running_server(root) as again:
        assert not (root / "buffer" / FACTS / orphan).exists()
        assert again.stop() == 0
    stored = [str(d["event_id"]) for d in raw_lines(root, FACTS)]
    assert sorted(stored) == sorted(acked)


def test_json_log_format_writes_one_object_per_line(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--log-format", "json") as srv:
        httpx.post(f"{srv.url}/api/v1/facts", json=fact(), headers=srv.headers)
        assert srv.stop() == 0
        records = [json.loads(line) for line in srv.log_text().splitlines() if line.strip()]
    access = [r for r in records if r["logger"] == "gravix.access"]
    assert any(r["path"] == "/api/v1/facts" and r["status"] == 201 for r in access)
    assert all(re.match(r"\d{4}-\d\d-\d\dT", r["time"]) for r in records)


def test_sigint_stops_two_workers_cleanly_and_leaves_no_buffer_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    srv = start_server(root, "--workers", "2")
    try:
        docs = [fact() for _ in range(20)]
        statuses = hammer(srv.port, "/api/v1/facts", [[json.dumps(d).encode()] for d in docs])
        assert statuses == [201] * 20
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(60) == 0, srv.log_text()
    finally:
        srv.kill()
    assert buffer_names(root) == []
    assert sorted(str(d["event_id"]) for d in raw_lines(root, FACTS)) == sorted(
        str(d["event_id"]) for d in docs
    )


def test_access_log_lines_name_client_request_status_and_never_a_key(tmp_path: Path) -> None:
    key = "k-" + "s3cret" * 4
    with running_server(tmp_path / "data", api_key=key) as srv:
        with httpx.Client(base_url=srv.url) as client:
            assert client.post("/api/v1/facts", json=fact(), headers=srv.headers).status_code == 201
            assert client.get("/no/such%01route").status_code == 404
            assert client.post("/api/v1/facts", json=fact(), headers={}).status_code == 401
        assert srv.stop() == 0
        text = srv.log_text()
    access = [line for line in text.splitlines() if " gravix.access: " in line]
    pattern = (
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO \[\d+\] gravix\.access: 127\.0\.0\.1:\d+ "
    )
    assert any(re.match(pattern + r'"POST /api/v1/facts" 201 \d+\.\dms$', a) for a in access)
    assert any(re.match(pattern + r'"GET /no/such\\x01route" 404 ', a) for a in access)
    assert any(re.match(pattern + r'"POST /api/v1/facts" 401 ', a) for a in access)
    assert key not in text


def test_concurrent_single_events_each_get_their_own_answer(tmp_path: Path) -> None:
    # Single-event requests that arrive together are validated and committed together;
    # each must still be answered for itself: with its own id, or with its own error.
    import asyncio

    bad: dict[int, bytes] = {
        3: json.dumps(fact(service="bad service")).encode(),
        7: json.dumps(fact(event_id="not-a-uuid")).encode(),
        11: b'{"event_id": ',
        15: json.dumps(fact(path_template="/orders/12345")).encode(),
        19: json.dumps({**fact(), "extra": 1}).encode(),
    }
    acked: list[str] = []
    with running_server(tmp_path / "data") as srv:
        headers = {**srv.headers, "Content-Type": "application/json"}

        async def send_all(bodies: list[bytes]) -> list[httpx.Response]:
            async with httpx.AsyncClient(
                base_url=srv.url, limits=httpx.Limits(max_connections=len(bodies))
            ) as client:
                return await asyncio.gather(
                    *(client.post("/api/v1/facts", content=b, headers=headers) for b in bodies)
                )

        for _ in range(3):
            good = [fact() for _ in range(24)]
            bodies = [bad.get(i, json.dumps(good[i]).encode()) for i in range(24)]
            for i, response in enumerate(asyncio.run(send_all(bodies))):
                if i in bad:
                    assert response.status_code == 400, (i, response.text)
                    assert response.json()["code"] == 400
                else:
                    assert response.status_code == 201, (i, response.text)
                    assert response.json()["event_id"] == good[i]["event_id"]
                    acked.append(str(good[i]["event_id"]))
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert srv.stop() == 0
    stored = [str(d["event_id"]) for d in raw_lines(tmp_path / "data", FACTS)]
    assert sorted(stored) == sorted(acked) and len(acked) == 3 * 19
    # Commit statistics count requests, not groups: each acknowledged request once.
    assert metric(metrics, "gravix_group_commit_requests_sum") == len(acked)
    assert metric(metrics, "gravix_events_rejected_total") == 3 * 5
