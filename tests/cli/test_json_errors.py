"""With --json a failure is one JSON document on stdout too (DESIGN §2):
``{"error": …, "hint": …, "code": N}``, the code being the exit status; and a --data-dir
that names a file is said to be "not a directory"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix.cli import app

ENV = {"GRAVIX_DATA_DIR": "", "API_KEY": "", "GRAVIX_API_KEYS": "", "NO_COLOR": "1"}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=ENV)


def failing(tmp_path: Path) -> dict[str, list[str]]:
    missing = str(tmp_path / "missing")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {
        "rollup": ["rollup", "--data-dir", missing],
        "recover": ["recover", "--data-dir", missing],
        "cleanup": ["cleanup", "--data-dir", missing],
        "doctor": ["doctor", "--data-dir", str(a_file)],
        "query": ["query", "SELECT * FROM no_such_table", "--data-dir", str(tmp_path)],
        "loadgen": ["loadgen", "--incident", "not-an-incident", "--total", "1"],
        "demo": ["demo", "--data-dir", str(a_file)],
        "ingest-server": ["ingest-server", "--port", "0", "--data-dir", str(tmp_path)],
    }


@pytest.mark.parametrize(
    "command",
    ["rollup", "recover", "cleanup", "doctor", "query", "loadgen", "demo", "ingest-server"],
)
def test_a_json_failure_prints_the_error_object_on_stdout(tmp_path: Path, command: str) -> None:
    result = invoke(*failing(tmp_path)[command], "--json")
    assert result.exit_code in (1, 2), result.output
    document = json.loads(result.stdout)
    assert set(document) == {"error", "hint", "code"}
    assert document["code"] == result.exit_code
    assert document["error"] and isinstance(document["error"], str)


@pytest.mark.parametrize("command", ["rollup", "recover", "cleanup", "doctor", "query"])
def test_a_data_dir_that_is_a_file_is_not_a_directory(tmp_path: Path, command: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = {"query": ["query", "SELECT 1 AS one"], "cleanup": ["cleanup"]}.get(command, [command])
    result = invoke(*args, "--data-dir", str(a_file))
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{a_file} is not a directory" in text and "does not exist" not in text
