"""Cleanup on an object store (DESIGN §11) against moto's S3 server: the same days in a
store and under a data root, rolled up in each; cleanup plans the same partitions (its dry
run changes nothing) and leaves the same days, the same raw objects and manifests, and the
same warehouse rows (read by DuckDB). Only the local side compacts its closed days."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gravix import schema
from gravix.cli import app
from gravix.ops.retention import run_cleanup
from gravix.rollup import run_rollup
from gravix.settings import load_settings
from gravix.storage.layout import Hour
from rollup_facts import generate
from s3util import MotoServer
from store_facts import (
    NODE,
    download,
    events,
    local_files,
    put_facts,
    split_url,
    store_rollup,
    table_rows,
)

TODAY = date(2026, 3, 30)
AGES = (45, 30, 10, 1)
DAYS, WAREHOUSE_DAYS = 20, 36


def _hours() -> list[Hour]:
    return [Hour(TODAY - timedelta(days=age), h) for age in AGES for h in (4, 17)]


def _kept(objects: set[str], area: str) -> set[str]:
    return {n for n in objects if n.startswith(area) and not n.endswith("runs.jsonl")}


def _store_cleanup(url: str, root: Path, dry_run: bool) -> Any:
    settings = load_settings(data_dir=root, store=url)
    return run_cleanup(
        root=root,
        days=DAYS,
        warehouse_days=WAREHOUSE_DAYS,
        dry_run=dry_run,
        today=TODAY,
        store=settings.store,
        node_id=NODE,
        lease_seconds=settings.lease_seconds,
    )


def test_cleanup_on_a_store_removes_the_same_days_as_on_a_data_root(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    url, local, runner = s3_store_url, tmp_path / "local", tmp_path / "runner"
    local.mkdir()
    rng = random.Random(5)
    put_facts(moto, url, local, generate(rng, _hours(), 60), schema.REQUEST_FACTS)
    put_facts(moto, url, local, events(rng, _hours(), 5), schema.SERVICE_EVENTS)
    run_rollup(root=local)
    store_rollup(url, runner)
    bucket, prefix = split_url(url)
    before = set(moto.objects(bucket, prefix))

    planned = _store_cleanup(url, runner, dry_run=True)
    local_plan = run_cleanup(
        root=local, days=DAYS, warehouse_days=WAREHOUSE_DAYS, dry_run=True, today=TODAY
    )
    assert set(moto.objects(bucket, prefix)) == before  # the dry run changed nothing

    def shape(report: Any) -> dict[str, Any]:
        return {k: (v["partitions"], v["files"], v["days"]) for k, v in report.tables().items()}

    assert shape(planned) == shape(local_plan)
    assert planned.tables()["raw.request_facts"] == local_plan.tables()["raw.request_facts"]
    old = str(TODAY - timedelta(days=45))
    assert old in planned.tables()["warehouse.request_metrics_minute"]["days"]

    done = _store_cleanup(url, runner, dry_run=False)
    run_cleanup(root=local, days=DAYS, warehouse_days=WAREHOUSE_DAYS, today=TODAY)
    assert done.deleted_files == planned.files > 0
    copy = tmp_path / "copy"
    left = set(download(moto, url, copy))
    for area in ("raw/", "state/rollup/"):
        assert _kept(left, area) == _kept(local_files(local, area.rstrip("/")), area), area
    for table in schema.WAREHOUSE_TABLES:
        assert table_rows(copy, table) == table_rows(local, table), table
    days = {r[-1] for r in table_rows(copy, schema.REQUEST_METRICS_MINUTE)}
    assert {str(d) for d in days} == {str(TODAY - timedelta(days=a)) for a in (30, 10, 1)}
    # an incremental rollup afterwards keeps the rows whose raw facts are gone
    assert {h.reason for h in store_rollup(url, runner).hours} == {"removed"}
    after = tmp_path / "after"
    download(moto, url, after, "warehouse/")
    for table in schema.WAREHOUSE_TABLES:
        assert table_rows(after, table) == table_rows(copy, table), table


def test_cleanup_cli_takes_a_store_and_says_it_does_not_compact_there(
    s3_store_url: str, tmp_path: Path
) -> None:
    args = ["cleanup", "--store", s3_store_url, "--data-dir", str(tmp_path / "none")]
    result = CliRunner().invoke(app, [*args, "--dry-run"], env={"GRAVIX_STORE": ""})
    assert result.exit_code == 0, result.output
    assert s3_store_url in result.output
    assert "not compacted on a store" in result.output
    assert "No files were changed." in result.output
    assert not (tmp_path / "none").exists()
