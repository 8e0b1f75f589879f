"""Raw facts in a store on moto's S3 server and the same files under a data root, for the
tests of rollup, cleanup and recover on a store (DESIGN §11). The store is written and
read back with boto3, independently of Gravix's store code."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from gravix.rollup import run_rollup
from gravix.settings import load_settings
from gravix.storage import layout
from gravix.storage.layout import Hour
from rollup_facts import Facts, event_line
from s3util import MotoServer

NODE = "node-1"


def split_url(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix


def put_facts(moto: MotoServer, url: str, root: Path, facts: Facts, topic: str) -> None:
    """The same raw lines as an ingest node's objects in the store and as files under a
    data root, under the same names (``<node>-<id>.jsonl``)."""
    bucket, prefix = split_url(url)
    client: Any = moto.client()
    for hour, files in facts.lines.items():
        for file_id, lines in files.items():
            body = b"".join(line + b"\n" for line in lines)
            name = layout.raw_object_key(topic, hour, NODE, file_id)
            client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=body)
            path = layout.object_path(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)


def download(moto: MotoServer, url: str, into: Path, area: str = "") -> dict[str, bytes]:
    """Every object of the store (under ``area``) written into ``into`` by its name."""
    bucket, prefix = split_url(url)
    objects = {
        k.removeprefix(prefix + "/"): v
        for k, v in moto.objects(bucket, f"{prefix}/{area}").items()
        if not k.endswith("/")  # pyarrow's marker of an emptied "directory"
    }
    for name, body in objects.items():
        path = into.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return objects


def local_files(root: Path, area: str) -> set[str]:
    return {
        "/".join(p.relative_to(root).parts)
        for p in (root / area).rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def table_rows(root: Path, table: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = layout.warehouse_glob(root, table)
    return con.execute(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY ALL"
    ).fetchall()


def events(rng: random.Random, hours: list[Hour], per_hour: int) -> Facts:
    out = Facts()
    for hour in hours:
        for _ in range(per_hour):
            moment = hour.start + timedelta(milliseconds=rng.randrange(3_600_000))
            line = event_line(rng, moment, rng.choice(("deploy_started", "restart")))
            out.add(hour, f"e{rng.randrange(2):03d}", line)
    return out


def store_rollup(url: str, root: Path, **kwargs: Any) -> Any:
    settings = load_settings(data_dir=root, store=url)
    return run_rollup(
        root=root,
        store=settings.store,
        node_id=NODE,
        lease_seconds=settings.lease_seconds,
        **kwargs,
    )
