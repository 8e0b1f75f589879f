"""A node with a store (moto's S3 server on loopback) exports every upload metric the
alert rules and the dashboard read, with the labels their rule tests give the series."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from test_watched_metrics import _check_labels
from watch_support import STORE_METRICS, parse_exposition

from s3util import MotoServer
from serverutil import fact, running_server


def test_a_node_with_a_store_exports_the_upload_metrics_the_files_read(
    moto: MotoServer, tmp_path: Path
) -> None:
    bucket = moto.create_bucket(f"watched-{time.monotonic_ns()}")
    root = tmp_path / "data"
    args = ("--store", f"s3://{bucket}/p", "--node-id", "watched", "--rotate-seconds", "0.2")
    with running_server(root, *args, env=moto.env()) as server, server.client() as c:
        assert c.post("/api/v1/facts", json=fact()).status_code == 201
        deadline = time.monotonic() + 30
        while not moto.objects(bucket):
            assert time.monotonic() < deadline, "nothing was uploaded"
            time.sleep(0.1)
        live = parse_exposition(httpx.get(f"{server.url}/metrics", timeout=10).text)
    assert live.names >= STORE_METRICS
    _check_labels(STORE_METRICS, live)
