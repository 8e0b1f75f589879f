"""The whole path on a store (DESIGN §11), end to end: the same raw facts in moto's S3 server
and under a data root; `gravix rollup --store` builds the store's warehouse and `gravix
rollup` the data root's; then every preset and the SQL of tests/query/test_query_store.py
answer alike from `gravix query --store` and from `gravix query --data-dir`.

tests/query/test_query_store.py reads a warehouse copied into the store, and
tests/rollup/test_rollup_store.py compares the two warehouses file by file: this test
joins them, so a difference that only the store's own rollup makes would show here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix.cli import app
from gravix.settings import load_settings
from gravix.storage import layout
from gravix.storage.s3 import S3Store
from query.test_query_store import ENV, PRESETS, SQL, WINDOW
from query.test_query_support import populate
from s3util import MotoServer, moto_server

BUCKET = "gravix-end-to-end"
URL = f"s3://{BUCKET}/metrics"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> tuple[Path, Path]:
    """The data root (rolled up on its disk) and the store runner's own data root."""
    base = tmp_path_factory.mktemp("store-end-to-end")
    data, runner = base / "data", base / "runner"
    populate(data, minutes=240)
    store = S3Store(_config(moto))
    raw = sorted(p for p in layout.raw_root(data).rglob("*") if p.is_file())
    for path in raw:  # only raw: the store's warehouse is the store's rollup's
        store.write(layout.object_key(data, path), path.read_bytes())
    local = _gravix(["rollup", "--data-dir", str(data), "--json"], {})
    stored = _gravix(["rollup", "--data-dir", str(runner), "--store", URL, "--json"], moto.env())
    assert local["hours_built"] == stored["hours_built"] > 0
    assert local["facts"] == stored["facts"] > 0
    return data, runner


def _config(moto: MotoServer) -> Any:
    return load_settings(store=URL, environ=moto.env()).store


def _gravix(args: list[str], env: dict[str, str]) -> Any:
    result = CliRunner().invoke(app, args, env={**ENV, **env})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _both(roots: tuple[Path, Path], moto: MotoServer, args: list[str]) -> tuple[Any, Any]:
    data, runner = roots
    local = _gravix(["query", *args, "--data-dir", str(data)], {})
    stored = _gravix(["query", *args, "--data-dir", str(runner), "--store", URL], moto.env())
    return local, stored


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_over_the_stores_own_rollup_answer_as_over_the_data_root(
    roots: tuple[Path, Path], moto: MotoServer, name: str
) -> None:
    args = ["--preset", name.removesuffix("-all"), *PRESETS[name], *WINDOW, "--json"]
    local, stored = _both(roots, moto, args)
    assert stored == local
    assert stored.get("rows") or stored.get("endpoints")


@pytest.mark.parametrize("sql", SQL[:4])
def test_warehouse_sql_over_the_stores_own_rollup_answers_as_over_the_data_root(
    roots: tuple[Path, Path], moto: MotoServer, sql: str
) -> None:
    local, stored = _both(roots, moto, [sql, "--json"])
    assert stored == local
    assert stored["row_count"] > 0
