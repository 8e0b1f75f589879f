"""The rollup's Parquet keeps dictionaries for its text columns only: services, methods and
paths repeat on every row, while times, counts, latencies and histograms are nearly all
distinct, and a dictionary of them only costs time and bytes. DuckDB reads the file back
to the same aggregates as it computes from the raw facts."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from gravix.rollup import run_rollup
from gravix.storage import layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, generate

HOUR = Hour(DAY1, 10)
TEXT = {"service", "method", "path_template"}


def test_only_the_text_columns_are_dictionary_encoded(data_root: Path) -> None:
    facts = generate(random.Random(21), [HOUR], 2000)
    facts.write(data_root)
    run_rollup(root=data_root)
    target = layout.warehouse_hour_file(data_root, "request_metrics_minute", HOUR)
    meta = pq.ParquetFile(target).metadata.row_group(0)
    encoded = {
        meta.column(i).path_in_schema.split(".")[0]: set(meta.column(i).encodings)
        for i in range(meta.num_columns)
    }
    dictionary = {
        name for name, kinds in encoded.items() if kinds & {"RLE_DICTIONARY", "PLAIN_DICTIONARY"}
    }
    assert dictionary == TEXT
    assert {"request_count", "latency_sum_ms", "bucket_start", "lat_idx"} <= set(encoded)

    raw = str(layout.raw_hour_dir(data_root, "request_facts", HOUR) / "*")
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        ours = con.execute(
            "SELECT service, method, path_template, sum(request_count), sum(error_count), "
            "round(sum(latency_sum_ms), 3) FROM read_parquet(?) GROUP BY ALL ORDER BY ALL",
            [str(target)],
        ).fetchall()
        reference = con.execute(
            "SELECT service, method, path_template, count(*), "
            "count(*) FILTER (WHERE status_code >= 500), round(sum(latency_ms), 3) "
            "FROM (SELECT DISTINCT ON (event_id) * "
            "FROM read_json(?, format = 'newline_delimited')) "
            "GROUP BY ALL ORDER BY ALL",
            [raw],
        ).fetchall()
    assert ours == reference
    assert len(ours) > 1
