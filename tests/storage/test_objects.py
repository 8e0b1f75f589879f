"""A store reader's object names are the data root's relative paths: every prefix is the
local layout's directory, and a name is judged as a local listing judges a path."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gravix import schema
from gravix.storage import layout, objects
from gravix.storage.layout import Hour

ROOT = Path("/srv/gravix-data")
DAY = date(2026, 2, 16)
HOUR = Hour(DAY, 7)


def test_prefixes_are_the_local_layouts_directories() -> None:
    for topic in schema.TOPICS:
        directory = layout.raw_topic_dir(ROOT, topic)
        assert objects.table_prefix(topic, raw=True) == f"{layout.object_key(ROOT, directory)}/"
        day = layout.raw_day_dir(ROOT, topic, DAY)
        assert objects.day_prefix(topic, DAY, raw=True) == f"{layout.object_key(ROOT, day)}/"
        hour = layout.raw_hour_dir(ROOT, topic, HOUR)
        assert objects.hour_prefix(topic, HOUR) == f"{layout.object_key(ROOT, hour)}/"
    for table in (schema.REQUEST_METRICS_MINUTE, schema.SERVICE_EVENTS_DAILY):
        directory = layout.warehouse_table_dir(ROOT, table)
        assert objects.table_prefix(table, raw=False) == f"{layout.object_key(ROOT, directory)}/"
        day = layout.warehouse_day_dir(ROOT, table, DAY)
        assert objects.day_prefix(table, DAY, raw=False) == f"{layout.object_key(ROOT, day)}/"


def test_a_raw_object_name_says_its_hour() -> None:
    uploaded = layout.raw_object_key(schema.REQUEST_FACTS, HOUR, "node-1", "0001-2-ab")
    assert objects.raw_hour_of(schema.REQUEST_FACTS, uploaded) == HOUR
    local = layout.object_key(ROOT, layout.raw_file_path(ROOT, schema.SERVICE_EVENTS, HOUR, "f1"))
    assert objects.raw_hour_of(schema.SERVICE_EVENTS, local) == HOUR


@pytest.mark.parametrize(
    "key",
    [
        "raw/service_events/event_day=2026-02-16/hour=07/a.jsonl",  # another topic
        "raw/request_facts/event_day=2026-02-16/hour=24/a.jsonl",
        "raw/request_facts/event_day=2026-02-30/hour=07/a.jsonl",
        "raw/request_facts/event_day=2026-02-16/hour=07/a.json",
        "raw/request_facts/event_day=2026-02-16/a.jsonl",
        "raw/request_facts/event_day=2026-02-16/hour=07/x/a.jsonl",
    ],
)
def test_anything_a_local_listing_skips_is_not_a_raw_object(key: str) -> None:
    assert objects.raw_hour_of(schema.REQUEST_FACTS, key) is None


def test_a_warehouse_object_name_says_its_day() -> None:
    table = schema.REQUEST_METRICS_MINUTE
    hour_file = layout.object_key(ROOT, layout.warehouse_hour_file(ROOT, table, HOUR))
    day_file = layout.object_key(ROOT, layout.warehouse_day_file(ROOT, table, DAY))
    assert objects.warehouse_day_of(table, hour_file) == DAY
    assert objects.warehouse_day_of(table, day_file) == DAY
    assert objects.warehouse_day_of(schema.SERVICE_EVENTS_DAILY, hour_file) is None
    assert objects.warehouse_day_of(table, hour_file.replace(".parquet", ".json")) is None
    assert objects.warehouse_day_of(table, hour_file.replace("2026-02-16", "2026-13-01")) is None
