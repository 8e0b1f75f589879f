"""Spark (pyspark, local mode) reads the warehouse as it is: Hive partition discovery, the
same counts per service and day as DuckDB, and the histogram lists element for element."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gravix import schema
from gravix.storage import layout
from test_query_support import START, build_warehouse, duck, make_events, make_facts, write_raw

pytestmark = pytest.mark.slow

METRICS = "request_metrics_minute"
EVENTS = "service_events_daily"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("spark") / "data"
    # 22:00 to 10:00: two event days.
    facts = make_facts(start=START - timedelta(hours=10), minutes=720, per_minute=6)
    write_raw(data, schema.REQUEST_FACTS, facts, duplicates=40)
    write_raw(data, schema.SERVICE_EVENTS, make_events())
    build_warehouse(data)
    days = list(layout.warehouse_days(data, METRICS))
    assert len(days) == 2, days
    return data


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java 17: apt-get install -y openjdk-17-jre-headless")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("gravix-warehouse")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


def _spark_rows(spark: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in spark.sql(sql).collect()]


def _duck_rows(sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in duck().execute(sql).fetchall()]


def _register(spark: Any, root: Path) -> None:
    for table in (METRICS, EVENTS):
        frame = spark.read.parquet(str(layout.warehouse_table_dir(root, table)))
        frame.createOrReplaceTempView(table)


def _duck_source(root: Path, table: str) -> str:
    return f"read_parquet('{layout.warehouse_glob(root, table)}', hive_partitioning=true)"


def test_counts_per_service_and_day_match_duckdb(root: Path, spark: Any) -> None:
    _register(spark, root)
    query = (
        "SELECT service, CAST(event_day AS VARCHAR(10)) AS day, count(*), "
        "sum(request_count), sum(error_count), sum(client_error_count) "
        "FROM {} GROUP BY service, event_day ORDER BY service, day"
    )
    from_spark = _spark_rows(spark, query.format(METRICS))
    from_duck = _duck_rows(query.format(_duck_source(root, METRICS)))
    assert from_spark == from_duck
    assert len(from_spark) == 4  # two services, two days
    assert sum(r[3] for r in from_spark) == 720 * 6  # every fact counted once
    assert spark.table(METRICS).schema["event_day"].dataType.simpleString() == "date"

    events = (
        "SELECT service, event_type, CAST(event_day AS VARCHAR(10)) AS day, sum(event_count) "
        "FROM {} GROUP BY service, event_type, event_day ORDER BY service, event_type, day"
    )
    from_spark = _spark_rows(spark, events.format(EVENTS))
    assert from_spark and from_spark == _duck_rows(events.format(_duck_source(root, EVENTS)))


def test_histogram_lists_match_duckdb_row_by_row(root: Path, spark: Any) -> None:
    _register(spark, root)
    key = "service, method, path_template, bucket_start"
    spark_rows = _spark_rows(
        spark,
        f"SELECT service, method, path_template, unix_millis(bucket_start), lat_scale, "
        f"lat_zero_count, lat_idx, lat_cnt FROM {METRICS} ORDER BY {key}",
    )
    duck_rows = _duck_rows(
        f"SELECT service, method, path_template, epoch_ms(bucket_start), lat_scale, "
        f"lat_zero_count, lat_idx, lat_cnt FROM {_duck_source(root, METRICS)} ORDER BY {key}"
    )
    assert len(spark_rows) == len(duck_rows) > 0
    for ours, theirs in zip(spark_rows, duck_rows, strict=True):
        assert ours[:6] == theirs[:6]
        assert list(ours[6]) == list(theirs[6]) and list(ours[7]) == list(theirs[7])
    # Every fact is in exactly one histogram bucket (or the zero count).
    totals = _spark_rows(
        spark,
        f"SELECT sum(aggregate(lat_cnt, 0L, (acc, x) -> acc + x) + lat_zero_count), "
        f"sum(request_count), sum(size(lat_idx) - size(lat_cnt)) FROM {METRICS}",
    )
    assert totals == [(720 * 6, 720 * 6, 0)]
