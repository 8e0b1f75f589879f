"""Doctor's ingestion check against a real `gravix ingest-server` subprocess: live, ready,
and the key accepted without storing anything; 401 is a failure with the runbook's hint."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_doctor import FS_CHECKS, not_ok, recent_hours, write_raw

from gravix import schema
from gravix.ops.doctor import FAIL, OK, UNAUTHORIZED_HINT, WARN, run_doctor
from gravix.report import to_json
from gravix.settings import DEFAULT_URL, load_settings
from gravix.storage import layout
from serverutil import RunningServer, free_port, running_server, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("doctor-server") / "data"
    root.mkdir()
    with running_server(root, api_key="right-key") as running:
        yield running


def ingestion(root: Path, url: str, keys: list[str] | None = None) -> tuple[str, str, str]:
    settings = load_settings(data_dir=root, url=url, api_keys=keys, environ={})
    check = run_doctor(settings=settings, only=["ingestion"]).by_name()["ingestion"]
    return check.status, check.detail, check.hint


def _raw_lines(root: Path) -> int:
    return sum(
        len(path.read_bytes().splitlines())
        for hour_dir in layout.raw_hours(root, schema.REQUEST_FACTS).values()
        for path in layout.raw_files(hour_dir)
    )


def test_live_ready_server_accepting_the_key_is_ok(server: RunningServer) -> None:
    status, detail, _ = ingestion(server.data_dir, server.url, ["right-key"])
    assert status == OK, detail
    assert "accepts the API key" in detail


def test_key_probe_stores_nothing(server: RunningServer) -> None:
    before = _raw_lines(server.data_dir)
    buffered = sum(p.stat().st_size for p in (server.data_dir / "buffer").rglob("*.jsonl"))
    ingestion(server.data_dir, server.url, ["right-key"])
    after = sum(p.stat().st_size for p in (server.data_dir / "buffer").rglob("*.jsonl"))
    assert (buffered, before) == (after, _raw_lines(server.data_dir))


def test_rejected_key_fails_ingestion_with_unauthorized_hint(server: RunningServer) -> None:
    status, detail, hint = ingestion(server.data_dir, server.url, ["wrong-key"])
    assert status == FAIL
    assert "401" in detail
    assert hint == UNAUTHORIZED_HINT and "X-API-Key" in hint


def test_no_key_given_warns_that_the_key_was_not_checked(server: RunningServer) -> None:
    status, detail, hint = ingestion(server.data_dir, server.url, [])
    assert status == WARN and "not checked" in detail
    assert "--api-key" in hint


def test_configured_url_without_a_server_fails(data_root: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, detail, hint = ingestion(data_root, url, ["k"])
    assert status == FAIL and url in detail
    assert "gravix ingest-server" in hint


def test_no_server_configured_only_warns(data_root: Path) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", int(DEFAULT_URL.rsplit(":", 1)[1]))) == 0:
            pytest.skip("something listens on the default port on this machine")
    status, _, hint = ingestion(data_root, DEFAULT_URL, ["k"])
    assert status == WARN
    assert "--url" in hint


def test_healthy_root_with_live_server_passes_every_check(data_root: Path) -> None:
    from gravix.rollup import run_rollup

    for hour in recent_hours():
        write_raw(data_root, hour)
    run_rollup(root=data_root)
    with running_server(data_root, api_key="k1") as srv:
        settings = load_settings(data_dir=data_root, url=srv.url, api_keys=["k1"], environ={})
        report = run_doctor(settings=settings)
    assert not_ok(report) == {}, to_json(report)
    assert {c.name for c in report.checks} == {"data root", "ingestion", *FS_CHECKS}


def test_live_server_that_is_not_ready_fails_ingestion(data_root: Path) -> None:
    srv = start_server(data_root, env={"GRAVIX_MIN_FREE_BYTES": "1000000TB"}, wait=False)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{srv.url}/live", timeout=1).status_code == 200:
                    break
            assert srv.proc.poll() is None, srv.log_text()
            time.sleep(0.05)
        status, detail, hint = ingestion(data_root, srv.url, ["test-key"])
    finally:
        srv.stop()
    assert status == FAIL, detail
    assert "not ready" in detail and "below the floor" in detail
    assert "gravix cleanup" in hint
