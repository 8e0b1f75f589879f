"""`gravix doctor --store s3://…` on an ingest node: the upload backlog (sealed files the
store has not confirmed) is reported with its size and age; it warns past 5 minutes and
fails past an hour; sealed files are not orphans there, active files of dead processes are;
the checks that read raw/ or the warehouse are named as not run on a store yet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gravix.ops.doctor import FAIL, OK, WARN, run_doctor
from gravix.settings import load_settings
from gravix.storage import layout

STORE = "s3://bucket/prefix"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _file_id(age: timedelta, n: int) -> str:
    ns = int((NOW - age).timestamp() * 1e9)
    return f"{ns:020d}-1-{n:08x}"


def _sealed(root: Path, age: timedelta, size: int, n: int = 0) -> Path:
    path = layout.sealed_path(root, "request_facts", _file_id(age, n))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * (size - 1) + b"\n")
    return path


def _checks(root: Path) -> dict[str, tuple[str, str]]:
    settings = load_settings(data_dir=root, store=STORE, url="http://127.0.0.1:9", environ={})
    only = ("buffer", "uploads", "store")
    report = run_doctor(settings=settings, now=NOW, only=only)
    return {c.name: (c.status, c.detail) for c in report.checks}


def test_an_empty_backlog_is_ok(data_root: Path) -> None:
    (data_root / "buffer").mkdir()
    checks = _checks(data_root)
    assert checks["uploads"][0] == OK and "backlog empty" in checks["uploads"][1]
    assert checks["buffer"][0] == OK


def test_a_young_backlog_is_reported_with_its_files_bytes_and_age(data_root: Path) -> None:
    _sealed(data_root, timedelta(seconds=30), 1000, 1)
    _sealed(data_root, timedelta(seconds=90), 3000, 2)
    status, detail = _checks(data_root)["uploads"]
    assert status == OK
    assert detail.startswith("upload backlog: 2 sealed file(s), 3.9 KiB waiting for " + STORE)
    assert "the oldest since 90 s" in detail


def test_a_backlog_older_than_five_minutes_warns_and_older_than_an_hour_fails(
    data_root: Path,
) -> None:
    old = _sealed(data_root, timedelta(minutes=6), 10)
    assert _checks(data_root)["uploads"][0] == WARN
    old.unlink()
    _sealed(data_root, timedelta(minutes=61), 10)
    assert _checks(data_root)["uploads"][0] == FAIL


def test_sealed_files_are_backlog_not_orphans_but_a_dead_active_file_is(data_root: Path) -> None:
    _sealed(data_root, timedelta(seconds=5), 10)
    assert _checks(data_root)["buffer"][0] == OK
    active = layout.active_path(data_root, "request_facts", _file_id(timedelta(seconds=9), 7))
    active.write_bytes(b"y\n")  # nobody holds its lock: its process died
    status, detail = _checks(data_root)["buffer"]
    assert status == FAIL and active.name in detail


def test_checks_that_need_raw_or_the_warehouse_say_they_did_not_run(data_root: Path) -> None:
    (data_root / "buffer").mkdir()
    status, detail = _checks(data_root)["store"]
    assert status == WARN
    for name in ("raw", "warehouse", "query", "retention"):
        assert name in detail
