"""The SQL guard against a corpus of hostile spellings: user SQL reads Gravix's tables and
nothing else (DESIGN §8). Every spelling is refused through the command line with a clear
one-line error, exit code 2 (a usage error), no traceback and nothing of the file read;
reads of the tables still run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix.cli import app
from query.test_query_support import build_warehouse, populate

SECRET = "gravix-secret-line-5c1e"
ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_CONSOLE_WIDTH": "200", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("sqlguard") / "data"
    populate(data, minutes=20)
    build_warehouse(data)
    return data


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outside") / "secret.csv"
    path.write_text(f"secret\n{SECRET}\n")
    return path


def invoke(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["query", *args, "--data-dir", str(root)], env=ENV)


# {p} is a file outside the data root holding SECRET.
FILE_READS = [
    "SELECT * FROM read_csv('{p}')",
    "SELECT * FROM \"read_csv\"('{p}')",
    "SELECT * FROM `read_csv`('{p}')",
    "SELECT * FROM READ_CSV('{p}')",
    "SELECT * FROM rEaD_cSv('{p}')",
    "SELECT * FROM \"READ_CSV\"('{p}')",
    "SELECT * FROM read_parquet('{p}')",
    "SELECT * FROM \"read_parquet\"('/nonexistent')",
    "SELECT * FROM `read_parquet`('/nonexistent')",
    "SELECT * FROM read_ndjson('{p}')",
    "SELECT * FROM \"read_ndjson\"('{p}')",
    "SELECT * FROM read_json('{p}')",
    "SELECT * FROM read_ipc('{p}')",
    "SELECT * FROM scan_csv('{p}')",
    "SELECT * FROM \"scan_parquet\"('{p}')",
    "SELECT * FROM Scan_Ndjson('{p}')",
    "SELECT * FROM raw.\"read_csv\"('{p}')",
    "SELECT * FROM read_csv/* hidden */('{p}')",
    "SELECT * FROM read_csv(\n'{p}'\n)",
    "SELECT * FROM (SELECT * FROM \"read_csv\"('{p}')) AS s",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM read_csv('{p}')) a) b",
    "WITH s AS (SELECT * FROM read_csv('{p}')) SELECT * FROM s",
    "WITH s AS (SELECT * FROM \"read_csv\"('{p}')), t AS (SELECT * FROM s) SELECT * FROM t",
    "SELECT * FROM request_facts WHERE service IN (SELECT secret FROM read_csv('{p}'))",
    "SELECT (SELECT secret FROM read_csv('{p}') LIMIT 1) AS x FROM request_facts",
    "SELECT * FROM request_facts WHERE EXISTS (SELECT 1 FROM `read_csv`('{p}'))",
    "SELECT * FROM request_facts JOIN \"read_csv\"('{p}') AS f ON true",
    "SELECT * FROM request_metrics_minute m LEFT JOIN read_csv('{p}') f ON true",
    "SELECT * FROM request_facts, read_csv('{p}')",
    "SELECT * FROM request_facts CROSS JOIN LATERAL read_csv('{p}') f",
    "SELECT * FROM request_facts, LATERAL (SELECT * FROM read_csv('{p}')) f",
    "SELECT service FROM request_facts UNION ALL SELECT secret FROM \"read_csv\"('{p}')",
    "SELECT service FROM request_facts UNION SELECT secret FROM read_csv('{p}')",
    "SELECT service FROM request_facts EXCEPT SELECT secret FROM read_csv('{p}')",
    "SELECT service FROM request_facts INTERSECT SELECT secret FROM read_csv('{p}')",
    "SELECT read_csv('{p}')",
    "SELECT * FROM unnest(read_csv('{p}'))",
    "SELECT * FROM request_facts -- comment\n UNION SELECT * FROM read_csv('{p}')",
    "SELECT * FROM '{p}'",
    'SELECT * FROM "{p}"',
    "SELECT * FROM `{p}`",
    "SELECT * FROM '/etc/passwd'",
    'SELECT * FROM "/etc/passwd"',
    "SELECT * FROM 'https://example.com/data.csv'",
    'SELECT * FROM "https://example.com/data.parquet"',
    "SELECT * FROM read_parquet('https://example.com/data.parquet')",
    "SELECT * FROM 'file:///etc/passwd'",
]
WRITES = [
    "DELETE FROM request_metrics_minute",
    "delete from gravix.raw.request_metrics_minute where true",
    "INSERT INTO request_facts VALUES (1)",
    "UPDATE request_facts SET service = 'x'",
    "DROP TABLE request_facts",
    "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW v AS SELECT * FROM request_facts",
    "TRUNCATE request_facts",
    "COPY request_facts TO '/tmp/gravix-copy.csv'",
    "COPY (SELECT * FROM request_facts) TO '/tmp/gravix-copy.csv'",
    "ATTACH '/tmp/gravix-attach.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA database_list",
    "SET threads = 1",
    "EXPLAIN DELETE FROM request_facts",
    "SELECT 1; DELETE FROM request_facts",
    "SELECT 1; SELECT * FROM read_csv('{p}')",
    "SELECT 1 /* ; */ ; DROP TABLE request_facts",
    "/* SELECT */ DROP TABLE request_facts",
    "\n-- SELECT\nDELETE FROM request_facts",
    "WITH d AS (DELETE FROM request_facts RETURNING *) SELECT * FROM d",
    "VALUES (1)",
]


@pytest.mark.parametrize("template", FILE_READS + WRITES)
def test_hostile_sql_is_refused_as_a_usage_error_without_a_traceback(
    root: Path, secret: Path, template: str
) -> None:
    result = invoke(root, template.format(p=secret))
    output = result.stdout + result.stderr
    assert result.exit_code == 2, output
    assert "Error:" in result.stderr
    assert "Traceback" not in output and "Exception" not in output
    assert SECRET not in output
    assert len(result.stderr.strip().splitlines()) <= 3  # the error and its hint


def test_the_corpus_holds_at_least_fifty_spellings() -> None:
    assert len(FILE_READS) + len(WRITES) >= 50


@pytest.mark.parametrize(
    "sql", ["SELECT * FROM \"read_parquet\"('/nonexistent')", "DELETE FROM request_metrics_minute"]
)
def test_a_refusal_says_what_is_refused_and_why(root: Path, sql: str) -> None:
    result = invoke(root, sql)
    assert result.exit_code == 2
    refused = "read_parquet() is not available" if "read_" in sql else "only read statements"
    assert refused in result.stderr and "Hint:" in result.stderr


def test_no_file_is_written_by_a_refused_copy(root: Path) -> None:
    target = Path("/tmp/gravix-copy.csv")
    target.unlink(missing_ok=True)
    invoke(root, "COPY request_facts TO '/tmp/gravix-copy.csv'")
    assert not target.exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM request_metrics_minute",
        'SELECT count(*) FROM "request_facts"',
        "SELECT count(*) FROM `gravix`.`raw`.`request_facts`",
        "SELECT count(*) FROM GRAVIX.RAW.SERVICE_EVENTS",
        "WITH t AS (SELECT * FROM request_facts) SELECT count(*) FROM t",
        "SELECT count(*) FROM request_facts AS read_csv",
        "SELECT count(*) FROM (SELECT service FROM request_facts UNION ALL "
        "SELECT service FROM service_events) u",
        "SELECT 'read_csv(''/etc/passwd'')' AS text_only",
    ],
)
def test_reads_of_the_gravix_tables_still_run(root: Path, sql: str) -> None:
    result = invoke(root, sql, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
