"""`--store` on every command that has a data root: every command but the demo takes an
s3:// store; the demo refuses one (exit 2, an error and a hint, nothing changed), from the
flag or from GRAVIX_STORE, instead of quietly using the data root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gravix.cli import app

ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_STORE": "", "GRAVIX_CONSOLE_WIDTH": "200", "NO_COLOR": "1"}
REFUSING = {
    "demo": [],
}
TAKING = ["ingest-server", "rollup", "cleanup", "recover", "doctor", "query", "dashboard"]
COMMANDS = [*REFUSING, *TAKING]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_with_a_data_root_takes_store(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env=ENV)
    assert result.exit_code == 0
    assert "--store" in result.output


@pytest.mark.parametrize("via_env", [False, True], ids=["flag", "env"])
@pytest.mark.parametrize("command", list(REFUSING))
def test_commands_not_on_the_store_yet_refuse_it_and_change_nothing(
    command: str, via_env: bool, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    store = "s3://some-bucket/prefix"
    args = [command, *REFUSING[command], "--data-dir", str(root), "--json"]
    env = dict(ENV)
    if via_env:
        env["GRAVIX_STORE"] = store
    else:
        args += ["--store", store]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout) if command != "dashboard" else None
    if document is not None:
        assert document["code"] == 2
        assert f"gravix {command}" in document["error"] and document["hint"]
    assert f"gravix {command} does not work on an object store yet" in result.output
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []


def test_ingest_server_refuses_a_bad_node_id_before_touching_anything(tmp_path: Path) -> None:
    root = tmp_path / "data"
    args = ["ingest-server", "--data-dir", str(root), "--insecure-no-auth", "--port", "0"]
    result = CliRunner().invoke(app, [*args, "--store", "s3://b-1/x", "--node-id", "a/b"], env=ENV)
    assert result.exit_code == 2
    assert "node id" in result.output
    assert not root.exists()


@pytest.mark.parametrize("via_env", [False, True], ids=["flag", "env"])
def test_query_takes_a_store_and_touches_no_data_root(via_env: bool, tmp_path: Path) -> None:
    """A statement that reads no table answers without asking the store anything; the
    store's reads are shown in tests/query/test_query_store.py."""
    root = tmp_path / "data"
    args = ["query", "SELECT 1 AS one", "--data-dir", str(root), "--json"]
    env = dict(ENV)
    if via_env:
        env["GRAVIX_STORE"] = "s3://some-bucket/prefix"
    else:
        args += ["--store", "s3://some-bucket/prefix"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == [{"one": 1}]
    assert not root.exists()


@pytest.mark.parametrize("command", ["rollup", "cleanup", "recover"])
def test_commands_on_the_store_no_longer_refuse_it(command: str, tmp_path: Path) -> None:
    """They get past the settings to the store itself: an unreachable endpoint is a failure
    to reach it (exit 1), not a usage error."""
    root = tmp_path / "data"
    env = {**ENV, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1"}  # fmt: skip
    args = [command, "--data-dir", str(root), "--store", "s3://some-bucket/prefix", "--json"]
    result = CliRunner().invoke(app, [*args, "--dry-run"] if command != "rollup" else args, env=env)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert "does not work on an object store" not in document["error"]
    assert "127.0.0.1:9" in document["hint"]
