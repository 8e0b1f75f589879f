"""`gravix recover --store` (DESIGN §11) against moto's S3 server: what a crash leaves in a
store is found and repaired — a killed runner's lease is taken over and released; hours
whose Parquet object is missing, unreadable or disagrees with its manifest are rebuilt
from raw; hours with raw objects the rollup has not seen are left to the next rollup. The
dry run changes nothing; afterwards the store's tables equal a data root's rollup of the
same facts (read by DuckDB)."""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from typer.testing import CliRunner

from gravix import schema
from gravix.cli import app
from gravix.ops.recovery import run_recover
from gravix.ops.store_recovery import StoreRecoverReport
from gravix.rollup import run_rollup
from gravix.settings import load_settings
from gravix.storage import layout, lease
from gravix.storage.layout import Hour
from gravix.storage.lease import LeaseState
from gravix.storage.store import open_store
from rollup_facts import DAY1, generate
from s3util import MotoServer
from store_facts import NODE, download, put_facts, split_url, store_rollup, table_rows

MISSING, DIFFERS, LATE, GARBLED = (Hour(DAY1, h) for h in (9, 10, 11, 12))
TABLE = schema.REQUEST_METRICS_MINUTE


def _recover(url: str, root: Path, dry_run: bool) -> StoreRecoverReport:
    settings = load_settings(data_dir=root, store=url)
    report = run_recover(
        root=root,
        dry_run=dry_run,
        store=settings.store,
        node_id=NODE,
        lease_seconds=settings.lease_seconds,
    )
    assert isinstance(report, StoreRecoverReport)
    return report


def _hour_key(prefix: str, hour: Hour) -> str:
    root = Path("/")
    return f"{prefix}/{layout.object_key(root, layout.warehouse_hour_file(root, TABLE, hour))}"


def test_recover_on_a_store_repairs_what_a_crash_leaves_and_reports_the_rest(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    url, local, runner = s3_store_url, tmp_path / "local", tmp_path / "runner"
    local.mkdir()
    rng = random.Random(9)
    put_facts(moto, url, local, generate(rng, [MISSING, DIFFERS, LATE, GARBLED], 300),
              schema.REQUEST_FACTS)  # fmt: skip
    store_rollup(url, runner)
    bucket, prefix = split_url(url)
    client: Any = moto.client()
    # what crashes leave: a runner killed while holding the lease, ...
    then = time.time() - 600
    dead = LeaseState(2, "gone-host", 4242, "runner-9", "gravix rollup", then, then + 60)
    store = open_store(load_settings(data_dir=runner, store=url))
    assert store.create(layout.lease_key(lease.ROLLUP_LEASE, 2), dead.encode())
    # ... an hour object gone, one with other rows than its manifest, one garbled, ...
    client.delete_object(Bucket=bucket, Key=_hour_key(prefix, MISSING))
    body = client.get_object(Bucket=bucket, Key=_hour_key(prefix, DIFFERS))["Body"].read()
    one_row = io.BytesIO()
    pq.write_table(pq.read_table(io.BytesIO(body)).slice(0, 1), one_row)
    client.put_object(Bucket=bucket, Key=_hour_key(prefix, DIFFERS), Body=one_row.getvalue())
    client.put_object(Bucket=bucket, Key=_hour_key(prefix, GARBLED), Body=b"PAR1 not parquet")
    # ... and late raw objects no rollup has seen yet.
    put_facts(moto, url, local, generate(rng, [LATE], 40, prefix="late"), schema.REQUEST_FACTS)
    before = moto.objects(bucket, prefix)

    dry = _recover(url, runner, dry_run=True)
    assert moto.objects(bucket, prefix) == before
    assert dry.dead_lease is not None and dry.dead_lease.pid == 4242
    found = {(p.table, p.hour): p for p in dry.problems}
    assert set(found) == {(TABLE, MISSING), (TABLE, DIFFERS), (TABLE, GARBLED)}
    assert "missing" in found[TABLE, MISSING].problem
    assert (
        "records" in found[TABLE, DIFFERS].problem and "Parquet 1" in found[TABLE, DIFFERS].problem
    )
    assert "unreadable" in found[TABLE, GARBLED].problem
    assert dry.pending == {TABLE: [LATE]}

    done = _recover(url, runner, dry_run=False)
    assert done.lease_removed
    (rebuilt,) = done.rebuilt
    assert rebuilt["mode"] == "rebuild" and rebuilt["hours_built"] == 3
    objects = moto.objects(bucket, f"{prefix}/state/leases/")
    leases = {
        k.rsplit("/", 1)[-1]: json.loads(v) for k, v in objects.items() if not k.endswith("/")
    }
    assert (
        list(leases) == ["lease-000000000003.json"]
        and leases["lease-000000000003.json"]["released"]
    )
    again = _recover(url, runner, dry_run=True)
    assert again.problems == [] and again.dead_lease is None and again.pending == {TABLE: [LATE]}
    store_rollup(url, runner)  # the late facts: the next rollup
    run_rollup(root=local)
    copy = tmp_path / "copy"
    download(moto, url, copy, "warehouse/")
    assert table_rows(copy, TABLE) == table_rows(local, TABLE)


def test_recover_cli_on_a_store_dry_run_reports_as_json(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    args = ["recover", "--store", s3_store_url, "--data-dir", str(tmp_path), "--dry-run"]
    result = CliRunner().invoke(app, [*args, "--json"], env={"GRAVIX_STORE": ""})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["store"] == s3_store_url and doc["problems"] == [] and doc["dry_run"] is True
    refused = CliRunner().invoke(app, [*args, "--deep"], env={"GRAVIX_STORE": ""})
    assert refused.exit_code == 2 and "--store" in refused.output
