"""The SQL guard: only reads of the Gravix tables run, whatever the spelling, decided from
the parsed statement; every refusal is a QueryError with a hint, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from gravix.errors import QueryError
from gravix.query import run_sql
from gravix.query.answer import referenced_tables, rewrite_names
from gravix.query.tables import TABLES
from test_query_support import build_warehouse, populate

SECRET = "gravix-secret-line-7f3a"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("guard") / "data"
    populate(data, minutes=20)
    build_warehouse(data)
    return data


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside.csv"
    path.write_text(f"secret\n{SECRET}\n")
    return path


@pytest.mark.parametrize(
    "template",
    [
        "SELECT * FROM read_csv('{p}')",
        "SELECT * FROM \"read_csv\"('{p}')",
        "SELECT * FROM `read_csv`('{p}')",
        "SELECT * FROM READ_CSV('{p}')",
        "SELECT * FROM Read_Csv_Auto('{p}')",
        "SELECT * FROM read_parquet('{p}')",
        "SELECT * FROM read_json('{p}')",
        "SELECT * FROM (SELECT * FROM \"READ_CSV\"('{p}')) AS s",
        "WITH s AS (SELECT * FROM read_csv('{p}')) SELECT * FROM s",
        "SELECT * FROM request_facts WHERE service IN (SELECT secret FROM read_csv('{p}'))",
        "SELECT * FROM request_facts UNION ALL SELECT * FROM read_csv('{p}')",
        "SELECT * FROM request_facts JOIN read_csv('{p}') ON true",
        "SELECT read_csv('{p}')",
    ],
)
def test_table_functions_are_refused_by_any_spelling(
    root: Path, outside: Path, template: str
) -> None:
    with pytest.raises(QueryError) as err:
        run_sql(root, template.format(p=outside))
    assert "read_" in err.value.message and "not available" in err.value.message
    assert err.value.hint
    assert SECRET not in err.value.message + (err.value.hint or "")


def test_the_os_release_file_is_not_printed(root: Path) -> None:
    """The hole this closes: a quoted function name used to slip past the old text check."""
    with pytest.raises(QueryError) as err:
        run_sql(root, "SELECT * FROM \"read_csv\"('/etc/os-release')")
    assert "read_csv() is not available" in err.value.message


@pytest.mark.parametrize(
    ("sql", "word"),
    [
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("DROP TABLE request_facts", "DROP"),
        ("INSERT INTO request_facts VALUES (1)", "INSERT"),
        ("DELETE FROM request_facts", "DELETE"),
        ("UPDATE request_facts SET service = 'x'", "UPDATE"),
        ("SHOW COLUMNS FROM request_facts", "SHOW"),
    ],
)
def test_only_read_statements_run(root: Path, sql: str, word: str) -> None:
    with pytest.raises(QueryError) as err:
        run_sql(root, sql)
    assert "only read statements" in err.value.message and word in err.value.message
    assert "SELECT" in (err.value.hint or "")


def test_one_statement_at_a_time(root: Path) -> None:
    with pytest.raises(QueryError) as err:
        run_sql(root, "SELECT 1; DROP TABLE request_facts")
    assert "one statement" in err.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM other.request_facts",
        "SELECT * FROM other.raw.request_facts",
        "SELECT * FROM raw.gravix.request_facts",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x JOIN no_such_table ON true",
    ],
)
def test_tables_that_are_not_gravix_tables_are_refused(root: Path, sql: str) -> None:
    with pytest.raises(QueryError) as err:
        run_sql(root, sql)
    assert "unknown table" in err.value.message
    assert all(t in (err.value.hint or "") for t in TABLES)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS n FROM REQUEST_FACTS",
        'SELECT count(*) AS n FROM "request_facts"',
        "SELECT count(*) AS n FROM `request_facts`",
        "SELECT count(*) AS n FROM Gravix.Raw.Request_Facts",
        "SELECT count(*) AS n FROM `gravix`.`raw`.`request_facts`",
        "WITH f AS (SELECT * FROM raw.request_facts) SELECT count(*) AS n FROM f",
        "SELECT count(*) AS n FROM (SELECT * FROM gravix.raw.request_facts) AS s",
        "SELECT count(gravix.raw.request_facts.service) AS n FROM gravix.raw.request_facts",
    ],
)
def test_reads_of_the_tables_run_by_every_spelling(root: Path, sql: str) -> None:
    expected = run_sql(root, "SELECT count(*) AS n FROM request_facts")["n"][0]
    assert run_sql(root, sql)["n"][0] == expected > 0


def test_a_cte_and_a_values_list_are_not_tables(root: Path) -> None:
    df = run_sql(
        root,
        "WITH v AS (SELECT * FROM (VALUES (1), (2)) AS t(x)) SELECT sum(x) AS s FROM v",
    )
    assert df["s"][0] == 3


def test_names_are_rewritten_from_the_tree_not_the_text() -> None:
    sql = "SELECT raw.x AS a FROM gravix.raw.request_facts AS raw WHERE raw.s = 'raw.request_facts'"
    assert rewrite_names(sql) == (
        "SELECT raw.x AS a FROM request_facts AS raw WHERE raw.s = 'raw.request_facts'"
    )
    assert referenced_tables("SELECT * FROM `Raw`.`Service_Events`") == {"service_events"}


def test_a_parse_error_is_one_line_with_where_it_stopped(root: Path) -> None:
    with pytest.raises(QueryError) as err:
        run_sql(root, "SELECT * FROM request_facts WHERE (service = 'x'")
    assert err.value.message.startswith("bad SQL")
    assert "\n" not in err.value.message


def test_the_plan_of_a_read_can_be_shown_but_not_of_a_table_function(root: Path) -> None:
    plan = run_sql(root, "EXPLAIN SELECT count(*) FROM raw.request_facts")
    assert plan.height > 0
    with pytest.raises(QueryError) as err:
        run_sql(root, "EXPLAIN SELECT * FROM \"read_csv\"('/etc/os-release')")
    assert "read_csv() is not available" in err.value.message


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "WITH d AS (DELETE FROM request_facts RETURNING *) SELECT * FROM d",
            "found DELETE inside",
        ),
        (
            "SELECT * FROM request_facts WHERE service IN (SELECT service FROM (WITH c AS "
            "(INSERT INTO request_facts VALUES (1) RETURNING service) SELECT * FROM c) AS t)",
            "found INSERT inside",
        ),
        (
            "WITH a AS (SELECT * FROM (SELECT * FROM request_facts WHERE service IN (SELECT s "
            "FROM (SELECT read_csv('{p}') AS s) AS x)) AS y) SELECT * FROM a",
            "read_csv() is not available",
        ),
        (
            "SELECT * FROM request_facts WHERE EXISTS (SELECT 1 FROM (VALUES (1)) AS v(x) "
            "JOIN read_parquet('{p}') ON true)",
            "read_parquet() is not available",
        ),
        (
            "SELECT CASE WHEN service = 'a' THEN (SELECT count(*) FROM \"scan_csv\"('{p}')) END "
            "AS n FROM request_facts",
            "scan_csv() is not available",
        ),
        (
            "WITH a AS (WITH b AS (SELECT service FROM raw.request_facts UNION ALL "
            "SELECT secret FROM '{p}') SELECT * FROM b) SELECT * FROM a",
            "is not a Gravix table",
        ),
        (
            "WITH a AS (SELECT (SELECT max(x) FROM (SELECT * FROM secrets) AS s) AS m "
            "FROM request_facts) SELECT * FROM a",
            "unknown table 'secrets'",
        ),
    ],
)
def test_a_refused_construct_is_found_however_deep_it_is_nested(
    root: Path, outside: Path, sql: str, message: str
) -> None:
    """A write, a file read or an unknown table several sub-queries and CTEs down is
    refused as it is at the top, and nothing of the outside file is read."""
    with pytest.raises(QueryError) as err:
        run_sql(root, sql.replace("{p}", str(outside)))
    assert message in err.value.message
    assert SECRET not in err.value.message
