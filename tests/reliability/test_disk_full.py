"""Disk full on a real small file system (a loop-mounted ext4 image): no false 2xx, 503 with
Retry-After while full, ingestion resumes once space returns, and a rollup that hits ENOSPC
leaves the previous partition readable."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
import pytest
from relutil import valid_fact
from scenario import TOPIC, check_after_recovery, make_lines, warehouse_counts_by_hour

from gravix.errors import GravixError
from gravix.rollup import run_rollup
from gravix.storage import durable, layout
from gravix.storage.layout import Hour
from gravix.storage.orphans import recover_buffers
from serverutil import start_server

KEY = "test-key"


@pytest.fixture()
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("loop-mounting an ext4 image needs root")
    if shutil.which("mkfs.ext4") is None or shutil.which("mount") is None:
        pytest.skip("mkfs.ext4 or mount is not installed")
    image = tmp_path / "fs.img"
    mount = tmp_path / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(48 * 2**20)
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"mkfs.ext4 failed: {made.stderr.strip()}")
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(fs: Path) -> Path:
    """Take every free block of the file system; returns the filler file."""
    filler = fs / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (2**20, 2**16, 2**12, 2**10, 1):
            block = b"\0" * chunk
            while True:
                try:
                    f.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
        os.fsync(f.fileno())
    return filler


def _post(client: httpx.Client, n: int) -> tuple[int, str, httpx.Response]:
    fact = valid_fact(n)
    response = client.post("/api/v1/facts", json=fact)
    return response.status_code, fact["event_id"], response


def test_full_disk_refuses_with_503_and_resumes_when_space_returns(small_fs: Path) -> None:
    root = small_fs / "data"
    root.mkdir()
    env = {"GRAVIX_MIN_FREE_BYTES": "64KiB"}
    acked: set[str] = set()
    server = start_server(root, api_key=KEY, env=env)
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=10) as client:
            for n in range(20):
                code, event_id, _ = _post(client, n)
                assert code == 201
                acked.add(event_id)
            filler = fill(small_fs)
            refused = 0
            for n in range(20, 400):
                code, event_id, response = _post(client, n)
                assert code in (201, 503), response.text
                if code == 201:
                    acked.add(event_id)  # it fitted into a partly used block: really stored
                else:
                    refused += 1
                    assert response.headers.get("retry-after")
                    assert response.json()["code"] == 503
                    if refused >= 20:
                        break
            assert refused >= 20, "a full disk never produced a 503"
            assert client.get("/ready").status_code == 503
            filler.unlink()
            freed = time.monotonic()
            resumed = None
            for n in range(400, 4000):
                code, event_id, _ = _post(client, n)
                if code == 201:
                    acked.add(event_id)
                    resumed = time.monotonic() - freed
                    break
                time.sleep(0.05)
            assert resumed is not None and resumed < 30, "ingestion did not resume"
            print(
                f"disk full: {refused} refused (503); resumed {resumed:.2f}s after space returned"
            )
        assert server.stop() == 0
    finally:
        server.kill()
    recover_buffers(root)
    check_after_recovery(root, acked)


def test_rollup_hitting_enospc_leaves_the_previous_partition_readable(small_fs: Path) -> None:
    root = small_fs / "data"
    root.mkdir()
    hour = Hour.of(datetime.now(UTC))

    def add_raw(name: str, count: int, seed: int) -> None:
        lines = make_lines(count, hours_back=(0,), seed=seed)
        valid = [line for line in lines if Hour.of(_time(line)) == hour]
        durable.atomic_write(layout.raw_file_path(root, TOPIC, hour, name), b"".join(valid))

    add_raw("first", 50, 1)
    run_rollup(root=root)
    before = warehouse_counts_by_hour(root)
    assert sum(before.values()) > 0
    add_raw("second", 3000, 2)
    filler = fill(small_fs)
    # polars reports ENOSPC while writing Parquet as a ComputeError, which rollup does not
    # yet turn into a StorageError; what matters here is what a reader sees afterwards.
    with pytest.raises((GravixError, OSError, pl.exceptions.ComputeError)):
        run_rollup(root=root)
    assert warehouse_counts_by_hour(root) == before  # old rows, readable, not half-new
    filler.unlink()
    run_rollup(root=root)
    after = warehouse_counts_by_hour(root)
    assert sum(after.values()) > sum(before.values())


def _time(line: bytes) -> datetime:
    stamp = json.loads(line)["event_time"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_with_a_store_down_only_a_full_local_disk_refuses_and_the_backlog_drains_later(
    small_fs: Path, tmp_path: Path
) -> None:
    """A node whose store does not answer at all (nothing listens on its endpoint) keeps
    acknowledging while its backlog grows; it answers 503 only once the local disk is full,
    resumes when space returns, and uploads everything once the store is there."""
    from gravix.tools.serverproc import free_port
    from s3util import moto_server

    root = small_fs / "data"
    root.mkdir()
    store_port = free_port()
    env = {
        "GRAVIX_MIN_FREE_BYTES": "64KiB",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{store_port}",
    }
    args = ("--store", "s3://down/p", "--node-id", "n1", "--rotate-seconds", "0.2")
    acked: set[str] = set()
    server = start_server(root, *args, api_key=KEY, env=env)
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=10) as client:
            for n in range(40):
                code, event_id, response = _post(client, n)
                assert code == 201, response.text
                acked.add(event_id)
                time.sleep(0.02)
            assert len(list((root / "buffer").rglob("sealed-*"))) >= 2  # the backlog grows
            filler = fill(small_fs)
            refused = 0
            for n in range(40, 400):
                code, event_id, _ = _post(client, n)
                if code == 201:
                    acked.add(event_id)
                else:
                    assert code == 503
                    refused += 1
                    if refused >= 10:
                        break
            assert refused >= 10, "a full disk never produced a 503"
            filler.unlink()
            for n in range(400, 4000):
                code, event_id, _ = _post(client, n)
                if code == 201:
                    acked.add(event_id)
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("ingestion did not resume")
            with moto_server(tmp_path, port=store_port) as moto:
                moto.create_bucket("down")
                deadline = time.monotonic() + 90
                while list((root / "buffer").rglob("sealed-*")):
                    assert time.monotonic() < deadline, "the backlog did not drain"
                    time.sleep(0.5)
                assert server.stop() == 0
                stored = {
                    json.loads(line)["event_id"]
                    for data in moto.objects("down", "p/raw/").values()
                    for line in data.splitlines()
                }
    finally:
        server.kill()
    assert acked <= stored
