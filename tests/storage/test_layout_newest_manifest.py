"""layout.newest_manifest_hour: the newest hour with a rollup manifest, read from the
directory names alone; temporaries and strangers are not manifests."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from gravix.storage import layout
from gravix.storage.layout import Hour

TABLE = "request_metrics_minute"


def _manifest(root: Path, day: str, name: str) -> None:
    directory = root / "state" / "rollup" / TABLE / f"event_day={day}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text("{}")


def test_none_before_the_first_rollup(data_root: Path) -> None:
    assert layout.newest_manifest_hour(data_root, TABLE) is None
    (data_root / "state" / "rollup" / TABLE).mkdir(parents=True)
    assert layout.newest_manifest_hour(data_root, TABLE) is None


def test_newest_day_then_newest_hour(data_root: Path) -> None:
    _manifest(data_root, "2026-02-15", "hour=23.json")
    _manifest(data_root, "2026-02-16", "hour=03.json")
    _manifest(data_root, "2026-02-16", "hour=10.json")
    _manifest(data_root, "2026-02-16", "hour=09.json")
    assert layout.newest_manifest_hour(data_root, TABLE) == Hour(date(2026, 2, 16), 10)
    assert layout.newest_manifest_hour(data_root, "service_events_daily") is None


def test_temporaries_and_other_names_are_not_manifests(data_root: Path) -> None:
    _manifest(data_root, "2026-02-15", "hour=07.json")
    _manifest(data_root, "2026-02-16", ".hour=11.json.4242.tmp")
    _manifest(data_root, "2026-02-16", "hour=24.json")
    _manifest(data_root, "2026-02-16", "notes.txt")
    (data_root / "state" / "rollup" / TABLE / "event_day=2026-02-17").mkdir()
    (data_root / "state" / "rollup" / TABLE / "event_day=2026-02-18.json").write_text("")
    assert layout.newest_manifest_hour(data_root, TABLE) == Hour(date(2026, 2, 15), 7)
