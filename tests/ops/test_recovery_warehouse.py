"""`run_recover` beyond the buffer: stray temporaries, unreadable Parquet, rebuilds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from gravix import rollup
from gravix.ops import recovery
from gravix.storage import orphans
from publish_facts import fact_lines, uuid7, write_buffer

HOURLY = "request_metrics_minute"
HOUR_TABLE = "request_metrics_hour"


def warehouse(root: Path, table: str = HOURLY) -> Path:
    return root / "warehouse" / table / "event_day=2026-02-16"


def rows(path: Path) -> list[tuple[object, ...]]:
    """The file's rows as DuckDB reads them, in a fixed order."""
    with duckdb.connect() as con:
        columns = [
            r[0]
            for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        ]
        # lists do not order; compare them as text
        select = ", ".join(f"{c}::VARCHAR" if c in ("lat_idx", "lat_cnt") else c for c in columns)
        return con.execute(
            f"SELECT {select} FROM read_parquet(?) ORDER BY ALL", [str(path)]
        ).fetchall()


@pytest.fixture()
def built(data_root: Path) -> Iterator[Path]:
    """Four hours of facts in raw, rolled up."""
    write_buffer(data_root, "sealed-w1.jsonl", b"".join(fact_lines(400)))
    orphans.recover_buffers(data_root)
    rollup.run_rollup(root=data_root)
    assert len(list(warehouse(data_root).glob("*.parquet"))) == 6
    yield data_root


def corrupt_pages(path: Path) -> None:
    """Zero bytes in the middle of every column chunk; the footer stays intact."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata.row_group(0)
    data = bytearray(path.read_bytes())
    for i in range(meta.num_columns):
        column = meta.column(i)
        middle = column.data_page_offset + column.total_compressed_size // 2
        data[middle : middle + 24] = bytes(24)
    path.write_bytes(bytes(data))


def test_truncated_parquet_is_quarantined_and_its_hour_rebuilt_from_raw(built: Path) -> None:
    target = warehouse(built) / "part-11.parquet"
    good = rows(target)
    original = target.read_bytes()
    target.write_bytes(original[: len(original) // 2])

    report = recovery.run_recover(root=built)

    assert [p.path for p in report.parquet_problems] == [target]
    problem = report.parquet_problems[0]
    assert problem.quarantined is not None
    assert problem.quarantined.read_bytes() == original[: len(original) // 2]
    assert problem.quarantined.is_relative_to(built / "quarantine")
    assert report.rebuild_hours == {HOURLY: problem.hours}
    assert [str(h) for h in problem.hours] == ["2026-02-16T11"]
    assert rows(target) == good
    assert report.parquet_checked == 12  # six hours, each in the minute and the hour table
    # a second run finds nothing to do
    again = recovery.run_recover(root=built)
    assert again.parquet_problems == [] and again.rebuild_hours == {}


def test_a_truncated_hour_table_file_is_quarantined_and_rebuilt_from_raw(built: Path) -> None:
    target = warehouse(built, HOUR_TABLE) / "part-11.parquet"
    good = rows(target)
    original = target.read_bytes()
    target.write_bytes(original[: len(original) // 2])

    report = recovery.run_recover(root=built)

    assert [(p.table, p.path) for p in report.parquet_problems] == [(HOUR_TABLE, target)]
    assert report.parquet_problems[0].quarantined is not None
    # rebuilt by its minute table's hour task, from raw
    assert report.rebuild_hours == {HOURLY: report.parquet_problems[0].hours}
    assert rows(target) == good
    assert rollup.plan_hours(built) == []


def test_plain_recover_finds_damaged_pages_behind_an_intact_footer(built: Path) -> None:
    """Page checksums: the rollup writes a CRC on every page and recover (without --deep)
    reads every page with it verified, so a damaged page is quarantined and rebuilt."""
    import pyarrow.parquet as pq

    target = warehouse(built) / "part-12.parquet"
    good = rows(target)
    corrupt_pages(target)
    assert pq.ParquetFile(target).metadata.num_rows == len(good)  # the footer still reads

    report = recovery.run_recover(root=built)

    assert [p.path for p in report.parquet_problems] == [target]
    assert "CRC" in report.parquet_problems[0].error
    assert rows(target) == good


def test_hours_whose_output_went_missing_are_rebuilt_on_the_next_run(built: Path) -> None:
    # a recover killed after quarantining a file and before rebuilding its hour
    target = warehouse(built) / "part-10.parquet"
    good = rows(target)
    (built / "quarantine").mkdir()
    target.rename(built / "quarantine" / "moved.parquet")

    report = recovery.run_recover(root=built)

    assert [str(h) for h in report.rebuild_hours[HOURLY]] == ["2026-02-16T10"]
    assert rows(target) == good


def test_an_hour_without_raw_facts_left_is_reported_not_rebuilt(built: Path) -> None:
    target = warehouse(built) / "part-13.parquet"
    shutil.rmtree(built / "raw" / "request_facts" / "event_day=2026-02-16" / "hour=13")
    target.write_bytes(b"PAR1 not really")

    report = recovery.run_recover(root=built)

    assert [str(h) for h in report.not_rebuildable[HOURLY]] == ["2026-02-16T13"]
    assert HOURLY not in report.rebuild_hours
    quarantined = report.parquet_problems[0].quarantined
    assert quarantined is not None and quarantined.read_bytes() == b"PAR1 not really"


def test_rebuild_window_rolls_up_late_facts_in_that_window_only(built: Path) -> None:
    late = fact_lines(30, step_s=60.0, start=datetime(2026, 2, 16, 11, 0, 5, tzinfo=UTC))
    hour11 = built / "raw" / "request_facts" / "event_day=2026-02-16" / "hour=11"
    (hour11 / "late.jsonl").write_bytes(b"".join(late))
    before12 = (warehouse(built) / "part-12.parquet").read_bytes()
    count11 = sum(r[4] for r in rows(warehouse(built) / "part-11.parquet"))

    report = recovery.run_recover(
        root=built, rebuild_start="2026-02-16T11:00:00Z", rebuild_end="2026-02-16T11:30:00Z"
    )

    assert report.rebuilt and report.rebuilt[-1]["hours_built"] == 1
    with duckdb.connect() as con:
        # de-duplicated by event_id: the late facts reuse ids 1..30, which are in hour 09/10
        raw_count = con.execute(
            "SELECT count(DISTINCT event_id) FROM read_json_auto(?)", [str(hour11 / "*.jsonl")]
        ).fetchone()
    assert raw_count is not None
    assert sum(r[4] for r in rows(warehouse(built) / "part-11.parquet")) == raw_count[0]
    assert raw_count[0] > count11
    assert (warehouse(built) / "part-12.parquet").read_bytes() == before12


def exited_pid() -> int:
    """The pid of a process that has exited (a writer that died)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_stray_temporaries_of_dead_writers_are_removed_and_live_ones_kept(
    data_root: Path,
) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead_pid = exited_pid()
    hour = data_root / "raw" / "request_facts" / "event_day=2026-02-16" / "hour=10"
    hour.mkdir(parents=True)
    part = data_root / "warehouse" / HOURLY / "event_day=2026-02-16"
    part.mkdir(parents=True)
    stale = [hour / f".x1.jsonl.{dead_pid}.tmp", part / f".part-10.parquet.{dead_pid}.tmp"]
    live = hour / f".x2.jsonl.{sleeper.pid}.tmp"
    try:
        for path in [*stale, live]:
            path.write_bytes(b"partial")
        keep = hour / "x3.jsonl"  # a good fact: recover moves damaged raw lines, not these
        keep.write_bytes(
            b'{"event_id":"0194f0c2-8a00-7000-8000-000000000001",'
            b'"event_time":"2026-02-16T10:00:01.000Z","service":"api","method":"GET",'
            b'"path_template":"/","status_code":200,"latency_ms":1.5}\n'
        )

        dry = recovery.run_recover(root=data_root, dry_run=True)
        assert sorted(dry.temporaries) == sorted(stale)
        assert all(p.exists() for p in stale)

        report = recovery.run_recover(root=data_root)

        assert sorted(report.temporaries) == sorted(stale)
        assert not any(p.exists() for p in stale)
        assert live.exists() and keep.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_recover_dry_run_changes_nothing_anywhere(built: Path) -> None:
    old = time.time() - 60
    orphan = write_buffer(built, "active-x9.jsonl", b"".join(fact_lines(5)) + b"{")

    os.utime(orphan, (old, old))
    (warehouse(built) / "part-09.parquet").write_bytes(b"garbage")
    (built / "raw" / f".y.jsonl.{exited_pid()}.tmp").write_bytes(b"")

    def snapshot() -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in built.rglob("*") if p.is_file()}

    before = snapshot()
    report = recovery.run_recover(root=built, dry_run=True)

    assert snapshot() == before
    assert report.buffers.lines == 5 and report.buffers.torn_tail_lines == 1
    assert [p.path.name for p in report.parquet_problems] == ["part-09.parquet"]
    assert [str(h) for h in report.rebuild_hours[HOURLY]] == ["2026-02-16T09"]
    assert len(report.temporaries) == 1


def test_an_unreadable_daily_file_is_rebuilt_from_every_hour_of_its_day(data_root: Path) -> None:
    from gravix.schema import Validator

    lines = []
    for i in range(30):
        moment = datetime(2026, 2, 16, 2 + i % 20, i, tzinfo=UTC)
        body = json.dumps(
            {
                "event_id": uuid7(i + 1000),
                "event_time": moment.isoformat(),
                "service": ["frontend", "checkout"][i % 2],
                "event_type": ["deploy_started", "deploy_completed", "restart"][i % 3],
            }
        ).encode()
        validator = Validator("service_events", clock=lambda m=moment: m.timestamp())
        lines.append(validator.one(body).line + b"\n")
    write_buffer(data_root, "sealed-ev1.jsonl", b"".join(lines), topic="service_events")
    orphans.recover_buffers(data_root)
    rollup.run_rollup(root=data_root)
    daily = data_root / "warehouse" / "service_events_daily" / "event_day=2026-02-16"
    target = daily / "part-day.parquet"
    good = rows(target)
    assert len(good) == 6  # 2 services × 3 event types
    with duckdb.connect() as con:
        total = con.execute(
            "SELECT sum(event_count) FROM read_parquet(?)", [str(target)]
        ).fetchone()
    assert total == (30,)
    target.write_bytes(target.read_bytes()[:-20])

    report = recovery.run_recover(root=data_root)

    assert [p.path for p in report.parquet_problems] == [target]
    assert len(report.rebuild_hours["service_events_daily"]) == 20  # the hours with raw events
    assert rows(target) == good


def test_a_temporary_named_with_foreign_digits_is_stray_not_a_crash(data_root: Path) -> None:
    hour = data_root / "raw" / "request_facts" / "event_day=2026-02-16" / "hour=10"
    hour.mkdir(parents=True)
    odd = hour / ".x1.jsonl.²³.tmp"  # str.isdigit() says yes to these; int() says no
    odd.write_bytes(b"partial")

    report = recovery.run_recover(root=data_root)

    assert report.temporaries == [odd] and not odd.exists()
