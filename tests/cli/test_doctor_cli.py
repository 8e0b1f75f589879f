"""`gravix doctor` on the command line: a table on a terminal, one JSON document with
--json, exit 0 when nothing fails and 1 otherwise."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gravix.cli import app
from gravix.settings import DEFAULT_URL

ENV = {"GRAVIX_URL": "", "GRAVIX_DATA_DIR": "", "API_KEY": "", "GRAVIX_API_KEYS": ""}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["doctor", *args], env=ENV)
    return result.exit_code, result.stdout


def test_json_is_one_document_and_a_failure_exits_1(tmp_path: Path) -> None:
    code, out = invoke("--data-dir", str(tmp_path / "missing"), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False
    by_name = {c["name"]: c for c in doc["checks"]}
    assert by_name["data root"]["status"] == "fail"
    assert "--data-dir" in by_name["data root"]["hint"]
    assert doc["counts"]["fail"] == 1


def test_warnings_only_exit_0_and_the_table_names_every_check(data_root: Path) -> None:
    # an empty data root: nothing is broken yet, only not started (warnings)
    code, out = invoke("--data-dir", str(data_root), "--url", "http://127.0.0.1:9")
    names = ["data root", "buffer", "disk", "raw", "warehouse", "locks", "ingestion"]
    assert all(name in out for name in names), out
    # the one failure is the ingestion server named by --url that does not answer
    assert code == 1
    assert "gravix ingest-server" in out


def test_no_failure_exits_0(data_root: Path) -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", int(DEFAULT_URL.rsplit(":", 1)[1]))) == 0:
            pytest.skip("something listens on the default port on this machine")
    # an empty data root and no server configured: things to start, nothing broken
    code, out = invoke("--data-dir", str(data_root), "--json")
    doc = json.loads(out)
    assert [c for c in doc["checks"] if c["status"] == "fail"] == []
    assert doc["counts"]["warn"] >= 1
    assert (code, doc["ok"]) == (0, True)


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(app, ["doctor", "--help"], env=ENV)
    assert result.exit_code == 0
    assert "Example:" in result.stdout
    for flag in ("--data-dir", "--url", "--api-key", "--json"):
        assert flag in result.stdout
