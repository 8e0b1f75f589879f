"""Trino DDL for tables kept in an object store: parsed with sqlglot's Trino dialect, the
same tables and columns as for a data root, every location under the store URL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from gravix.errors import ConfigError
from gravix.query import trino_ddl, trino_store_ddl
from gravix.settings import StoreConfig, load_settings


def store(url: str) -> StoreConfig:
    """The store as settings parse it from ``--store`` (the one place that checks it)."""
    config = load_settings(store=url, environ={}).store
    assert config is not None
    return config


AREA = {
    "request_metrics_minute": "warehouse",
    "request_metrics_hour": "warehouse",
    "service_events_daily": "warehouse",
    "request_facts": "raw",
    "service_events": "raw",
}


def statements(ddl: str) -> tuple[dict[str, str], dict[str, list[str]], list[str]]:
    """Per table its external_location and column definitions; the schema locations."""
    locations: dict[str, str] = {}
    columns: dict[str, list[str]] = {}
    schemas: list[str] = []
    for statement in sqlglot.parse(ddl, read="trino"):
        assert statement is not None
        if isinstance(statement, exp.Command):
            continue
        assert isinstance(statement, exp.Create)
        props = {
            p.name.lower(): p.args["value"].name
            for p in statement.find_all(exp.Property)
            if isinstance(p.args.get("value"), exp.Literal)
        }
        location = statement.find(exp.LocationProperty)
        if statement.kind == "SCHEMA":
            assert location is not None
            schemas.append(location.this.name)
            continue
        table = statement.find(exp.Table)
        assert table is not None and (table.catalog, table.db) == ("gravix", "raw")
        locations[table.name] = props["external_location"]
        columns[table.name] = [c.sql("trino") for c in statement.find_all(exp.ColumnDef)]
    return locations, columns, schemas


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("s3://gravix-data/prod/eu", "s3://gravix-data/prod/eu"),
        ("s3://gravix-data/prod/eu/", "s3://gravix-data/prod/eu"),
        ("s3://gravix", "s3://gravix"),
        ("s3://gravix/", "s3://gravix"),
    ],
)
def test_every_location_is_under_the_store(url: str, root: str) -> None:
    locations, _, schemas = statements(trino_store_ddl(store(url)))
    assert locations == {table: f"{root}/{area}/{table}" for table, area in AREA.items()}
    assert schemas == [f"{root}/warehouse"]


def test_same_tables_and_columns_as_for_a_data_root(tmp_path: Path) -> None:
    _, local_columns, _ = statements(trino_ddl(tmp_path))
    _, store_columns, _ = statements(trino_store_ddl(store("s3://bucket/gravix")))
    assert store_columns == local_columns
    assert set(store_columns) == set(AREA)
    ddl = trino_store_ddl(store("s3://bucket/gravix"))
    for table in AREA:
        assert f"CALL gravix.system.sync_partition_metadata('raw', '{table}', 'FULL');" in ddl


def test_store_ddl_reads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "s3://bucket/p/warehouse/request_metrics_minute" in trino_store_ddl(
        store("s3://bucket/p")
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "/var/lib/gravix",
        "http://bucket/prefix",
        "s3a://bucket/prefix",
        "s3://Bucket/prefix",
        "s3://b/prefix",
        "s3://bucket_name/prefix",
        "s3://bucket..name/prefix",
        "s3://key:secret@bucket/prefix",
        "s3://bucket:9000/prefix",
        "s3://bucket/prefix?versionId=1",
        "s3://bucket/prefix#part",
        "s3://bucket/it's",
        "s3://bucket/a//b",
        "s3://bucket/a/../b",
        "s3://bucket/a/./b",
        "s3://bucket/a b",
        "s3://bucket/a=b",
        "s3:///prefix",
    ],
)
def test_a_bad_store_url_is_refused_with_a_hint(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        store(url)
    assert caught.value.hint and "s3://BUCKET" in caught.value.hint
    assert caught.value.exit_code == 2
