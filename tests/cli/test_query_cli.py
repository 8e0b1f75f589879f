"""`gravix query` on the command line: every output format, to stdout or to a file, parses
back to DuckDB's answer on the same files; presets print the error bound; errors are one
line with a hint and the right exit code."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gravix.cli import app
from query.test_query_support import build_warehouse, duck, duck_sources, populate

ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_CONSOLE_WIDTH": "200", "NO_COLOR": "1"}
SQL = (
    "SELECT bucket_start, service, method, path_template, request_count, error_rate, "
    "latency_max_ms, lat_idx FROM gravix.raw.request_metrics_minute "
    "WHERE service = 'api' ORDER BY bucket_start, method, path_template LIMIT 40"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "data"
    populate(data, minutes=120)
    build_warehouse(data)
    return data


def invoke(root: Path | None, *args: str) -> Any:
    extra = ["--data-dir", str(root)] if root is not None else []
    return CliRunner().invoke(app, ["query", *args, *extra], env=ENV)


def reference(root: Path) -> tuple[list[str], list[tuple[Any, ...]]]:
    sql = SQL.replace(
        "gravix.raw.request_metrics_minute", duck_sources(root)["request_metrics_minute"]
    )
    cursor = duck().execute(sql)
    return [d[0] for d in cursor.description], cursor.fetchall()


def typed(text: str | None, like: Any) -> Any:
    """A value read back from text, typed like the reference value."""
    if text in (None, "", "null"):
        return None
    assert text is not None
    if isinstance(like, datetime):
        return datetime.fromisoformat(text)
    if isinstance(like, list):
        return json.loads(text)
    if isinstance(like, bool):
        return text == "true"
    return type(like)(text)


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return cells[0], cells[2:]


def parsed(
    fmt: str, data: bytes, columns: list[str], like: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    if fmt == "parquet":
        table = pq.read_table(io.BytesIO(data))
        assert table.column_names == columns
        return [tuple(r[c] for c in columns) for r in table.to_pylist()]
    if fmt in ("json", "ndjson"):
        text = data.decode()
        records = json.loads(text) if fmt == "json" else [json.loads(x) for x in text.splitlines()]
        assert all(list(r) == columns for r in records)
        return [
            tuple(
                typed(v, k) if isinstance(v, str) else v
                for v, k in zip(r.values(), like, strict=True)
            )
            for r in records
        ]
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode())))
        header, body = rows[0], rows[1:]
    else:
        header, body = parse_table(data.decode())
    assert header == columns
    return [tuple(typed(v, k) for v, k in zip(r, like, strict=True)) for r in body]


def assert_same(ours: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> None:
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        for x, y in zip(a, b, strict=True):
            if isinstance(y, float):
                assert x == pytest.approx(y, rel=1e-12)
            else:
                assert x == y


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "ndjson", "parquet"])
@pytest.mark.parametrize("to_file", [False, True])
def test_every_format_parses_back_to_the_duckdb_answer(
    root: Path, tmp_path: Path, fmt: str, to_file: bool
) -> None:
    columns, expected = reference(root)
    out = tmp_path / f"result.{fmt}"
    args = [SQL, "--format", fmt, *(["--output", str(out)] if to_file else [])]
    result = invoke(root, *args)
    assert result.exit_code == 0, result.output
    data = out.read_bytes() if to_file else result.stdout_bytes
    if to_file:
        assert result.stdout_bytes == b""
    assert_same(parsed(fmt, data, columns, expected[0]), expected)


def test_json_flag_prints_one_json_document(root: Path) -> None:
    result = invoke(root, SQL, "--json")
    assert result.exit_code == 0
    columns, expected = reference(root)
    assert_same(parsed("json", result.stdout_bytes, columns, expected[0]), expected)


def test_runbook_check_prints_ten_rows(root: Path) -> None:
    result = invoke(root, "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10")
    assert result.exit_code == 0, result.output
    header, rows = parse_table(result.stdout)
    assert len(rows) == 10 and header[0] == "bucket_start" and header[-1] == "event_day"


def test_bad_sql_is_one_error_line_and_exit_1(root: Path) -> None:
    result = invoke(root, "SELEC * FROM request_facts")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "SELEC" in errors[0]
    assert result.stdout == ""


def test_unknown_table_lists_the_tables(root: Path) -> None:
    result = invoke(root, "SELECT * FROM raw.requests")
    assert result.exit_code == 1
    assert "requests" in result.stderr
    for table in (
        "request_metrics_minute",
        "service_events_daily",
        "request_facts",
        "service_events",
    ):
        assert table in result.stderr


def test_empty_warehouse_hints_at_rollup(tmp_path: Path) -> None:
    result = invoke(tmp_path, "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10")
    assert result.exit_code == 1
    assert "gravix rollup" in result.stderr


def test_health_preset_prints_the_percentile_bound(root: Path) -> None:
    result = invoke(
        root,
        "--preset",
        "health",
        "--service",
        "frontend",
        "--since",
        "2026-02-16T08:00:00Z",
        "--until",
        "2026-02-16T10:00:00Z",
        "--step",
        "30",
    )
    assert result.exit_code == 0, result.output
    header, rows = parse_table(result.stdout)
    assert len(rows) == 4 and "p99_ms" in header
    assert "±1.08%" in result.stdout


def test_preset_json_document_carries_the_bound_and_rows(root: Path) -> None:
    result = invoke(
        root,
        "--preset",
        "top-endpoints",
        "--since",
        "2026-02-16T08:00:00Z",
        "--until",
        "2026-02-16T10:00:00Z",
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["preset"] == "top-endpoints"
    assert doc["percentile_relative_error"] == pytest.approx(0.0108, abs=1e-4)
    total = (
        duck()
        .execute(f"SELECT count(DISTINCT event_id) FROM {duck_sources(root)['request_facts']}")
        .fetchone()[0]
    )
    assert sum(r["requests"] for r in doc["rows"]) == total  # six endpoints, all within limit


def test_preset_csv_to_a_file_keeps_notes_off_the_data(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "apdex.csv"
    result = invoke(
        root,
        "--preset",
        "apdex",
        "--threshold",
        "100",
        "--since",
        "2026-02-16T08:00:00Z",
        "--until",
        "2026-02-16T10:00:00Z",
        "--format",
        "csv",
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {r["service"] for r in rows} == {"api", "frontend"}
    assert all(float(r["apdex_low"]) <= float(r["apdex"]) <= float(r["apdex_high"]) for r in rows)


def test_deploy_preset_names_the_deploy_and_windows(root: Path) -> None:
    result = invoke(
        root,
        "--preset",
        "deploy",
        "--service",
        "frontend",
        "--since",
        "2026-02-16T00:00:00Z",
        "--until",
        "2026-02-16T10:00:00Z",
    )
    assert result.exit_code == 0, result.output
    assert "v41" in result.stdout and "before" in result.stdout and "after" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["SELECT 1", "--preset", "health"],
        ["--preset", "endpoint", "--service", "frontend"],
        ["--preset", "apdex"],
        ["--preset", "health", "--step", "0"],
        ["--preset", "health", "--since", "yesterday"],
        ["SELECT 1", "--format", "xml"],
    ],
)
def test_usage_errors_exit_2(root: Path, args: list[str]) -> None:
    result = invoke(root, *args)
    assert result.exit_code == 2, result.output


def test_ddl_prints_trino_statements_for_every_table(root: Path) -> None:
    result = invoke(root, "--ddl", "trino", "--location-prefix", "s3://bucket/gravix")
    assert result.exit_code == 0, result.output
    for table in (
        "request_metrics_minute",
        "service_events_daily",
        "request_facts",
        "service_events",
    ):
        assert f"CREATE TABLE IF NOT EXISTS gravix.raw.{table} (" in result.stdout
    assert "s3://bucket/gravix/warehouse/request_metrics_minute" in result.stdout


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(app, ["query", "--help"], env=ENV)
    assert result.exit_code == 0 and "Example: gravix query" in result.stdout


def test_relative_window_and_any_whole_step_are_accepted(root: Path) -> None:
    # the test data lies in the past, so the last 3 hours are quiet: every step shows 0
    result = invoke(root, "--preset", "health", "--since", "3h", "--step", "7", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 26  # 181 minutes (the until minute is included) in 7-minute steps
    assert all(r["requests"] == 0 for r in rows)
