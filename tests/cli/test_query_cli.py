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

from gravix import schema
from gravix.cli import app
from query.test_query_support import (
    build_warehouse,
    duck,
    duck_sources,
    make_facts,
    populate,
    write_raw,
)

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
    document = json.loads(result.stdout)
    assert document["columns"] == columns and document["row_count"] == len(expected)
    assert document["skipped_lines"] == {} and document["notes"] == []
    rows = json.dumps(document["rows"]).encode()
    assert_same(parsed("json", rows, columns, expected[0]), expected)


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


def test_an_empty_warehouse_answers_zero_rows_and_hints_at_rollup(tmp_path: Path) -> None:
    result = invoke(tmp_path, "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10")
    assert result.exit_code == 0, result.output
    header, rows = parse_table(result.stdout)
    assert rows == [] and header[0] == "bucket_start"
    assert "gravix rollup" in result.stderr


def test_a_rollup_without_service_events_counts_zero_of_them(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_raw(root, schema.REQUEST_FACTS, make_facts(minutes=30))
    build_warehouse(root)
    result = invoke(root, "SELECT count(*) FROM service_events_daily", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["count", "0"]


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


# --- time filters as written (DESIGN §8) ------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "column"),
    [("request_metrics_minute", "bucket_start"), ("request_facts", "event_time")],
)
def test_standard_time_filters_work_as_written(root: Path, table: str, column: str) -> None:
    source = duck_sources(root)[table]
    counts = {}
    for name, where, duck_where in [
        (
            "timestamp",
            f"{column} >= TIMESTAMP '2026-02-16 09:00:00' "
            f"AND {column} < TIMESTAMP '2026-02-16 09:30:00'",
            f"{column} >= TIMESTAMPTZ '2026-02-16 09:00:00+00' "
            f"AND {column} < TIMESTAMPTZ '2026-02-16 09:30:00+00'",
        ),
        (
            "interval",
            f"{column} >= now() - INTERVAL '3 hours'",
            f"{column} >= now() - INTERVAL 3 HOUR",
        ),
        ("days", f"{column} < now() - INTERVAL '1 day'", f"{column} < now() - INTERVAL 1 DAY"),
    ]:
        result = invoke(root, f"SELECT count(*) AS n FROM {table} WHERE {where}", "--format", "csv")
        assert result.exit_code == 0, result.output
        counts[name] = int(result.stdout.splitlines()[1])
        expected = duck().execute(f"SELECT count(*) FROM {source} WHERE {duck_where}").fetchone()
        assert counts[name] == expected[0], name
    assert counts["timestamp"] > 0 and counts["days"] > 0 and counts["interval"] == 0


# --- writing only where asked -------------------------------------------------------------------


def test_output_in_a_missing_directory_is_refused_and_creates_nothing(
    root: Path, tmp_path: Path
) -> None:
    target = tmp_path / "newdir" / "o.csv"
    result = invoke(root, "SELECT 1 AS one", "--format", "csv", "--output", str(target))
    assert result.exit_code == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.output
    assert not target.parent.exists()


def test_output_that_is_a_directory_is_refused_and_leaves_no_temporary(
    root: Path, tmp_path: Path
) -> None:
    target = tmp_path / "a-directory"
    target.mkdir()
    result = invoke(root, "SELECT 1 AS one", "--format", "csv", "--output", str(target))
    assert result.exit_code == 1
    assert "is a directory" in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]
    assert list(target.iterdir()) == []


def test_ddl_output_in_a_missing_directory_is_refused(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "newdir" / "ddl.sql"
    result = invoke(root, "--ddl", "trino", "--output", str(target))
    assert result.exit_code == 1 and not target.parent.exists()


# --- statements users expect --------------------------------------------------------------------


def test_a_delete_is_a_usage_error(root: Path) -> None:
    result = invoke(root, "DELETE FROM request_metrics_minute")
    assert result.exit_code == 2
    assert "only read statements" in result.stderr


def test_show_tables_lists_every_table_and_its_kind(root: Path) -> None:
    result = invoke(root, "SHOW TABLES", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert list(csv.DictReader(io.StringIO(result.stdout))) == [
        {"name": "request_metrics_minute", "kind": "warehouse"},
        {"name": "request_metrics_hour", "kind": "warehouse"},
        {"name": "service_events_daily", "kind": "warehouse"},
        {"name": "request_facts", "kind": "raw"},
        {"name": "service_events", "kind": "raw"},
    ]


def test_count_star_is_a_column_named_count(root: Path) -> None:
    expected = (
        duck().execute(f"SELECT count(*) FROM {duck_sources(root)['request_facts']}").fetchone()[0]
    )
    result = invoke(root, "SELECT count(*) FROM request_facts", "--format", "csv")
    assert result.stdout.splitlines() == ["count", str(expected)]
    grouped = invoke(
        root, "SELECT service, count(*) FROM request_facts GROUP BY 1 ORDER BY 1", "--format", "csv"
    )
    assert grouped.stdout.splitlines()[0] == "service,count"
    aliased = invoke(root, "SELECT count(*) AS n FROM request_facts", "--format", "csv")
    assert aliased.stdout.splitlines()[0] == "n"


# --- flags that would do nothing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flags"),
    [
        (["SELECT 1", "--since", "24h"], ["--since"]),
        (["SELECT 1", "--service", "api", "--until", "now"], ["--until", "--service"]),
        (["SELECT 1", "--endpoint", "/x", "--method", "GET"], ["--endpoint", "--method"]),
        (["SELECT 1", "--step", "5", "--threshold", "300"], ["--step", "--threshold"]),
        (["SELECT 1", "--by-endpoint", "--deploy", "v1"], ["--by-endpoint", "--deploy"]),
        (["SELECT 1", "--window", "10", "--limit", "3"], ["--window", "--limit"]),
        (["--ddl", "trino", "--service", "api"], ["--service"]),
        (["--ddl", "trino", "--format", "csv"], ["--format"]),
        (["SELECT 1", "--location-prefix", "s3://b"], ["--location-prefix"]),
        (["SELECT 1", "--json", "--format", "csv"], ["--json", "--format csv"]),
        (["--preset", "top-endpoints", "--json", "--format", "ndjson"], ["--json"]),
    ],
)
def test_flags_that_would_do_nothing_are_usage_errors(
    root: Path, args: list[str], flags: list[str]
) -> None:
    result = invoke(root, *args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert all(flag in message for flag in flags), message


def test_json_beside_the_json_format_is_accepted(root: Path) -> None:
    result = invoke(root, "SELECT 1 AS one", "--json", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["rows"] == [{"one": 1}]


# --- off a terminal, nothing is cut or wrapped --------------------------------------------------


def test_off_a_terminal_preset_headers_and_notes_are_never_wrapped(root: Path) -> None:
    env = {"GRAVIX_DATA_DIR": "", "NO_COLOR": "1", "GRAVIX_CONSOLE_WIDTH": None, "COLUMNS": None}
    args = ["query", "--preset", "health", "--service", "frontend", "--format", "csv"]
    window = ["--since", "2026-02-16T08:00:00Z", "--until", "2026-02-16T10:00:00Z"]
    result = CliRunner().invoke(app, [*args, *window, "--data-dir", str(root)], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any(
        "2026-02-16T08:00:00+00:00" in line and "2026-02-16T10:00:00+00:00)" in line
        for line in lines
    ), lines
    assert all(line.startswith(("Health", "Note:")) for line in lines if line), lines
