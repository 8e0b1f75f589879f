"""Buffer recovery: sealed and orphaned buffer files into raw, exactly once."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gravix.ops import recovery
from gravix.storage import durable, orphans, publish
from gravix.storage.layout import is_tmp
from publish_facts import fact_lines, hour_key, raw_content, write_buffer


def test_publish_sealed_splits_lines_by_event_hour_with_bytes_unchanged(data_root: Path) -> None:
    lines = fact_lines(300)  # 09:58 + 300 × 37 s spans five event hours
    sealed = write_buffer(data_root, "sealed-abc123.jsonl", b"".join(lines))

    report = publish.publish_sealed(data_root, "request_facts", sealed)

    assert report is not None
    assert not sealed.exists()
    expected: dict[str, list[bytes]] = {}
    for line in lines:
        expected.setdefault(f"{hour_key(line)}/abc123.jsonl", []).append(line)
    assert len(expected) == 5
    assert raw_content(data_root) == expected
    assert report.lines == 300
    assert report.torn_tail_lines == report.damaged_lines == 0
    assert report.quarantined is None
    assert not (data_root / "quarantine").exists()


def test_publish_sealed_returns_none_while_another_open_file_holds_the_lock(
    data_root: Path,
) -> None:
    sealed = write_buffer(data_root, "sealed-held.jsonl", b"".join(fact_lines(5)))
    fd = os.open(sealed, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert publish.publish_sealed(data_root, "request_facts", sealed) is None
        assert sealed.exists()
        assert raw_content(data_root) == {}
    finally:
        os.close(fd)
    assert publish.publish_sealed(data_root, "request_facts", sealed) is not None


def test_publish_sealed_drops_a_torn_tail_and_keeps_its_bytes_in_quarantine(
    data_root: Path,
) -> None:
    lines = fact_lines(10)
    torn = lines[-1][:25]
    sealed = write_buffer(data_root, "sealed-torn.jsonl", b"".join(lines[:-1]) + torn)

    report = publish.publish_sealed(data_root, "request_facts", sealed)

    assert report is not None
    assert report.lines == 9
    assert (report.torn_tail_lines, report.torn_tail_bytes, report.damaged_lines) == (1, 25, 0)
    kept = [line for file_lines in raw_content(data_root).values() for line in file_lines]
    assert sorted(kept) == sorted(lines[:-1])
    assert report.quarantined is not None and report.quarantined.read_bytes() == torn


def test_publish_sealed_quarantines_damage_in_the_middle_and_keeps_the_rest(
    data_root: Path,
) -> None:
    lines = fact_lines(20)
    damaged = [lines[5].replace(b'"service"', b'"serv\xffce"'), b"not json at all\n"]
    data = b"".join(lines[:5] + damaged[:1] + lines[6:12] + damaged[1:] + lines[12:])
    sealed = write_buffer(data_root, "sealed-mid.jsonl", data)

    report = publish.publish_sealed(data_root, "request_facts", sealed)

    assert report is not None
    assert (report.lines, report.damaged_lines, report.torn_tail_lines) == (19, 2, 0)
    kept = [line for file_lines in raw_content(data_root).values() for line in file_lines]
    assert sorted(kept) == sorted(lines[:5] + lines[6:])
    assert report.quarantined is not None
    assert report.quarantined.read_bytes() == b"".join(damaged)
    assert report.quarantined.is_relative_to(data_root / "quarantine")


class Crash(Exception):
    pass


def _publish_crashing_at(root: Path, sealed: Path, crash_at: int) -> int:
    """Publish with the ``crash_at``-th durable operation failing; returns operations seen."""
    seen = 0

    def hook(op: str, path: str) -> None:
        nonlocal seen
        seen += 1
        if seen == crash_at:
            raise Crash(f"{op} {path}")

    previous = durable.set_hook(hook)
    try:
        publish.publish_sealed(root, "request_facts", sealed)
    except Crash:
        pass
    finally:
        durable.set_hook(previous)
    return seen


def test_publish_redone_after_a_crash_at_any_operation_stores_each_line_once(
    tmp_path: Path,
) -> None:
    lines = fact_lines(100, step_s=60.0)  # two event hours
    content = b"".join(lines) + b"\x00" * 40  # and a zero-filled tail for quarantine
    total = _publish_crashing_at(
        tmp_path / "count", write_buffer(tmp_path / "count", "sealed-crashy.jsonl", content), 0
    )
    assert total > 10
    for crash_at in range(1, total + 1):
        root = tmp_path / f"crash{crash_at}"
        sealed = write_buffer(root, "sealed-crashy.jsonl", content)
        _publish_crashing_at(root, sealed, crash_at)
        if crash_at < total:
            assert sealed.exists()  # nothing is removed before everything is durable

        report = publish.publish_sealed(root, "request_facts", sealed)

        assert not sealed.exists()
        assert report is not None or crash_at == total
        all_lines = [line for file_lines in raw_content(root).values() for line in file_lines]
        assert Counter(all_lines) == Counter(lines), crash_at
        # a temporary left by the crash is hidden from readers; `gravix recover` sweeps it
        quarantined = [p for p in (root / "quarantine").rglob("*") if p.is_file() and not is_tmp(p)]
        assert [p.read_bytes() for p in quarantined] == [b"\x00" * 40], crash_at


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_recover_buffers_moves_orphans_and_leaves_a_live_servers_file_alone(
    data_root: Path,
) -> None:
    lines = fact_lines(60)
    old = time.time() - 60
    dead = write_buffer(data_root, "active-dead1.jsonl", b"".join(lines[:20]))
    sealed = write_buffer(data_root, "sealed-rot1.jsonl", b"".join(lines[20:40]))
    live = write_buffer(data_root, "active-live1.jsonl", b"".join(lines[40:]))
    os.utime(dead, (old, old))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(live)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert set(orphans.find_orphans(data_root)) == {dead, sealed}

        report = orphans.recover_buffers(data_root)

        assert live.read_bytes() == b"".join(lines[40:])
        assert report.skipped_live == [live]
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert not dead.exists() and not sealed.exists()
    assert report.activated == [dead]
    assert report.lines == 40
    all_lines = [line for file_lines in raw_content(data_root).values() for line in file_lines]
    assert Counter(all_lines) == Counter(lines[:40])
    assert {Path(name).name for name in raw_content(data_root)} == {"dead1.jsonl", "rot1.jsonl"}

    # the server died: its file is now an orphan too
    again = orphans.recover_buffers(data_root)
    assert again.activated == [live] and again.lines == 20
    all_lines = [line for file_lines in raw_content(data_root).values() for line in file_lines]
    assert Counter(all_lines) == Counter(lines)


def test_recover_buffers_dry_run_reports_the_plan_and_changes_nothing(data_root: Path) -> None:
    lines = fact_lines(30)
    old = time.time() - 60
    dead = write_buffer(data_root, "active-d2.jsonl", b"".join(lines[:10]) + b"{torn")
    os.utime(dead, (old, old))
    write_buffer(data_root, "sealed-s2.jsonl", b"".join(lines[10:]))

    def snapshot() -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in data_root.rglob("*") if p.is_file()}

    before = snapshot()
    report = orphans.recover_buffers(data_root, dry_run=True)

    assert snapshot() == before
    assert sorted(p.name for p in data_root.rglob("*")) == sorted(
        ["buffer", "request_facts", "active-d2.jsonl", "sealed-s2.jsonl"]
    )
    assert report.lines == 30 and report.torn_tail_lines == 1
    assert report.activated == [dead]


def test_an_empty_orphaned_active_file_is_removed_without_raw_output(data_root: Path) -> None:
    # A live server's active file is locked before it gets its name (buffer._open_active),
    # so an unlocked one, even brand new and empty, is an orphan.
    fresh = write_buffer(data_root, "active-fresh.jsonl", b"")
    assert orphans.find_orphans(data_root) == [fresh]
    report = orphans.recover_buffers(data_root)
    assert report.lines == 0 and not fresh.exists()
    assert raw_content(data_root) == {}


def test_recover_buffers_reports_progress_per_file(data_root: Path) -> None:
    for i in range(5):
        write_buffer(data_root, f"sealed-g{i}.jsonl", b"".join(fact_lines(3)))
    calls: list[tuple[str, int, int]] = []

    orphans.recover_buffers(data_root, progress=lambda *a: calls.append(a))

    assert calls == [("buffer files", done, 5) for done in range(6)]


def test_recovery_never_follows_a_symlink_out_of_the_data_root(tmp_path: Path) -> None:
    from gravix.errors import UnsafePath

    root = tmp_path / "data"
    outside = tmp_path / "outside"
    (outside / "hour=10").mkdir(parents=True)
    (outside / "hour=10" / "precious.jsonl").write_bytes(b"keep\n")
    (outside / "part-10.parquet").write_bytes(b"not parquet, and not ours")
    (outside / ".x.jsonl.1.tmp").write_bytes(b"not ours either")
    before = {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    lines = fact_lines(10, start=datetime(2026, 2, 16, 10, 1, tzinfo=UTC))
    sealed = write_buffer(root, "sealed-sym.jsonl", b"".join(lines))
    (root / "raw" / "request_facts").mkdir(parents=True)
    (root / "raw" / "request_facts" / "event_day=2026-02-16").symlink_to(outside)
    (root / "warehouse" / "request_metrics_minute").mkdir(parents=True)
    (root / "warehouse" / "request_metrics_minute" / "event_day=2026-02-16").symlink_to(outside)
    (root / "state").mkdir()
    (root / "state" / "elsewhere").symlink_to(outside)

    with pytest.raises(UnsafePath):
        publish.publish_sealed(root, "request_facts", sealed)
    with pytest.raises(UnsafePath):  # the whole root is refused, naming the first link
        recovery.run_recover(root=root, dry_run=True)

    assert sealed.exists()  # kept until it can be published safely
    assert {p: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before
