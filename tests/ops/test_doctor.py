"""`gravix doctor`: a healthy data root passes every check; each broken state, built for
real on disk (or with a real server), makes exactly the expected check warn or fail with
a hint that names the gravix command that fixes it."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gravix import schema
from gravix.ops.doctor import FAIL, OK, WARN, DoctorReport, Thresholds, run_doctor
from gravix.report import to_json
from gravix.schema import Validator
from gravix.settings import Settings, load_settings
from gravix.storage import durable, layout

ZERO = timedelta(0)
CLEAN_ENV: dict[str, str] = {}  # settings never read the test runner's GRAVIX_* variables


def uuid7(ms: int) -> str:
    rand = secrets.token_bytes(10)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | int.from_bytes(rand[:2]) >> 4 << 64
    value |= 0b10 << 62 | int.from_bytes(rand[2:]) >> 2
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def write_raw(
    root: Path, hour: layout.Hour, n: int = 20, *, lines: list[bytes] | None = None
) -> Path:
    """One real raw file of canonical request facts inside ``hour``."""
    validator = Validator(schema.REQUEST_FACTS, max_age_days=365)
    out = list(lines or [])
    for i in range(n):
        moment = hour.start + timedelta(seconds=(i * 97) % 3600, milliseconds=i)
        fact = {
            "event_id": uuid7(int(moment.timestamp() * 1000)),
            "event_time": moment.isoformat().replace("+00:00", "Z"),
            "service": "checkout" if i % 2 else "frontend",
            "method": "GET",
            "path_template": "/api/items/{id}",
            "status_code": 500 if i % 7 == 0 else 200,
            "latency_ms": 5.0 + i,
        }
        out.append(validator.one(json.dumps(fact).encode(), now=moment.timestamp()).line)
    path = layout.raw_file_path(root, schema.REQUEST_FACTS, hour, layout.new_file_id())
    durable.atomic_write(path, b"".join(line + b"\n" for line in out))
    return path


def age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    os.utime(path.parent, (stamp, stamp))


def settings_for(root: Path, **flags: object) -> Settings:
    return load_settings(data_dir=root, environ=CLEAN_ENV, **flags)  # type: ignore[arg-type]


def statuses(report: DoctorReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def not_ok(report: DoctorReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks if c.status != OK}


# Checks whose result does not depend on the data root; left out where a state is compared
# with "everything else ok" (ingestion has its own tests against a real server).
FS_CHECKS = [
    "permissions",
    "buffer",
    "disk",
    "raw",
    "rollup",
    "bad lines",
    "warehouse",
    "query",
    "retention",
    "locks",
]


def doctor(root: Path, **flags: object) -> DoctorReport:
    return run_doctor(settings=settings_for(root, **flags), only=FS_CHECKS)


def recent_hours(count: int = 3) -> list[layout.Hour]:
    now = datetime.now(UTC)
    return [layout.Hour.of(now - timedelta(hours=k)) for k in range(count - 1, -1, -1)]


@pytest.fixture()
def healthy(data_root: Path) -> Path:
    """Three recent hours of real raw facts, rolled up by the real rollup."""
    from gravix.rollup import run_rollup

    for hour in recent_hours():
        write_raw(data_root, hour)
    run_rollup(root=data_root)
    return data_root


# --- the healthy root -------------------------------------------------------------------------


def test_healthy_root_passes_every_file_check(healthy: Path) -> None:
    report = doctor(healthy)
    assert not_ok(report) == {}, to_json(report)
    assert set(statuses(report)) == {"data root", *FS_CHECKS}
    assert not report.failed


def test_missing_data_root_fails_and_skips_the_file_checks(tmp_path: Path) -> None:
    report = doctor(tmp_path / "nowhere")
    assert statuses(report) == {"data root": FAIL}
    assert "--data-dir" in report.checks[0].hint
    assert report.failed


# --- buffer and disk ---------------------------------------------------------------------------


def _orphan(root: Path) -> Path:
    path = layout.active_path(root, schema.REQUEST_FACTS, layout.new_file_id())
    durable.makedirs(path.parent)
    path.write_bytes(b'{"event_id":"x"}\n')
    return path


def test_orphaned_buffer_file_fails_buffer_check_with_recover_hint(healthy: Path) -> None:
    orphan = _orphan(healthy)
    report = doctor(healthy)
    assert not_ok(report) == {"buffer": FAIL}
    check = report.by_name()["buffer"]
    assert orphan.name in check.detail
    assert "gravix recover" in check.hint


def test_active_file_held_by_a_live_process_is_not_an_orphan(healthy: Path) -> None:
    active = _orphan(healthy)
    fd = os.open(active, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        report = doctor(healthy)
    finally:
        os.close(fd)
    assert not_ok(report) == {}
    assert "1 active file" in report.by_name()["buffer"].detail


def test_free_space_below_the_floor_fails_disk_check(data_root: Path) -> None:
    free = shutil.disk_usage(data_root).free
    report = run_doctor(
        settings=settings_for(data_root, min_free_bytes=free * 2 + 2**30), only=["disk"]
    )
    check = report.by_name()["disk"]
    assert check.status == FAIL
    assert "gravix cleanup" in check.hint
    low = run_doctor(settings=settings_for(data_root, min_free_bytes=free // 3), only=["disk"])
    assert low.by_name()["disk"].status == WARN
    fine = run_doctor(settings=settings_for(data_root, min_free_bytes=1024), only=["disk"])
    assert fine.by_name()["disk"].status == OK


# --- raw ---------------------------------------------------------------------------------------


def test_raw_check_reports_the_age_of_the_newest_raw_file(data_root: Path) -> None:
    hour = recent_hours(1)[0]
    old = write_raw(data_root, layout.Hour(hour.day - timedelta(days=1), 5))
    age(old, 3 * 3600)
    report = run_doctor(settings=settings_for(data_root), only=["raw"])
    check = report.by_name()["raw"]
    assert check.status == WARN and "3.0 h ago" in check.detail
    assert "gravix ingest-server" in check.hint
    # a late fact for an old hour counts as an arrival: it is the newest file
    write_raw(data_root, layout.Hour(hour.day - timedelta(days=2), 1))
    fresh = run_doctor(settings=settings_for(data_root), only=["raw"]).by_name()["raw"]
    assert fresh.status == OK and "s ago" in fresh.detail


def test_no_raw_files_warns_with_ingest_hint(data_root: Path) -> None:
    check = run_doctor(settings=settings_for(data_root), only=["raw"]).by_name()["raw"]
    assert check.status == WARN
    assert "gravix ingest-server" in check.hint


# --- rollup ------------------------------------------------------------------------------------


def test_hour_never_rolled_up_fails_rollup_check(healthy: Path) -> None:
    hours = recent_hours(6)
    path = write_raw(healthy, hours[0])  # five hours ago, older than the grace
    age(path, 2 * 3600)
    report = doctor(healthy)
    assert not_ok(report) == {"rollup": FAIL}
    check = report.by_name()["rollup"]
    assert "never rolled up" in check.detail and str(hours[0]) in check.detail
    assert "gravix rollup" in check.hint


def test_late_facts_after_rollup_fail_rollup_check(healthy: Path) -> None:
    hour = recent_hours(3)[0]
    write_raw(healthy, hour, 3)
    # with no grace, a rollup is due as soon as the late file lands
    report = run_doctor(
        settings=settings_for(healthy), only=FS_CHECKS, thresholds=Thresholds(rollup_grace=ZERO)
    )
    assert not_ok(report) == {"rollup": FAIL}
    check = report.by_name()["rollup"]
    assert "late facts" in check.detail and str(hour) in check.detail
    assert "gravix rollup" in check.hint


def test_fresh_raw_data_waiting_for_the_next_rollup_is_ok(healthy: Path) -> None:
    write_raw(healthy, recent_hours(1)[0], 3)
    report = doctor(healthy)
    assert not_ok(report) == {}
    assert "waiting for the next rollup" in report.by_name()["rollup"].detail


def test_bad_raw_lines_in_recent_runs_warn_with_their_hour(healthy: Path) -> None:
    from gravix.rollup import run_rollup

    hour = recent_hours(2)[0]
    write_raw(healthy, hour, 5, lines=[b'{"event_id": "torn', b"\x00\x00\x00"])
    run_rollup(root=healthy)
    report = doctor(healthy)
    assert not_ok(report) == {"bad lines": WARN}
    check = report.by_name()["bad lines"]
    assert check.detail.startswith("2 bad raw lines") and str(hour) in check.detail
    assert "gravix rollup" in check.hint


# --- warehouse and query -----------------------------------------------------------------------


def _hour_files(root: Path, table: str = schema.REQUEST_METRICS_MINUTE) -> list[Path]:
    return sorted(layout.warehouse_table_dir(root, table).rglob("part-*.parquet"))


def test_corrupt_parquet_fails_warehouse_check_with_recover_hint(healthy: Path) -> None:
    victim = _hour_files(healthy)[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # torn: the footer is gone
    report = doctor(healthy)
    assert report.by_name()["warehouse"].status == FAIL
    assert victim.name in report.by_name()["warehouse"].detail
    assert "gravix recover" in report.by_name()["warehouse"].hint
    # the query layer reads every footer too, so the runbook's check query fails as well
    assert not_ok(report) == {"warehouse": FAIL, "query": FAIL}
    assert "gravix recover --deep" in report.by_name()["query"].hint


def test_corrupt_hour_table_file_fails_warehouse_check_as_a_minute_file_does(
    healthy: Path,
) -> None:
    victim = _hour_files(healthy, schema.REQUEST_METRICS_HOUR)[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    report = doctor(healthy)
    assert report.by_name()["warehouse"].status == FAIL
    assert f"{schema.REQUEST_METRICS_HOUR}/" in report.by_name()["warehouse"].detail
    assert "gravix recover" in report.by_name()["warehouse"].hint


def test_damaged_pages_in_the_newest_hour_file_fail_warehouse_check(healthy: Path) -> None:
    victim = _hour_files(healthy)[-1]
    data = bytearray(victim.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 64] = b"\xa5" * 64  # footer intact, a column chunk damaged
    victim.write_bytes(bytes(data))
    report = doctor(healthy)
    check = report.by_name()["warehouse"]
    assert check.status == FAIL and victim.name in check.detail
    assert "gravix recover" in check.hint
    # LIMIT 10 is answered from the first rows; only the full decode finds this damage
    assert not_ok(report) == {"warehouse": FAIL}


def test_parquet_without_the_metric_columns_fails_warehouse_check(healthy: Path) -> None:
    import duckdb

    victim = _hour_files(healthy)[0]
    victim.unlink()
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT 1 AS service) TO '{victim}' (FORMAT parquet)")
    check = doctor(healthy).by_name()["warehouse"]
    assert check.status == FAIL and "columns missing" in check.detail


def test_empty_warehouse_warns_and_query_returns_no_rows(data_root: Path) -> None:
    report = run_doctor(settings=settings_for(data_root), only=["warehouse", "query"])
    assert statuses(report) == {"data root": OK, "warehouse": WARN, "query": WARN}
    assert "gravix rollup" in report.by_name()["warehouse"].hint
    assert "gravix rollup" in report.by_name()["query"].hint


# --- retention ---------------------------------------------------------------------------------


def test_data_older_than_retention_warns_with_cleanup_hint(healthy: Path) -> None:
    from gravix.rollup import run_rollup

    old = layout.Hour.of(datetime.now(UTC) - timedelta(days=40))
    write_raw(healthy, old)
    run_rollup(root=healthy)
    report = doctor(healthy)
    assert not_ok(report) == {"retention": WARN}
    check = report.by_name()["retention"]
    assert "older than the retention" in check.detail
    assert "gravix cleanup" in check.hint
    assert not report.failed


# --- locks -------------------------------------------------------------------------------------

_HOLD = (
    "import os, sys, signal; from pathlib import Path\n"
    "from gravix.storage.durable import FileLock\n"
    "lock = FileLock(Path(sys.argv[1]), sys.argv[3]).acquire()\n"
    "if sys.argv[2] == 'die': os.kill(os.getpid(), signal.SIGKILL)\n"
    "lock.release()\n"
)


def _lock_in_child(root: Path, how: str, purpose: str = "rollup") -> Path:
    path = layout.lock_path(root, "rollup")
    args = [sys.executable, "-c", _HOLD, str(path), how, purpose]
    subprocess.run(args, check=False, timeout=60)
    return path


@pytest.mark.parametrize(
    ("purpose", "command"), [("rollup", "gravix rollup"), ("cleanup", "gravix cleanup")]
)
def test_lock_of_a_dead_process_warns_that_it_will_be_taken_over(
    data_root: Path, purpose: str, command: str
) -> None:
    path = _lock_in_child(data_root, "die", purpose)
    report = run_doctor(settings=settings_for(data_root), only=["locks"])
    check = report.by_name()["locks"]
    assert check.status == WARN
    assert "left by a dead process" in check.detail and "will be taken over" in check.detail
    assert command in check.hint
    # and it is true: the next holder takes it over
    durable.FileLock(path, "test").acquire().release()


def test_lock_released_cleanly_is_not_reported(data_root: Path) -> None:
    _lock_in_child(data_root, "release")
    check = run_doctor(settings=settings_for(data_root), only=["locks"]).by_name()["locks"]
    assert check.status == OK and check.detail == "no lock held"


def test_lock_held_by_a_live_process_is_ok_and_named(data_root: Path) -> None:
    lock = durable.FileLock(layout.lock_path(data_root, "rollup"), "rollup").acquire()
    try:
        check = run_doctor(settings=settings_for(data_root), only=["locks"]).by_name()["locks"]
    finally:
        lock.release()
    assert check.status == OK
    assert f"pid {os.getpid()}" in check.detail


# --- a check that cannot run -------------------------------------------------------------------


@pytest.fixture()
def broken_rollup_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(sys.modules, "gravix.rollup", None)  # import now raises ImportError
    yield


def test_a_check_that_breaks_is_reported_and_the_others_still_run(data_root: Path) -> None:
    durable.atomic_write(layout.rollup_runs_path(data_root), b'{"bad_lines": "many"}\n')
    report = run_doctor(settings=settings_for(data_root), only=FS_CHECKS)
    check = report.by_name()["bad lines"]
    assert check.status == FAIL and "could not run" in check.detail
    assert "gravix doctor --json" in check.hint
    assert set(statuses(report)) == {"data root", *FS_CHECKS}
