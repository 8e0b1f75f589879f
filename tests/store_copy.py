"""A data root's raw/ and warehouse/ copied into moto's S3 server as objects with the same
names (the layout's relative paths), for tests that compare a read of the store with a read
of the data root."""

from __future__ import annotations

from pathlib import Path

from gravix.settings import StoreConfig, load_settings
from gravix.storage import layout
from gravix.storage.s3 import S3Store
from s3util import MotoServer

BUCKET = "gravix-read"
PREFIX = "team/metrics"
URL = f"s3://{BUCKET}/{PREFIX}"


def store_config(moto: MotoServer, url: str = URL) -> StoreConfig:
    config = load_settings(store=url, environ=moto.env()).store
    assert config is not None
    return config


def copy_areas(root: Path, moto: MotoServer, url: str = URL) -> list[str]:
    """Write every file under ``root``'s raw/ and warehouse/ into the store at ``url`` as
    the object of the same relative name; returns the names written."""
    store = S3Store(store_config(moto, url))
    written = []
    for area in (layout.raw_root(root), layout.warehouse_root(root)):
        for path in sorted(p for p in area.rglob("*") if p.is_file()):
            key = layout.object_key(root, path)
            store.write(key, path.read_bytes())
            written.append(key)
    return written
