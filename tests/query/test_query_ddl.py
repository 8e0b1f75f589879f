"""`--ddl trino`: parsed back, every warehouse table's columns and types match the Parquet
files the rollup wrote, partitioning matches the directories, and locations point at them."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gravix import schema
from gravix.query import trino_ddl
from gravix.schema import RAW_COLUMNS
from gravix.storage import layout
from test_query_support import build_warehouse, populate


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("ddl") / "data"
    populate(data, minutes=60)
    build_warehouse(data)
    return data


def trino_of(t: pa.DataType) -> str:
    """Trino's Hive connector type for an Arrow type, written out independently."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "varchar"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array({trino_of(t.value_type)})"
    if pa.types.is_timestamp(t):
        return {"s": "timestamp(0)", "ms": "timestamp(3)", "us": "timestamp(6)"}[t.unit]
    return {
        pa.int8(): "tinyint",
        pa.int16(): "smallint",
        pa.int32(): "integer",
        pa.int64(): "bigint",
        pa.float64(): "double",
        pa.date32(): "date",
    }[t]


def parse(ddl: str) -> dict[str, dict[str, object]]:
    text = re.sub(r"--[^\n]*", "", ddl)
    tables: dict[str, dict[str, object]] = {}
    pattern = re.compile(
        r"CREATE TABLE IF NOT EXISTS gravix\.raw\.(\w+) \((.*?)\)\s*WITH \((.*?)\);", re.S
    )
    for name, body, props in pattern.findall(text):
        columns = [tuple(c.strip().split(" ", 1)) for c in re.split(r",\n", body.strip())]
        options = dict(
            (k, v.strip()) for k, v in re.findall(r"(\w+)\s*=\s*('[^']*'|ARRAY\[[^\]]*\])", props)
        )
        tables[name] = {"columns": columns, "options": options}
    return tables


def test_warehouse_tables_match_their_parquet_schema_and_partitions(root: Path) -> None:
    ddl = trino_ddl(root)
    tables = parse(ddl)
    assert set(tables) == {
        "request_metrics_minute",
        "request_metrics_hour",
        "service_events_daily",
        "request_facts",
        "service_events",
    }
    for name in ("request_metrics_minute", "request_metrics_hour", "service_events_daily"):
        files = sorted(layout.warehouse_table_dir(root, name).rglob("*.parquet"))
        assert files
        schema = pq.read_schema(files[0])
        expected = [(f.name, trino_of(f.type)) for f in schema]
        columns = tables[name]["columns"]
        assert columns[:-1] == expected  # file order, partition column last
        assert columns[-1] == ("event_day", "date")
        options = tables[name]["options"]
        assert options["format"] == "'PARQUET'"
        assert options["partitioned_by"] == "ARRAY['event_day']"
        location = Path(urlparse(options["external_location"].strip("'")).path)
        assert location == layout.warehouse_table_dir(root, name).resolve()
        assert {p.parent.name.split("=")[0] for p in files} == {"event_day"}
        assert all(p.parent.parent == location for p in files)
        assert f"CALL gravix.system.sync_partition_metadata('raw', '{name}', 'FULL');" in ddl
    assert "CREATE SCHEMA IF NOT EXISTS gravix.raw" in ddl


def test_raw_tables_declare_the_raw_columns_and_both_partition_levels(root: Path) -> None:
    tables = parse(trino_ddl(root))
    for topic in schema.TOPICS:
        columns = tables[topic]["columns"]
        assert [c for c, _ in columns] == [*RAW_COLUMNS[topic], "event_day", "hour"]
        assert tables[topic]["options"]["partitioned_by"] == "ARRAY['event_day', 'hour']"
        assert tables[topic]["options"]["format"] == "'JSON'"
        files = list(layout.raw_topic_dir(root, topic).rglob("*.jsonl"))
        assert files and all(
            f.parent.name.startswith("hour=") and f.parent.parent.name.startswith("event_day=")
            for f in files
        )


def test_location_prefix_replaces_the_data_root(root: Path) -> None:
    tables = parse(trino_ddl(root, location_prefix="s3://bucket/gravix/"))
    location = tables["request_metrics_minute"]["options"]["external_location"]
    assert location == "'s3://bucket/gravix/warehouse/request_metrics_minute'"
    assert str(root) not in trino_ddl(root, location_prefix="s3://bucket/gravix")
