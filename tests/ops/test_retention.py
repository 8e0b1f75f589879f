"""Retention: exactly the partitions before the cutoff go, judged by their date; nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from gravix.errors import ConfigError, UnsafePath
from gravix.ops import retention
from gravix.storage import durable

TODAY = date(2026, 2, 16)
SPAN = 45  # days of data, today included
HOURS = (0, 23)  # hour partitions per raw day
FILES = 2  # files per raw hour


def snapshot(base: Path) -> dict[str, bytes | str]:
    """Every entry under ``base`` (symlinks by target, not followed)."""
    out: dict[str, bytes | str] = {}
    for path in sorted(base.rglob("*")):
        rel = str(path.relative_to(base))
        if path.is_symlink():
            out[rel] = f"-> {os.readlink(path)}"
        elif path.is_file():
            out[rel] = path.read_bytes()
        else:
            out[rel] = "dir"
    return out


def build_tree(root: Path) -> None:
    """45 days of raw, warehouse and rollup state; file times run against partition dates,
    so anything judging by mtime would pick the wrong ones."""
    for back in range(SPAN):
        day = TODAY - timedelta(days=back)
        stamp = time.time() - (SPAN - back) * 86400  # newest partition has the oldest mtime
        files = []
        for topic in ("request_facts", "service_events"):
            for hour in HOURS:
                hour_dir = root / "raw" / topic / f"event_day={day}" / f"hour={hour:02d}"
                hour_dir.mkdir(parents=True)
                for n in range(FILES):
                    files.append(hour_dir / f"f{n}.jsonl")
                    files[-1].write_bytes(f'{{"day":"{day}","h":{hour},"n":{n}}}\n'.encode())
        for table in ("request_metrics_minute", "service_events_daily"):
            part = root / "warehouse" / table / f"event_day={day}"
            part.mkdir(parents=True)
            files.append(part / "part-13.parquet")
            files[-1].write_bytes(b"PAR1" + bytes(100) + b"PAR1")
            state = root / "state" / "rollup" / table / f"event_day={day}"
            state.mkdir(parents=True)
            files.append(state / "hour=13.json")
            files[-1].write_text("{}")
        for path in files:
            os.utime(path, (stamp, stamp))
    buffer = root / "buffer" / "request_facts"
    buffer.mkdir(parents=True)
    (buffer / "sealed-old.jsonl").write_bytes(b'{"event_time":"2025-01-01T00:00:00.000Z"}\n')
    old = time.time() - 400 * 86400
    os.utime(buffer / "sealed-old.jsonl", (old, old))


def days_in(root: Path, area: str, name: str) -> set[date]:
    base = root / area / name
    return {date.fromisoformat(p.name.split("=")[1]) for p in base.iterdir()}


def expected_days(keep: int) -> set[date]:
    # A day is kept when it is at most `keep` days before today.
    return {TODAY - timedelta(days=back) for back in range(SPAN) if back <= keep}


def test_cleanup_deletes_exactly_the_partitions_before_the_cutoff_by_partition_date(
    data_root: Path,
) -> None:
    build_tree(data_root)
    buffer_before = snapshot(data_root / "buffer")

    report = retention.run_cleanup(root=data_root, days=30, warehouse_days=30, today=TODAY)

    for topic in ("request_facts", "service_events"):
        assert days_in(data_root, "raw", topic) == expected_days(30)
    for table in ("request_metrics_minute", "service_events_daily"):
        assert days_in(data_root, "warehouse", table) == expected_days(30)
        assert days_in(data_root, "state/rollup", table) == expected_days(30)
    assert snapshot(data_root / "buffer") == buffer_before
    old_days = SPAN - 31  # 14 days before the cutoff
    # raw: 2 topics × hours × files; warehouse and state: 2 tables × 1 file each
    assert report.deleted_files == old_days * (2 * len(HOURS) * FILES + 2 + 2)
    tables = report.plan.tables()
    assert tables["raw.request_facts"]["partitions"] == old_days
    assert tables["raw.request_facts"]["files"] == old_days * len(HOURS) * FILES
    assert tables["warehouse.request_metrics_minute"]["bytes"] == old_days * 108
    # emptied directories are pruned, kept ones are whole
    hour_dirs = list((data_root / "raw" / "request_facts").glob("*/hour=*"))
    assert len(hour_dirs) == 31 * len(HOURS)
    assert all(len(list(d.iterdir())) == FILES for d in hour_dirs)


def test_warehouse_days_keeps_metrics_longer_than_raw(data_root: Path) -> None:
    build_tree(data_root)

    retention.run_cleanup(root=data_root, days=7, warehouse_days=40, today=TODAY)

    assert days_in(data_root, "raw", "request_facts") == expected_days(7)
    assert days_in(data_root, "warehouse", "request_metrics_minute") == expected_days(40)
    # the rollup's record of a day stays while its metrics do
    assert days_in(data_root, "state/rollup", "request_metrics_minute") == expected_days(40)


def test_dry_run_plans_what_the_real_run_deletes_and_changes_nothing(data_root: Path) -> None:
    build_tree(data_root)
    before = snapshot(data_root)

    dry = retention.run_cleanup(
        root=data_root, days=10, warehouse_days=20, today=TODAY, dry_run=True
    )

    assert snapshot(data_root) == before
    planned = {p.path for p in dry.plan.partitions}
    real = retention.run_cleanup(root=data_root, days=10, warehouse_days=20, today=TODAY)
    gone = {data_root / k for k in before if not (data_root / k).exists()}
    assert planned == {p.path for p in real.plan.partitions}
    assert {p for p in gone if p.parent not in gone} == planned
    assert dry.plan.files == real.deleted_files


def test_symlinks_inside_the_root_make_cleanup_refuse_before_deleting(tmp_path: Path) -> None:
    root = tmp_path / "data"
    outside = tmp_path / "outside"
    (outside / "hour=01").mkdir(parents=True)
    (outside / "hour=01" / "precious.jsonl").write_bytes(b"keep me\n")
    (outside / "precious.parquet").write_bytes(b"keep me too")
    build_tree(root)
    old_day = TODAY - timedelta(days=40)
    # a whole "partition" that is a link, a link to a directory inside a partition, a file link
    (root / "raw" / "request_facts" / "event_day=2000-01-01").symlink_to(outside)
    (root / "raw" / "service_events" / f"event_day={old_day}" / "hour=05").symlink_to(outside)
    wh = root / "warehouse" / "request_metrics_minute" / f"event_day={old_day}"
    (wh / "part-02.parquet").symlink_to(outside / "precious.parquet")
    (root / "warehouse" / "service_events_daily").rename(tmp_path / "moved")
    (root / "warehouse" / "service_events_daily").symlink_to(tmp_path / "moved")
    outside_before = snapshot(outside)
    moved_before = snapshot(tmp_path / "moved")

    # Refused before anything is deleted, naming a link (storage.guard.check_root).
    with pytest.raises(UnsafePath) as caught:
        retention.run_cleanup(root=root, days=30, warehouse_days=30, today=TODAY)

    assert "is a symlink to" in caught.value.message
    assert snapshot(outside) == outside_before
    assert snapshot(tmp_path / "moved") == moved_before
    assert (wh / "part-02.parquet").is_symlink()
    assert (wh / "part-13.parquet").exists()  # nothing was deleted


ROLLUP_STANDIN = """
import sys, time
from pathlib import Path
from gravix.storage import durable, layout
root, day = Path(sys.argv[1]), sys.argv[2]
with durable.FileLock(layout.lock_path(root, "rollup"), "rollup"):
    print("locked", flush=True)
    part = root / "warehouse" / "request_metrics_minute" / f"event_day={day}"
    for hour in range(24):
        durable.atomic_write(part / f"part-{hour:02d}.parquet", b"PAR1" + bytes(50) + b"PAR1")
        time.sleep(0.02)
    print("done", flush=True)
"""


def test_cleanup_waits_for_a_running_rollup_and_never_half_deletes_its_partition(
    data_root: Path,
) -> None:
    build_tree(data_root)
    old_day = TODAY - timedelta(days=35)
    part = data_root / "warehouse" / "request_metrics_minute" / f"event_day={old_day}"
    rollup = subprocess.Popen(
        [sys.executable, "-c", ROLLUP_STANDIN, str(data_root), str(old_day)],
        stdout=subprocess.PIPE,
    )
    assert rollup.stdout is not None
    try:
        assert rollup.stdout.readline() == b"locked\n"
        result: list[retention.CleanupReport] = []
        cleaner = threading.Thread(
            target=lambda: result.append(
                retention.run_cleanup(root=data_root, days=30, warehouse_days=30, today=TODAY)
            )
        )
        cleaner.start()
        observed = []
        while rollup.poll() is None:
            # while the rollup holds its lock, its partition only ever grows
            observed.append(len(list(part.glob("*.parquet"))) if part.exists() else -1)
            time.sleep(0.005)
        cleaner.join(timeout=60)
    finally:
        rollup.kill()
        rollup.wait()
        rollup.stdout.close()
    assert rollup.returncode == 0
    assert -1 not in observed and observed == sorted(observed)
    assert result and not part.exists()
    assert old_day in {p.day for p in result[0].plan.partitions}
    # the partition was planned after the rollup finished: all its files were counted
    planned = next(p for p in result[0].plan.partitions if p.path == part)
    assert len(planned.files) == 24


def test_cleanup_interrupted_at_any_point_finishes_on_the_next_run(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    build_tree(reference)
    retention.run_cleanup(root=reference, days=20, warehouse_days=30, today=TODAY)
    expected = snapshot(reference)
    for crash_at in (1, 150):
        root = tmp_path / f"crash{crash_at}"
        build_tree(root)
        seen = 0

        def hook(op: str, path: str, crash_at: int = crash_at) -> None:
            nonlocal seen
            seen += op in ("unlink", "rmdir")
            if seen == crash_at:
                raise OSError(5, "injected", path)

        previous = durable.set_hook(hook)
        try:
            with pytest.raises(Exception, match="cleanup stopped"):
                retention.run_cleanup(root=root, days=20, warehouse_days=30, today=TODAY)
        finally:
            durable.set_hook(previous)
        retention.run_cleanup(root=root, days=20, warehouse_days=30, today=TODAY)
        after = {k: v for k, v in snapshot(root).items() if not k.startswith("state/locks")}
        assert after == {k: v for k, v in expected.items() if not k.startswith("state/locks")}


def test_days_below_one_is_a_usage_error(data_root: Path) -> None:
    with pytest.raises(ConfigError, match="--days must be at least 1"):
        retention.plan_cleanup(data_root, days=0, warehouse_days=30)


def test_metrics_kept_shorter_than_raw_are_refused_because_rollup_would_rebuild_them(
    data_root: Path,
) -> None:
    build_tree(data_root)
    before = snapshot(data_root)
    with pytest.raises(ConfigError, match="shorter than --days"):
        retention.run_cleanup(root=data_root, days=30, warehouse_days=7, today=TODAY)
    assert snapshot(data_root) == before


def test_cleanup_reports_progress_per_partition(data_root: Path) -> None:
    build_tree(data_root)
    calls: list[tuple[str, int, int]] = []

    report = retention.run_cleanup(
        root=data_root, days=30, warehouse_days=30, today=TODAY, progress=lambda *a: calls.append(a)
    )

    total = len(report.plan.partitions)
    assert total == 14 * 6  # 14 old days × (2 topics + 2 tables + 2 rollup records)
    assert [done for _label, done, _total in calls] == list(range(total + 1))
    assert {t for _label, _done, t in calls} == {total}
