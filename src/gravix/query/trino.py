"""Trino DDL for the same files: the path for users who outgrow one machine.

The statements declare the tables of the ``gravix`` catalog's ``raw`` schema (the names the
runbook queries) over the data root, columns in file order with the Hive partition columns
last, as Trino's Hive connector requires. With an object store (DESIGN §11) the same
statements point at ``s3://bucket/prefix/warehouse/…`` and ``…/raw/…`` instead.
"""

from __future__ import annotations

from pathlib import Path

from gravix.errors import ConfigError, QueryError
from gravix.query.tables import TABLES
from gravix.schema.columns import trino_type
from gravix.settings import StoreConfig
from gravix.storage import layout

CATALOG = "gravix"
SCHEMA = "raw"
# Raw event times stay text: Trino's JSON reader does not parse RFC 3339 with a zone.
_RAW_TEXT_COLUMNS = {"event_time"}
_PARTITION_TYPES = {"event_day": "date", "hour": "varchar"}
# Stand-in root for a store: the layout builds the relative paths under it.
_STORE_ROOT = Path("/")


def _column_type(kind: str, column: str, logical: str) -> str:
    return "varchar" if kind == "raw" and column in _RAW_TEXT_COLUMNS else trino_type(logical)


def _location(root: Path, path: Path, prefix: str | None) -> str:
    relative = path.relative_to(root).as_posix()
    if prefix:
        return f"{prefix.rstrip('/')}/{relative}"
    return (root.resolve() / relative).as_uri()


def trino_ddl(root: Path, *, location_prefix: str | None = None) -> str:
    """CREATE SCHEMA / CREATE TABLE statements and partition syncs for every table."""
    if location_prefix is not None and "'" in location_prefix:
        raise QueryError("--location-prefix must not contain a quote")
    root = Path(root)
    out = [
        f"CREATE SCHEMA IF NOT EXISTS {CATALOG}.{SCHEMA}\n"
        f"WITH (location = '{_location(root, layout.warehouse_root(root), location_prefix)}');",
    ]
    syncs: list[str] = []
    for name, info in TABLES.items():
        if info.kind == "warehouse":
            where, fmt = layout.warehouse_table_dir(root, name), "PARQUET"
        else:
            where, fmt = layout.raw_topic_dir(root, name), "JSON"
        columns = [
            f"  {column} {_column_type(info.kind, column, logical)}"
            for column, logical in info.columns.items()
        ]
        columns += [f"  {p} {_PARTITION_TYPES[p]}" for p in info.partitions]
        partitioned = ", ".join(f"'{p}'" for p in info.partitions)
        out.append(
            f"CREATE TABLE IF NOT EXISTS {CATALOG}.{SCHEMA}.{name} (\n"
            + ",\n".join(columns)
            + "\n)\nWITH (\n"
            f"  external_location = '{_location(root, where, location_prefix)}',\n"
            f"  format = '{fmt}',\n"
            f"  partitioned_by = ARRAY[{partitioned}]\n);"
        )
        syncs.append(
            f"CALL {CATALOG}.system.sync_partition_metadata('{SCHEMA}', '{name}', 'FULL');"
        )
    return "\n\n".join(out + syncs) + "\n"


def trino_store_ddl(store: StoreConfig) -> str:
    """The statements of :func:`trino_ddl` for the tables kept in an object store, with
    every location under the store's URL (checked by :mod:`gravix.settings`); reads
    nothing."""
    return trino_ddl(_STORE_ROOT, location_prefix=store.url)


def trino_ddl_for(
    root: Path, *, store: StoreConfig | None = None, location_prefix: str | None = None
) -> str:
    """The DDL for wherever the tables live: the object store when there is one (DESIGN
    §11), else the data root (or ``location_prefix``, where its files are mounted)."""
    if store is None:
        return trino_ddl(root, location_prefix=location_prefix)
    if location_prefix is not None:
        raise ConfigError(
            f"--location-prefix would do nothing beside the store {store.url}",
            hint="with --store (or GRAVIX_STORE) every location is under the store URL; "
            "give --location-prefix only for a data root",
        )
    return trino_store_ddl(store)
