"""`gravix query --ddl trino --store s3://…` prints Trino DDL whose every location is under
the store (DESIGN §11), reading and writing nothing; a bad store URL is a usage error with a
hint; SQL and presets take the same store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix.cli import app
from query.test_query_ddl_store import AREA, statements

ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_STORE": "", "GRAVIX_CONSOLE_WIDTH": "200", "NO_COLOR": "1"}
STORE = "s3://gravix-data/prod/eu"


def invoke(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    root = ["--data-dir", str(tmp_path / "data")]
    return CliRunner().invoke(app, ["query", *args, *root], env={**ENV, **(env or {})})


@pytest.mark.parametrize("via_env", [False, True], ids=["flag", "env"])
def test_store_ddl_parses_as_trino_and_every_location_is_under_the_store(
    tmp_path: Path, via_env: bool
) -> None:
    if via_env:
        result = invoke(tmp_path, "--ddl", "trino", env={"GRAVIX_STORE": STORE + "/"})
    else:
        result = invoke(tmp_path, "--ddl", "trino", "--store", STORE)
    assert result.exit_code == 0, result.output
    locations, columns, schemas = statements(result.stdout)
    assert locations == {table: f"{STORE}/{area}/{table}" for table, area in AREA.items()}
    assert schemas == [f"{STORE}/warehouse"]
    assert all(columns[table] for table in AREA)
    assert "file:" not in result.stdout and str(tmp_path) not in result.stdout
    assert list(tmp_path.iterdir()) == [], "the DDL reads the store's URL, not the data root"


def test_store_ddl_goes_to_an_output_file(tmp_path: Path) -> None:
    target = tmp_path / "gravix-trino.sql"
    result = invoke(tmp_path, "--ddl", "trino", "--store", STORE, "--output", str(target))
    assert result.exit_code == 0, result.output
    locations, _, _ = statements(target.read_text())
    assert all(location.startswith(STORE + "/") for location in locations.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gravix-trino.sql"]


@pytest.mark.parametrize(
    "url",
    [
        "http://gravix-data/prod",  # not s3://
        "s3://Gravix-Data/prod",  # not a bucket name
        "s3://gravix-data/prod?versionId=1",  # a query
        "s3://gravix-data/a=b",  # a Hive reader would take the prefix for a partition
    ],
)
def test_a_bad_store_url_is_a_usage_error_with_a_hint(tmp_path: Path, url: str) -> None:
    result = invoke(tmp_path, "--ddl", "trino", "--store", url)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "Error:" in message and "Traceback" not in result.output
    assert "Hint:" in message and "s3://BUCKET" in message
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_location_prefix_beside_a_store_is_refused(tmp_path: Path) -> None:
    args = ["--ddl", "trino", "--store", STORE, "--location-prefix", "s3://other/x"]
    result = invoke(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert "--location-prefix" in result.stderr and "Hint:" in result.stderr
    assert "CREATE" not in result.stdout


@pytest.mark.parametrize(
    ("args", "code"),
    [(["SELECT 1"], 0), (["--preset", "top-endpoints"], 1)],
    ids=["sql", "preset"],
)
def test_sql_and_presets_take_the_store_and_write_nothing(
    tmp_path: Path, args: list[str], code: int
) -> None:
    """SQL and presets read the store (tests/query/test_query_store.py); here its endpoint
    is not there, so a preset fails to reach it, with a hint, and nothing is written."""
    gone = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}  # fmt: skip
    result = invoke(tmp_path, *args, "--store", STORE, "--json", env=gone)
    assert result.exit_code == code, result.output
    document = json.loads(result.stdout)
    if code:
        assert "does not work on an object store" not in document["error"]
        assert STORE in document["error"] and "127.0.0.1:9" in document["hint"]
    assert list(tmp_path.iterdir()) == []
