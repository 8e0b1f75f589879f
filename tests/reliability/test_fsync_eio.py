"""An fsync that fails with EIO: no 2xx for the failing batch, no second fsync, the
process exits non-zero, and nothing acknowledged is lost after a restart."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from relutil import valid_fact
from scenario import check_after_recovery

from serverutil import free_port, server_env, start_server

KEY = "test-key"
GOOD_COMMITS = 3


def _post_until_failure(url: str) -> tuple[set[str], list[int]]:
    """Send single facts one after another; return acknowledged ids and every status."""
    acked: set[str] = set()
    statuses: list[int] = []
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=10) as client:
        for n in range(GOOD_COMMITS + 5):
            fact = valid_fact(n)
            try:
                response = client.post("/api/v1/facts", json=fact)
            except httpx.TransportError:
                break  # the process is gone
            statuses.append(response.status_code)
            if 200 <= response.status_code < 300:
                acked.add(fact["event_id"])
            else:
                assert response.status_code == 503, response.text
                assert "retry-after" in response.headers
    return acked, statuses


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the server kept running after an fsync failure") from None


def _check_restart(data_root: Path, acked: set[str]) -> None:
    """A plain restart (which recovers the buffer at start) and a clean stop lose nothing."""
    server = start_server(data_root, api_key=KEY)
    try:
        assert server.stop() == 0
    finally:
        server.kill()
    check_after_recovery(data_root, acked)


def test_fsync_eio_from_the_hook_fails_the_batch_and_stops_the_process(data_root: Path) -> None:
    plan = json.dumps(
        [{"op": "fsync", "path": "active-", "action": "eio", "skip": GOOD_COMMITS, "times": -1}]
    )
    server = start_server(data_root, api_key=KEY, env={"GRAVIX_FAULT_PLAN": plan})
    try:
        acked, statuses = _post_until_failure(server.url)
        code = _wait_exit(server.proc)
    finally:
        server.kill()
    assert statuses[:GOOD_COMMITS] == [201] * GOOD_COMMITS
    assert len(statuses) > GOOD_COMMITS and statuses[GOOD_COMMITS] == 503
    assert all(s == 503 for s in statuses[GOOD_COMMITS:])  # nothing after it is acknowledged
    assert code != 0
    assert len(acked) == GOOD_COMMITS
    assert "fsync" in server.log_text()
    _check_restart(data_root, acked)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_fsync_eio_injected_by_strace_is_never_retried(data_root: Path) -> None:
    port = free_port()
    trace = data_root.parent / "strace.log"
    # Commits are the only fdatasync calls of a fresh data root (directories use fsync).
    args = [
        "strace",
        "-f",
        "-qq",
        "-o",
        str(trace),
        "-e",
        "trace=fdatasync",
        "-e",
        f"inject=fdatasync:error=EIO:when={GOOD_COMMITS + 1}",
        sys.executable,
        "-m",
        "gravix",
        "ingest-server",
        "--data-dir",
        str(data_root),
        "--port",
        str(port),
        "--api-key",
        KEY,
    ]
    log = (data_root.parent / "server.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=log, env=server_env())
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (data_root.parent / "server.log").read_text()
            time.sleep(0.1)
        acked, statuses = _post_until_failure(url)
        code = _wait_exit(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    calls = [line for line in trace.read_text().splitlines() if "fdatasync(" in line]
    failed = [i for i, line in enumerate(calls) if "EIO" in line]
    assert len(failed) == 1, calls
    fd = re.search(r"fdatasync\((\d+)\)", calls[failed[0]]).group(1)  # type: ignore[union-attr]
    later_same_fd = [line for line in calls[failed[0] + 1 :] if f"fdatasync({fd})" in line]
    assert later_same_fd == [], "the failed fsync was retried"
    assert statuses[:GOOD_COMMITS] == [201] * GOOD_COMMITS
    assert statuses[GOOD_COMMITS] == 503
    assert code != 0
    _check_restart(data_root, acked)
