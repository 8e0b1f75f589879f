"""Rollup on an object store (DESIGN §11) against moto's S3 server on loopback: the same
raw facts rolled up under a data root and in the store give the same tables, row for row
(read by DuckDB), under the same object names; late facts rebuild exactly their hour.

The store's content is put and read back with boto3, independently of Gravix's store code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from gravix import schema
from gravix.rollup import run_rollup
from gravix.rollup.executor import LocalExecutor
from gravix.storage import layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, DAY2, generate
from s3util import MotoServer
from store_facts import (
    download,
    events,
    local_files,
    put_facts,
    split_url,
    store_rollup,
    table_rows,
)

HOURS = [Hour(DAY1, 9), Hour(DAY1, 10), Hour(DAY1, 23), Hour(DAY2, 0)]


@pytest.fixture(params=["inline", "pool"])
def both(
    request: pytest.FixtureRequest, s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> tuple[str, Path, Path]:
    """The same facts in a store and under a data root, each rolled up once (the store's
    hours built in this process, or by a pool of two worker processes)."""
    local = tmp_path / "local"
    node = tmp_path / "runner"
    local.mkdir()
    rng = random.Random(11)
    put_facts(moto, s3_store_url, local, generate(rng, HOURS, 400), schema.REQUEST_FACTS)
    put_facts(moto, s3_store_url, local, events(rng, HOURS, 30), schema.SERVICE_EVENTS)
    assert run_rollup(root=local).facts > 0
    pool = LocalExecutor(2, min_bytes=0) if request.param == "pool" else None
    summary = store_rollup(s3_store_url, node, executor=pool)
    assert summary.hours_built == 2 * len(HOURS)
    return s3_store_url, local, node


def test_store_tables_equal_the_data_roots_row_for_row_under_the_same_names(
    both: tuple[str, Path, Path], moto: MotoServer, tmp_path: Path
) -> None:
    url, local, _node = both
    copy = tmp_path / "copy"
    objects = download(moto, url, copy)
    assert {n for n in objects if n.startswith("warehouse/")} == local_files(local, "warehouse")
    manifests = {n for n in objects if n.startswith("state/rollup/") and n.endswith(".json")}
    assert manifests == {n for n in local_files(local, "state/rollup") if n.endswith(".json")}
    for table in schema.WAREHOUSE_TABLES:
        rows = table_rows(copy, table)
        assert rows and rows == table_rows(local, table), table
    # the runs log is in the store, not on the runner's disk; no work directory is left
    assert "state/rollup/runs.jsonl" in objects
    assert not list(layout.store_work_dir(both[2]).glob("*"))


def test_late_facts_rebuild_exactly_their_hour_in_the_store(
    both: tuple[str, Path, Path], moto: MotoServer, tmp_path: Path
) -> None:
    url, local, node = both
    bucket, prefix = split_url(url)
    client: Any = moto.client()
    before = {
        k: client.head_object(Bucket=bucket, Key=k)["ETag"]
        for k in moto.objects(bucket, f"{prefix}/warehouse/")
    }
    late = generate(random.Random(3), [HOURS[1]], 50, prefix="late")
    put_facts(moto, url, local, late, schema.REQUEST_FACTS)
    summary = store_rollup(url, node)
    assert [(h.table, h.hour, h.reason) for h in summary.hours] == [
        (schema.REQUEST_METRICS_MINUTE, HOURS[1], "changed")
    ]
    after = {
        k: client.head_object(Bucket=bucket, Key=k)["ETag"]
        for k in moto.objects(bucket, f"{prefix}/warehouse/")
    }
    changed = {k.removeprefix(prefix + "/") for k in after if after[k] != before.get(k)}
    outputs = schema.TABLE_OUTPUTS[schema.REQUEST_METRICS_MINUTE]  # the minute and hour tables
    hour_files = [layout.warehouse_hour_file(local, table, HOURS[1]) for table in outputs]
    assert changed == {layout.object_key(local, path) for path in hour_files}
    run_rollup(root=local)
    copy = tmp_path / "copy"
    download(moto, url, copy, "warehouse/")
    for table in outputs:
        assert table_rows(copy, table) == table_rows(local, table), table
    assert store_rollup(url, node).nothing_to_do


def test_window_on_the_store_rebuilds_the_hours_it_touches(
    both: tuple[str, Path, Path],
) -> None:
    url, _local, node = both
    summary = store_rollup(
        url, node, start="2026-02-16T10:30:00Z", end="2026-02-16T11:00:00Z", tables="all"
    )
    assert summary.widened
    assert {(h.table, h.hour) for h in summary.hours} >= {(schema.REQUEST_METRICS_MINUTE, HOURS[1])}
    assert {h.hour for h in summary.hours if h.table == schema.REQUEST_METRICS_MINUTE} == {HOURS[1]}


def test_an_hour_rebuilt_without_rows_loses_its_object_as_it_loses_its_file(
    both: tuple[str, Path, Path], moto: MotoServer, tmp_path: Path
) -> None:
    """Every raw line of one hour replaced by a damaged one: the rebuilt hour has no rows,
    and its old Parquet object goes, as its file goes under a data root."""
    url, local, node = both
    bucket, prefix = split_url(url)
    client: Any = moto.client()
    hour_dir = layout.raw_hour_dir(local, schema.REQUEST_FACTS, HOURS[2])
    for path in layout.raw_files(hour_dir):
        path.write_bytes(b"not a fact\n")
        client.put_object(
            Bucket=bucket, Key=f"{prefix}/{layout.object_key(local, path)}", Body=b"not a fact\n"
        )
    files = layout.raw_files(hour_dir)
    (result,) = store_rollup(url, node).hours
    assert (result.hour, result.rows, result.bad_lines) == (HOURS[2], 0, len(files))
    run_rollup(root=local)
    hour_file = layout.warehouse_hour_file(local, schema.REQUEST_METRICS_MINUTE, HOURS[2])
    assert not hour_file.exists()
    copy = tmp_path / "copy"
    names = download(moto, url, copy, "warehouse/")
    assert layout.object_key(local, hour_file) not in names
    assert set(names) == local_files(local, "warehouse")
    assert table_rows(copy, schema.REQUEST_METRICS_MINUTE) == table_rows(
        local, schema.REQUEST_METRICS_MINUTE
    )


def test_an_hour_object_lost_after_retention_is_summed_from_its_minutes_on_the_store(
    both: tuple[str, Path, Path], moto: MotoServer, tmp_path: Path
) -> None:
    """Raw facts of one hour removed (retention), then that hour's request_metrics_hour
    object lost: the next rollup builds it again from the minute rows, on the store as on a
    data root, and the minute rows stay."""
    url, local, node = both
    bucket, prefix = split_url(url)
    client: Any = moto.client()
    hour = HOURS[0]
    for path in layout.raw_files(layout.raw_hour_dir(local, schema.REQUEST_FACTS, hour)):
        client.delete_object(Bucket=bucket, Key=f"{prefix}/{layout.object_key(local, path)}")
        path.unlink()
    assert {h.reason for h in store_rollup(url, node).hours} == {"removed"}
    assert {h.reason for h in run_rollup(root=local).hours} == {"removed"}
    lost = layout.warehouse_hour_file(local, schema.REQUEST_METRICS_HOUR, hour)
    client.delete_object(Bucket=bucket, Key=f"{prefix}/{layout.object_key(local, lost)}")
    lost.unlink()
    assert [(h.hour, h.reason) for h in store_rollup(url, node).hours] == [(hour, "missing")]
    assert [(h.hour, h.reason) for h in run_rollup(root=local).hours] == [(hour, "missing")]
    copy = tmp_path / "copy"
    download(moto, url, copy, "warehouse/")
    for table in schema.TABLE_OUTPUTS[schema.REQUEST_METRICS_MINUTE]:
        rows = table_rows(copy, table)
        assert any(row[0].hour == hour.hour for row in rows), table  # the hour's rows are there
        assert rows == table_rows(local, table), table
