"""Layout: the one owner of paths under the data root; pure, round-trippable, and safe."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gravix.errors import UnsafePath
from gravix.storage import layout, links
from gravix.storage.layout import Hour

ROOT = Path("/data")
H = Hour(date(2026, 2, 16), 10)


def test_buffer_paths_follow_the_documented_scheme() -> None:
    assert layout.active_path(ROOT, "request_facts", "abc") == Path(
        "/data/buffer/request_facts/active-abc.jsonl"
    )
    assert layout.sealed_path(ROOT, "service_events", "x_1-2") == Path(
        "/data/buffer/service_events/sealed-x_1-2.jsonl"
    )


def test_raw_and_warehouse_paths_are_hive_partitioned_by_event_day_and_hour() -> None:
    assert layout.raw_file_path(ROOT, "request_facts", H, "f1") == Path(
        "/data/raw/request_facts/event_day=2026-02-16/hour=10/f1.jsonl"
    )
    assert layout.warehouse_hour_file(ROOT, "request_metrics_minute", H) == Path(
        "/data/warehouse/request_metrics_minute/event_day=2026-02-16/part-10.parquet"
    )
    assert layout.warehouse_day_file(ROOT, "service_events_daily", H.day) == Path(
        "/data/warehouse/service_events_daily/event_day=2026-02-16/part-day.parquet"
    )
    assert layout.rollup_manifest_path(ROOT, "request_metrics_minute", Hour(H.day, 3)) == Path(
        "/data/state/rollup/request_metrics_minute/event_day=2026-02-16/hour=03.json"
    )
    assert layout.lock_path(ROOT, "rollup") == Path("/data/state/locks/rollup.lock")


def test_path_functions_are_pure_and_touch_nothing(tmp_path: Path) -> None:
    root = tmp_path / "absent"
    layout.raw_file_path(root, "request_facts", H, "f")
    layout.warehouse_hour_file(root, "request_metrics_minute", H)
    layout.lock_path(root, "rollup")
    assert not root.exists()
    assert layout.raw_file_path(root, "request_facts", H, "f") == layout.raw_file_path(
        root, "request_facts", H, "f"
    )


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "a b", ".hidden", "x\x00", "é"])
def test_file_ids_that_could_escape_or_confuse_are_refused(bad: str) -> None:
    with pytest.raises(UnsafePath):
        layout.raw_file_path(ROOT, "request_facts", H, bad)
    with pytest.raises(UnsafePath):
        layout.active_path(ROOT, "request_facts", bad)
    with pytest.raises(UnsafePath):
        layout.lock_path(ROOT, bad)


def test_unknown_topics_and_tables_are_refused() -> None:
    with pytest.raises(ValueError):
        layout.buffer_dir(ROOT, "../request_facts")
    with pytest.raises(ValueError):
        layout.warehouse_table_dir(ROOT, "raw")


def test_new_file_ids_are_valid_unique_and_time_sortable() -> None:
    ids = [layout.new_file_id() for _ in range(200)]
    assert len(set(ids)) == len(ids)
    for file_id in ids:
        assert layout.check_file_id(file_id) == file_id
    assert ids == sorted(ids)


def test_buffer_names_round_trip_and_other_names_are_not_buffer_files() -> None:
    file_id = layout.new_file_id()
    active = layout.active_path(ROOT, "request_facts", file_id)
    sealed = layout.sealed_path(ROOT, "request_facts", file_id)
    assert layout.parse_buffer_name(active) == ("active", file_id)
    assert layout.parse_buffer_name(sealed) == ("sealed", file_id)
    for name in ["active-.jsonl", "sealed-x.json", "other-x.jsonl", ".active-x.jsonl.1.tmp"]:
        assert layout.parse_buffer_name(Path(name)) is None


def test_partition_directory_names_round_trip_and_bad_ones_are_ignored() -> None:
    day = date(2024, 2, 29)
    assert layout.parse_day_dir(layout.day_dir_name(day)) == day
    for hour in range(24):
        assert layout.parse_hour_dir(layout.hour_dir_name(hour)) == hour
    for bad in ["event_day=2026-02-30", "event_day=2026-2-1", "day=2026-02-01", "event_day="]:
        assert layout.parse_day_dir(bad) is None
    for bad in ["hour=24", "hour=7", "hour=ab", "hour=007"]:
        assert layout.parse_hour_dir(bad) is None


def test_hour_of_a_moment_uses_utc_and_orders_by_time() -> None:
    moment = datetime(2026, 2, 16, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert Hour.of(moment) == Hour(date(2026, 2, 15), 23)
    assert Hour.of(moment).start == datetime(2026, 2, 15, 23, tzinfo=UTC)
    assert str(H) == "2026-02-16T10"
    assert Hour(date(2026, 2, 15), 23) < Hour(date(2026, 2, 16), 0) < H


def test_raw_hours_and_files_list_only_real_partitions_and_complete_files(tmp_path: Path) -> None:
    root = tmp_path
    good = layout.raw_file_path(root, "request_facts", H, "f1")
    good.parent.mkdir(parents=True)
    good.write_text("{}\n")
    (good.parent / ".f2.jsonl.123.tmp").write_text("partial")
    (good.parent / "notes.txt").write_text("x")
    (good.parent / "link.jsonl").symlink_to(good)
    bogus = layout.raw_topic_dir(root, "request_facts") / "event_day=2026-02-16" / "hour=99"
    bogus.mkdir()
    (layout.raw_topic_dir(root, "request_facts") / "junk").mkdir()
    assert layout.raw_hours(root, "request_facts") == {H: good.parent}
    assert layout.raw_files(good.parent) == [good]
    assert layout.raw_hours(root, "service_events") == {}


def test_tmp_paths_are_hidden_siblings_that_globs_do_not_match() -> None:
    final = layout.raw_file_path(ROOT, "request_facts", H, "f1")
    tmp = layout.tmp_path(final)
    assert tmp.parent == final.parent
    assert layout.is_tmp(tmp)
    assert not layout.is_tmp(final)
    assert not tmp.name.endswith(".jsonl")
    assert str(os.getpid()) in tmp.name


def test_ensure_inside_accepts_paths_inside_the_root(tmp_path: Path) -> None:
    inner = tmp_path / "raw" / "x.jsonl"
    inner.parent.mkdir()
    inner.write_text("")
    assert links.ensure_inside(tmp_path, inner) == inner
    assert links.ensure_inside(tmp_path, tmp_path) == tmp_path
    inner_link = tmp_path / "alias"
    inner_link.symlink_to(tmp_path / "raw")
    assert links.ensure_inside(tmp_path, inner_link / "x.jsonl") == inner_link / "x.jsonl"


def test_ensure_inside_refuses_symlinks_and_dotdots_that_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "file-escape").symlink_to(outside / "victim.txt")
    (root / "sibling").symlink_to(tmp_path / "root-evil")  # a prefix match is not "inside"
    for path in [
        root / "escape" / "x",
        root / "file-escape",
        root / ".." / "outside",
        root / "sibling",
        Path("/etc/passwd"),
    ]:
        with pytest.raises(UnsafePath) as info:
            links.ensure_inside(root, path)
        assert info.value.hint
