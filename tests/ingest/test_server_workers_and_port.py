"""What a server with several workers or an unusual port promises: the per-key rate limit
holds for the server whatever the worker count (issue 16, item 8); `--port 0` logs the port
it really listens on, and a port in use fails before anything is created or "listening" is
logged (item 18)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serverutil import fact, hammer, running_server, server_env


@pytest.mark.parametrize("workers", [1, 2])
def test_the_rate_limit_is_per_key_for_the_server_whatever_the_worker_count(
    tmp_path: Path, workers: int
) -> None:
    with running_server(tmp_path / "data", "--rate-limit", "5", "--workers", str(workers)) as srv:
        time.sleep(0.5)  # every worker listening
        bodies = [[json.dumps(fact()).encode()] for _ in range(60)]
        statuses = hammer(srv.port, "/api/v1/facts", bodies)
    accepted = statuses.count(201)
    print(f"--rate-limit 5, {workers} worker(s), 60 concurrent requests: {accepted} accepted")
    assert statuses.count(429) + accepted == 60
    # burst 10, plus at most a token or two refilled while the 60 requests arrive
    assert 9 <= accepted <= 12


def _gravix(*args: str) -> list[str]:
    return [sys.executable, "-m", "gravix", "ingest-server", "--api-key", "test-key", *args]


def test_port_0_logs_the_port_it_really_listens_on(tmp_path: Path) -> None:
    root = tmp_path / "data"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _gravix("--data-dir", str(root), "--host", "127.0.0.1", "--port", "0"),
            stdout=out, stderr=out, env=server_env(), start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        match = None
        while match is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read_text())
        assert match is not None, log.read_text()
        port = int(match.group(1))
        assert port != 0
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/live").status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_fails_before_creating_anything_or_logging_listening(
    tmp_path: Path, workers: str
) -> None:
    root = tmp_path / "new" / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            _gravix("--data-dir", str(root), "--host", "127.0.0.1", "--port", str(port),
                    "--workers", workers),
            capture_output=True, text=True, env=server_env(), timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "listening" not in proc.stderr
    assert not (tmp_path / "new").exists(), "the data root was prepared before the bind"


def test_a_port_held_by_another_multi_worker_server_is_in_use_too(tmp_path: Path) -> None:
    # SO_REUSEPORT lets sockets of one user share a port: without a check, a second server
    # with --workers 2 would silently take half of the first one's connections.
    root = tmp_path / "new" / "data"
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.Popen(
            _gravix("--data-dir", str(root), "--host", "127.0.0.1", "--port", str(port),
                    "--workers", "2"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its workers
            proc.communicate()
            pytest.fail("a second server started on a port another server listens on")
    assert proc.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert not (tmp_path / "new").exists()
