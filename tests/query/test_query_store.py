"""`gravix query --store s3://…` (DESIGN §11): a data root rolled up locally, its raw/ and
warehouse/ files copied into moto's S3 server as objects of the same names, and every
preset, every output format, SQL over the warehouse and raw tables answer exactly as they
do on the data root; the counts agree with DuckDB reading the local files. Listing asks the
store for the partitions a window needs only; an unreachable store is one error with a hint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gravix import schema
from gravix.cli import app
from gravix.errors import StoreError
from gravix.query.source import StoreRoot
from gravix.query.tables import table_files
from gravix.storage import layout
from gravix.storage.s3 import S3Store
from gravix.tools.serverproc import free_port
from query.test_query_support import build_warehouse, duck, duck_sources, populate
from s3util import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, moto_server
from store_copy import BUCKET, URL, copy_areas, store_config

ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_STORE": "", "GRAVIX_CONSOLE_WIDTH": "200", "NO_COLOR": "1"}
WINDOW = ["--since", "2026-02-16T08:00:00Z", "--until", "2026-02-16T12:00:00Z"]
PRESETS = {
    "health": ["--service", "frontend", "--step", "15"],
    "health-all": ["--step", "60"],
    "top-endpoints": ["--limit", "4"],
    "endpoint": ["--service", "frontend", "--endpoint", "/checkout", "--method", "POST"],
    "apdex": ["--threshold", "50", "--by-endpoint"],
    "deploy": ["--service", "frontend", "--window", "20"],
}
SQL = [
    "SELECT service, sum(request_count) AS n, sum(error_count) AS e FROM request_metrics_minute "
    "GROUP BY service ORDER BY service",
    # pruned by the time column and by the partition column
    "SELECT bucket_start, method, path_template, request_count, p99_latency_ms, lat_idx "
    "FROM gravix.raw.request_metrics_minute WHERE bucket_start >= TIMESTAMP '2026-02-16 09:30:00' "
    "AND bucket_start < TIMESTAMP '2026-02-16 10:15:00' AND service = 'frontend' "
    "ORDER BY bucket_start, method, path_template",
    "SELECT event_day, count(*) AS c FROM request_metrics_minute WHERE event_day = '2026-02-16' "
    "GROUP BY event_day",
    "SELECT * FROM service_events_daily ORDER BY service, event_type",
    # raw tables, with a damaged line that both skip and count
    "SELECT service, status_code, count(DISTINCT event_id) AS n FROM request_facts "
    "WHERE event_time >= '2026-02-16T10:00:00Z' AND event_time < '2026-02-16T11:00:00Z' "
    "GROUP BY service, status_code ORDER BY service, status_code",
    "SELECT event_time, service, event_type, entity_id FROM raw.service_events ORDER BY event_time",
    "SELECT f.service, count(*) AS n FROM request_facts f JOIN service_events e "
    "ON f.service = e.service GROUP BY f.service ORDER BY f.service",
]
FORMATS = ["table", "csv", "json", "ndjson"]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> Path:
    data = tmp_path_factory.mktemp("store-read") / "data"
    populate(data, minutes=240)
    hour = layout.Hour(datetime(2026, 2, 16, 10, tzinfo=UTC).date(), 10)
    damaged = layout.raw_file_path(data, schema.REQUEST_FACTS, hour, "9999-damaged")
    damaged.write_bytes(b'{"event_id": "not a fact"}\n\x00\x00\x00\n')
    build_warehouse(data)
    assert copy_areas(data, moto)
    return data


def run(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, ["query", *args], env={**ENV, **env})


def both(root: Path, moto: MotoServer, args: list[str]) -> tuple[Any, Any]:
    empty = root.parent / "no-local-data"
    local = run([*args, "--data-dir", str(root)], {})
    stored = run([*args, "--data-dir", str(empty), "--store", URL], moto.env())
    assert local.exit_code == 0, local.output
    assert stored.exit_code == 0, stored.output
    assert not empty.exists()  # the store's reader touches no data root
    return local, stored


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_answers_from_the_store_as_from_the_data_root(
    root: Path, moto: MotoServer, name: str
) -> None:
    args = ["--preset", name.removesuffix("-all"), *PRESETS[name], *WINDOW, "--json"]
    local, stored = both(root, moto, args)
    document = json.loads(stored.stdout)
    assert document == json.loads(local.stdout)
    assert document.get("rows") or document.get("endpoints")


@pytest.mark.parametrize("sql", SQL)
def test_sql_answers_from_the_store_as_from_the_data_root(
    root: Path, moto: MotoServer, sql: str
) -> None:
    local, stored = both(root, moto, [sql, "--json"])
    document = json.loads(stored.stdout)
    assert document == json.loads(local.stdout)
    assert document["row_count"] > 0


def test_the_damaged_raw_line_is_skipped_and_counted_on_the_store_too(
    root: Path, moto: MotoServer
) -> None:
    sql = "SELECT count(*) AS n FROM request_facts"
    local, stored = both(root, moto, [sql, "--json"])
    document = json.loads(stored.stdout)
    assert document["skipped_lines"] == {"request_facts": 2}
    assert document == json.loads(local.stdout)
    files = duck_sources(root)["request_facts"].replace(
        "format='newline_delimited'", "format='newline_delimited', ignore_errors=true"
    )
    total = duck().execute(f"SELECT count(*) FROM {files} WHERE service IS NOT NULL").fetchone()
    assert document["rows"] == [{"n": total[0]}]


def test_the_warehouse_on_the_store_counts_what_duckdb_counts_in_raw(
    root: Path, moto: MotoServer
) -> None:
    sql = "SELECT sum(request_count) AS n FROM request_metrics_minute"
    _, stored = both(root, moto, [sql, "--json"])
    facts = duck_sources(root)["request_facts"].replace(
        "format='newline_delimited'", "format='newline_delimited', ignore_errors=true"
    )
    reference = duck().execute(
        f"SELECT count(DISTINCT event_id) FROM {facts} WHERE service IS NOT NULL"
    )
    assert json.loads(stored.stdout)["rows"] == [{"n": reference.fetchone()[0]}]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_prints_the_same_bytes(root: Path, moto: MotoServer, fmt: str) -> None:
    local, stored = both(root, moto, [SQL[1], "--format", fmt])
    assert stored.stdout == local.stdout and stored.stdout.strip()


def test_parquet_output_holds_the_same_table(root: Path, moto: MotoServer, tmp_path: Path) -> None:
    out = {side: tmp_path / f"{side}.parquet" for side in ("local", "store")}
    empty = str(tmp_path / "none")
    args = [SQL[1], "--format", "parquet", "--output"]
    assert run([*args, str(out["local"]), "--data-dir", str(root)], {}).exit_code == 0
    stored = run([*args, str(out["store"]), "--data-dir", empty, "--store", URL], moto.env())
    assert stored.exit_code == 0, stored.output
    table = pq.read_table(out["store"])
    assert table.num_rows > 0 and table.equals(pq.read_table(out["local"]))


def test_a_window_lists_only_the_partitions_it_needs(root: Path, moto: MotoServer) -> None:
    listed: list[str] = []

    class Recording(S3Store):
        def list(self, prefix: str) -> list[Any]:
            listed.append(prefix)
            return super().list(prefix)

    source = StoreRoot(Recording(store_config(moto)))
    start, end = datetime(2026, 2, 16, 9, 30, tzinfo=UTC), datetime(2026, 2, 16, 10, 30, tzinfo=UTC)
    raw = table_files(source, schema.REQUEST_FACTS, start=start, end=end)
    assert listed == [
        "raw/request_facts/event_day=2026-02-16/hour=09/",
        "raw/request_facts/event_day=2026-02-16/hour=10/",
    ]
    local = table_files(root, schema.REQUEST_FACTS, start=start, end=end)
    assert [u.removeprefix(f"{URL}/") for u in raw] == [
        layout.object_key(root, Path(p)) for p in local
    ]
    listed.clear()
    metrics = table_files(source, schema.REQUEST_METRICS_MINUTE, start=start, end=end)
    assert listed == ["warehouse/request_metrics_minute/event_day=2026-02-16/"]
    assert [u.rsplit("/", 1)[1] for u in metrics] == ["part-09.parquet", "part-10.parquet"]
    listed.clear()
    later = datetime(2026, 3, 1, tzinfo=UTC)
    assert table_files(source, schema.REQUEST_METRICS_MINUTE, start=later) == []
    assert listed == []  # no day of the window exists: nothing but the days is listed


def test_user_sql_cannot_read_the_stores_objects_by_url(root: Path, moto: MotoServer) -> None:
    key = layout.object_key(root, Path(table_files(root, schema.REQUEST_METRICS_MINUTE)[0]))
    for sql in (
        f"SELECT * FROM read_parquet('{URL}/{key}')",
        f"SELECT * FROM '{URL}/{key}'",
        f'SELECT count(*) FROM (SELECT * FROM "{URL}/{key}")',
    ):
        result = run([sql, "--store", URL, "--data-dir", str(root), "--json"], moto.env())
        assert result.exit_code == 2, (sql, result.output)
        assert json.loads(result.stdout)["error"]


def test_an_unreachable_store_is_one_error_with_a_hint(tmp_path: Path) -> None:
    gone = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    }
    for args in (
        ["SELECT count(*) FROM request_metrics_minute"],
        ["--preset", "health", *WINDOW],
    ):
        result = run([*args, "--store", URL, "--data-dir", str(tmp_path / "d"), "--json"], gone)
        assert result.exit_code == StoreError.exit_code, result.output
        document = json.loads(result.stdout)
        assert URL in document["error"] and "reachable" in document["hint"]
        assert document["code"] == StoreError.exit_code
        assert "Traceback" not in result.output


def test_a_damaged_object_is_named_in_the_error(root: Path, moto: MotoServer) -> None:
    url = f"s3://{BUCKET}/damaged"
    copy_areas(root, moto, url)
    store = S3Store(store_config(moto, url))
    key = layout.object_key(root, Path(table_files(root, schema.REQUEST_METRICS_MINUTE)[2]))
    good = store.read(key)
    store.write(key, good[:4] + bytes(len(good) - 8) + good[-4:])  # footer kept, pages zeroed
    sql = "SELECT sum(request_count) FROM request_metrics_minute"
    result = run([sql, "--store", url, "--data-dir", str(root), "--json"], moto.env())
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert "damaged" in document["error"] and f"{url}/{key}" in document["error"]
    assert "gravix recover" in document["hint"]
