"""Listing a table: one pass over its directories finds the files a reader uses, with the
hours their names hold, afresh on every call; a link anywhere under the data root is
refused, naming the same link as the check every command starts with."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from gravix.errors import UnsafePath
from gravix.storage import guard, layout, listing
from gravix.storage.layout import Hour

METRICS = "request_metrics_minute"
DAILY = "service_events_daily"
TOPIC = "request_facts"
DAY1, DAY2 = date(2026, 2, 16), date(2026, 2, 17)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def whole_day(day: date) -> tuple[Hour, ...]:
    return tuple(Hour(day, h) for h in range(24))


def test_a_table_lists_the_files_a_reader_uses_with_their_hours(data_root: Path) -> None:
    hours = [Hour(DAY1, 3), Hour(DAY1, 4), Hour(DAY1, 23)]
    files = [touch(layout.warehouse_hour_file(data_root, METRICS, h)) for h in hours]
    compacted = touch(layout.warehouse_day_file(data_root, METRICS, DAY2))
    touch(layout.warehouse_hour_file(data_root, METRICS, Hour(DAY2, 5)))  # left by compaction
    touch(layout.tmp_path(files[0]))  # a write under way
    touch(files[0].parent / "notes.txt")
    (files[0].parent / "sub.parquet").mkdir()  # a directory is not a file
    (layout.warehouse_table_dir(data_root, METRICS) / "junk").mkdir()
    expected = [(str(f), (h,)) for f, h in zip(files, hours, strict=True)]
    expected.append((str(compacted), whole_day(DAY2)))
    assert listing.warehouse_files(data_root, METRICS) == expected


def test_the_daily_table_holds_whole_days_and_nothing_else(data_root: Path) -> None:
    day_file = touch(layout.warehouse_day_file(data_root, DAILY, DAY1))
    touch(layout.warehouse_hour_file(data_root, DAILY, Hour(DAY1, 2)))
    found = dict(listing.warehouse_files(data_root, DAILY))
    assert found[str(day_file)] == whole_day(DAY1)
    assert [hours for path, hours in found.items() if path != str(day_file)] == [()]


def test_every_listing_sees_the_files_as_they_are_now(data_root: Path) -> None:
    assert listing.warehouse_files(data_root, METRICS) == []
    first = touch(layout.warehouse_hour_file(data_root, METRICS, Hour(DAY1, 1)))
    assert [p for p, _ in listing.warehouse_files(data_root, METRICS)] == [str(first)]
    second = touch(layout.warehouse_day_file(data_root, METRICS, DAY1))
    assert [p for p, _ in listing.warehouse_files(data_root, METRICS)] == [str(second)]
    second.unlink()
    first.unlink()
    first.parent.rmdir()
    assert listing.warehouse_files(data_root, METRICS) == []


def test_raw_files_are_listed_hour_by_hour_as_the_rollup_reads_them(data_root: Path) -> None:
    late = touch(layout.raw_file_path(data_root, TOPIC, Hour(DAY2, 0), "b"))
    early = [touch(layout.raw_file_path(data_root, TOPIC, Hour(DAY1, 7), i)) for i in "ba"]
    touch(layout.tmp_path(early[0]))
    (early[0].parent / "linked.jsonl").symlink_to(early[0])  # not a raw file: never read
    (layout.raw_day_dir(data_root, TOPIC, DAY1) / "hour=24").mkdir()
    expected = [
        (str(early[1]), Hour(DAY1, 7)),
        (str(early[0]), Hour(DAY1, 7)),
        (str(late), Hour(DAY2, 0)),
    ]
    assert listing.raw_files(data_root, TOPIC) == expected
    assert [
        str(p) for d in layout.raw_hours(data_root, TOPIC).values() for p in layout.raw_files(d)
    ] == [path for path, _ in expected]


def _built(root: Path) -> None:
    touch(layout.warehouse_hour_file(root, METRICS, Hour(DAY1, 3)))
    touch(layout.raw_file_path(root, TOPIC, Hour(DAY1, 3), "a"))
    layout.buffer_dir(root, TOPIC).mkdir(parents=True)


# Where a link is planted, relative to the data root, and whether it stands for a directory.
PLANTED = [
    ("buffer/request_facts/sealed-x.jsonl", False),
    ("warehouse/request_metrics_hour", True),
    (f"warehouse/{METRICS}", True),
    (f"warehouse/{METRICS}/{layout.day_dir_name(DAY2)}", True),
    (f"warehouse/{METRICS}/{layout.day_dir_name(DAY1)}/part-04.parquet", False),
    (f"warehouse/{METRICS}/{layout.day_dir_name(DAY1)}/.part-05.parquet.1.tmp", False),
    (f"raw/{TOPIC}/{layout.day_dir_name(DAY1)}/{layout.hour_dir_name(9)}", True),
    ("state/locks", True),
]


@pytest.mark.parametrize(("rel", "is_dir"), PLANTED, ids=[rel for rel, _ in PLANTED])
@pytest.mark.parametrize("table", [METRICS, TOPIC])
def test_a_link_anywhere_under_the_root_is_refused_by_every_listing(
    data_root: Path, tmp_path: Path, rel: str, is_dir: bool, table: str
) -> None:
    _built(data_root)
    outside = tmp_path / "outside"
    touch(outside / "x")
    link = data_root / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir():
        shutil.rmtree(link)  # the table's own directory: replaced by the link
    link.symlink_to(outside if is_dir else outside / "x", target_is_directory=is_dir)
    list_table = listing.raw_files if table == TOPIC else listing.warehouse_files
    with pytest.raises(UnsafePath) as caught:
        list_table(data_root, table)
    assert f"{link} is a symlink to {outside}" in caught.value.message


def test_the_first_link_is_named_as_the_guard_names_it(data_root: Path, tmp_path: Path) -> None:
    _built(data_root)
    outside = touch(tmp_path / "outside" / "x")
    for rel in ("state/rollup", f"warehouse/{METRICS}/{layout.day_dir_name(DAY2)}", "raw/zz"):
        (data_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_root / rel).symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(UnsafePath) as guarded:
        guard.check_root(data_root)
    assert "raw/zz is a symlink" in guarded.value.message
    for table, list_table in ((METRICS, listing.warehouse_files), (TOPIC, listing.raw_files)):
        with pytest.raises(UnsafePath) as caught:
            list_table(data_root, table)
        assert caught.value.message == guarded.value.message


def test_a_root_that_is_itself_a_link_is_listed_under_its_given_path(
    data_root: Path, tmp_path: Path
) -> None:
    _built(data_root)
    alias = tmp_path / "alias"
    alias.symlink_to(data_root, target_is_directory=True)
    hour = Hour(DAY1, 3)
    assert listing.warehouse_files(alias, METRICS) == [
        (str(layout.warehouse_hour_file(alias, METRICS, hour)), (hour,))
    ]
    assert listing.raw_files(alias, TOPIC) == [
        (str(layout.raw_file_path(alias, TOPIC, hour, "a")), hour)
    ]


@pytest.mark.parametrize(
    ("path", "hours"),
    [
        (layout.warehouse_hour_file(Path("/d"), METRICS, Hour(DAY1, 7)), [Hour(DAY1, 7)]),
        (layout.warehouse_day_file(Path("/d"), METRICS, DAY1), list(whole_day(DAY1))),
        (Path("/d/warehouse/request_metrics_minute/event_day=2026-02-16/part-24.parquet"), []),
        (Path("/d/warehouse/request_metrics_minute/event_day=2026-02-30/part-01.parquet"), []),
        (Path("/d/warehouse/request_metrics_minute/part-01.parquet"), []),
        (Path("event_day=2026-02-16/part-01.parquet"), [Hour(DAY1, 1)]),
        (Path("part-01.parquet"), []),
    ],
)
def test_a_file_name_means_the_same_as_a_path_or_as_text(path: Path, hours: list[Hour]) -> None:
    assert layout.parse_warehouse_file(METRICS, path) == hours
    assert layout.parse_warehouse_file(METRICS, str(path)) == hours
    got = layout.parse_warehouse_file(METRICS, path)
    got.clear()  # a caller may change its list: the kept meaning stays
    assert layout.parse_warehouse_file(METRICS, path) == hours
