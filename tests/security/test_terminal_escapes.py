"""A stored string never drives the operator's terminal: `gravix query` shows control
characters escaped in every format meant for reading (the table format, preset headers and
notes), while csv, json and ndjson to a file or a pipe stay the exact data.

The hostile value is written straight into a raw file: the server now rejects it, but data
written before that (or by another tool) may hold it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix import schema
from gravix.cli import app
from gravix.query.output import format_result, safe_text
from query.test_query_support import (
    DEPLOY_STARTED,
    build_warehouse,
    make_events,
    make_facts,
    stamp,
    write_raw,
)

HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x1b[31mred\u202eevil\x9b31m"
ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_CONSOLE_WIDTH": "200", "NO_COLOR": "1"}
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("escapes") / "data"
    write_raw(data, schema.REQUEST_FACTS, make_facts(minutes=180, per_minute=6))
    events = make_events()
    for event in events:
        if event["event_type"] == "deploy_started" and event["event_time"] == stamp(DEPLOY_STARTED):
            event["message"] = HOSTILE
            event["entity_id"] = f"v42{HOSTILE}"
    write_raw(data, schema.SERVICE_EVENTS, events)
    build_warehouse(data)
    return data


def invoke(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["query", *args, "--data-dir", str(root)], env=ENV)


def assert_no_raw_controls(text: str) -> None:
    found = [c for c in RAW_CONTROLS if c in text]
    assert not found, f"raw control characters reached the output: {found!r}"


SQL = "SELECT message FROM service_events WHERE message LIKE '%PWNED%'"


def test_table_output_shows_control_characters_escaped(root: Path) -> None:
    result = invoke(root, SQL)
    assert result.exit_code == 0, result.stderr
    assert_no_raw_controls(result.stdout)
    assert "\\x1b]0;PWNED\\x07\\x1b[2J" in result.stdout
    assert "\\u202e" in result.stdout and "\\x9b" in result.stdout


def test_table_output_to_a_file_is_escaped_too(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.txt"
    result = invoke(root, SQL, "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert_no_raw_controls(out.read_text())


def test_deploy_preset_header_shows_the_entity_id_escaped(root: Path) -> None:
    for fmt in ("table", "csv"):
        result = invoke(
            root,
            *("--preset", "deploy", "--service", "frontend", "--format", fmt),
            *("--since", "2026-02-16T00:00:00Z", "--until", "2026-02-17T00:00:00Z"),
        )
        assert result.exit_code == 0, result.stderr
        assert_no_raw_controls(result.stdout + result.stderr)
        assert "v42\\x1b]0;PWNED" in result.stdout + result.stderr


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_machine_formats_off_a_terminal_keep_the_exact_data(root: Path, fmt: str) -> None:
    result = invoke(root, SQL, "--format", fmt)
    assert result.exit_code == 0, result.stderr
    if fmt == "csv":
        values = [row["message"] for row in csv.DictReader(io.StringIO(result.stdout))]
    elif fmt == "json":
        values = [row["message"] for row in json.loads(result.stdout)]
    else:
        values = [json.loads(line)["message"] for line in result.stdout.splitlines()]
    assert values == [HOSTILE]


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_machine_formats_on_a_terminal_never_carry_raw_controls(root: Path, fmt: str) -> None:
    import polars as pl

    frame = pl.DataFrame({"message": [HOSTILE]})
    shown = format_result(frame, fmt, terminal=True).decode()
    assert_no_raw_controls(shown)
    if fmt != "csv":  # JSON escapes decode back to the same string
        first = json.loads(shown.splitlines()[0]) if fmt == "ndjson" else json.loads(shown)[0]
        assert first["message"] == HOSTILE


def test_escaping_is_visible_and_keeps_ordinary_text() -> None:
    assert safe_text("a\tb\nc\x00d") == "a\\tb\\nc\\x00d"
    assert safe_text("crème brûlée — ok | 東京") == "crème brûlée — ok | 東京"
