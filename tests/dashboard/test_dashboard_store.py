"""`gravix dashboard --store s3://…` (DESIGN §11), as real processes on loopback: one
dashboard over a data root, one over moto's S3 server holding the same raw/ and warehouse/
files as objects of the same names. Every route of the data API answers the same; an hour
that a rollup replaced is read again once its object is replaced in the store (the pieces'
cache keys hold the object's size and time); an unreachable store answers 503 with a hint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.dashboard_support import END, LATE_FACT, START, incident_night, write_raw
from gravix import schema
from gravix.rollup import run_rollup
from gravix.storage import layout
from gravix.storage.s3 import S3Store
from gravix.tools.serverproc import free_port
from s3util import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, moto_server
from store_copy import BUCKET, URL, copy_areas, store_config

ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_STORE": "", "API_KEY": "", "GRAVIX_API_KEYS": ""}
Z = "%Y-%m-%dT%H:%M:%SZ"
WINDOW = {"from": START.strftime(Z), "to": END.strftime(Z)}
QUESTIONS: list[tuple[str, dict[str, str]]] = [
    ("services", {}),
    ("series", {**WINDOW, "step": "300"}),
    ("series", {**WINDOW, "step": "3600", "service": "frontend", "apdex_t_ms": "40"}),
    ("series", {**WINDOW, "compare": "1d"}),
    ("series", {**WINDOW, "service": "frontend", "method": "POST", "path": "/checkout"}),
    ("endpoints", WINDOW),
    ("endpoints", {**WINDOW, "sort": "p95_ms", "limit": "3"}),
    ("endpoints", {**WINDOW, "service": "api", "sort": "requests"}),
    ("events", WINDOW),
    ("events", {**WINDOW, "service": "frontend"}),
    ("heatmap", {**WINDOW, "step": "900"}),
]


@contextmanager
def dashboard(log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    """`gravix dashboard` as a process on a free loopback port, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "gravix", "dashboard", "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ENV, **(env or {})},
            start_new_session=True,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/live").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        server.create_bucket(BUCKET)
        yield server


def answer(client: httpx.Client, route: str, params: dict[str, str]) -> dict[str, Any]:
    response = client.get(f"/api/v1/{route}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def snapshot(root: Path) -> dict[str, bytes]:
    areas = (layout.raw_root(root), layout.warehouse_root(root))
    return {
        layout.object_key(root, p): p.read_bytes()
        for area in areas
        for p in area.rglob("*")
        if p.is_file()
    }


def test_the_data_api_answers_from_the_store_as_from_the_data_root(
    tmp_path: Path, moto: MotoServer
) -> None:
    root = incident_night(tmp_path / "data")
    copy_areas(root, moto)
    empty = tmp_path / "no-local-data"
    with (
        dashboard(tmp_path / "local.log", "--data-dir", str(root)) as local,
        dashboard(
            tmp_path / "store.log", "--data-dir", str(empty), "--store", URL, env=moto.env()
        ) as stored,
    ):
        for route, params in QUESTIONS:
            expected = answer(local, route, params)
            assert answer(stored, route, params) == expected, (route, params)
            assert any(expected.get(k) for k in ("services", "points", "rows")), (route, params)
        # the store's files are the data: a late fact rolled up and its hour's objects
        # replaced shows in the next answer, as on the data root
        window = {**WINDOW, "step": "3600"}
        before = answer(stored, "series", window)
        copied = snapshot(root)
        write_raw(root, schema.REQUEST_FACTS, [LATE_FACT])
        run_rollup(root=root)
        store = S3Store(store_config(moto))
        changed = {k: v for k, v in snapshot(root).items() if copied.get(k) != v}
        assert any(k.startswith("warehouse/") for k in changed)
        for key, data in changed.items():
            store.write(key, data)
        after = answer(stored, "series", window)
        assert after == answer(local, "series", window)
        moved = [a["t"] for a, b in zip(after["points"], before["points"], strict=True) if a != b]
        assert moved == ["2026-03-02T00:00:00Z"]
        for route, params in QUESTIONS:
            assert answer(stored, route, params) == answer(local, route, params), route
    assert not empty.exists()


def test_an_unreachable_store_answers_503_with_a_hint(tmp_path: Path) -> None:
    gone = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    args = ("--data-dir", str(tmp_path / "d"), "--store", URL)
    with dashboard(tmp_path / "gone.log", *args, env=gone) as client:
        for route in ("series", "endpoints", "events", "heatmap", "services"):
            response = client.get(f"/api/v1/{route}", params=WINDOW if route != "services" else {})
            assert response.status_code == 503, response.text
            body = response.json()
            assert URL in body["error"] and "reachable" in body["hint"]
            assert body["code"] == 503
    assert "Traceback" not in (tmp_path / "gone.log").read_text()


def test_one_window_of_a_day_boundary_reads_both_days(tmp_path: Path, moto: MotoServer) -> None:
    """The window crosses midnight: the store lists both event days, and the hours on each
    side of it answer as on the data root."""
    root = incident_night(tmp_path / "data")
    url = f"s3://{BUCKET}/boundary"
    copy_areas(root, moto, url)
    midnight = END.replace(hour=0)
    params = {
        "from": (midnight - timedelta(minutes=50)).strftime(Z),
        "to": (midnight + timedelta(minutes=70)).strftime(Z),
        "step": "600",
    }
    with (
        dashboard(tmp_path / "l.log", "--data-dir", str(root)) as local,
        dashboard(tmp_path / "s.log", "--store", url, env=moto.env()) as stored,
    ):
        expected = answer(local, "series", params)
        assert sum(p["requests"] for p in expected["points"]) > 0
        assert answer(stored, "series", params) == expected
