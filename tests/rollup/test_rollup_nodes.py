"""Duplicate delivery across ingest nodes (DESIGN §11): a client whose batch was stored by
one node but not acknowledged (a timeout) sends it again to another node, so the store's
raw holds the same events under two node names. The rollup de-duplicates by ``event_id``
within the hour, so the warehouse counts each event once (DuckDB is the reference)."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import duckdb

from gravix import schema
from gravix.rollup import run_rollup
from gravix.storage import layout
from gravix.storage.layout import Hour
from gravix.storage.store import LocalStore
from gravix.storage.upload import upload_sealed
from rollup_facts import DAY1, fact_line

HOURS = [Hour(DAY1, 10), Hour(DAY1, 11)]


def _seal(node_root: Path, lines: list[bytes]) -> Path:
    """A sealed buffer file on a node's own disk, as its rotation leaves it."""
    path = layout.sealed_path(node_root, schema.REQUEST_FACTS, layout.new_file_id())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_an_event_uploaded_by_two_nodes_is_counted_once_in_the_warehouse(tmp_path: Path) -> None:
    rng = random.Random(19)
    lines = [
        fact_line(rng, hour.start + timedelta(milliseconds=rng.randrange(3_600_000)))
        for hour in HOURS
        for _ in range(400)
    ]
    rng.shuffle(lines)  # live traffic: each sealed file spans both hours
    retried = lines[100:300]  # stored by node-1, unanswered, sent again to node-2
    store_root = tmp_path / "store"
    store = LocalStore(store_root)
    uploads = {
        "node-1": _seal(tmp_path / "node-1", lines[:300]),
        "node-2": _seal(tmp_path / "node-2", retried + lines[300:]),
    }
    for node, sealed in uploads.items():
        report = upload_sealed(store, node, tmp_path / node, schema.REQUEST_FACTS, sealed)
        assert report is not None and len(report.objects) == 2  # one object per event hour

    names = {p.name[:6] for p in store_root.joinpath("raw").rglob("*.jsonl")}
    assert names == {"node-1", "node-2"}

    summary = run_rollup(root=store_root)
    assert summary.duplicates == len(retried)

    glob_raw = layout.raw_glob(store_root, schema.REQUEST_FACTS)
    glob_pq = layout.warehouse_glob(store_root, schema.REQUEST_METRICS_MINUTE)
    con = duckdb.connect()
    stored_lines, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT event_id) FROM read_json('{glob_raw}', "
        "format = 'newline_delimited')"
    ).fetchone() or (0, 0)
    (counted,) = con.execute(
        f"SELECT sum(request_count) FROM read_parquet('{glob_pq}', hive_partitioning = true)"
    ).fetchone() or (0,)
    assert stored_lines == len(lines) + len(retried)
    assert counted == distinct == len(lines)
