"""A damaged data page behind an intact footer is found: the rollup writes a CRC on every
page, doctor's warehouse check and plain `gravix recover` read the pages with the CRC
verified; recover quarantines the file and rebuilds its hour from raw, equal to the
original (DuckDB reads both)."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from typer.testing import CliRunner

from gravix.cli import app
from gravix.ops import recovery
from gravix.ops.doctor import run_doctor
from gravix.rollup import run_rollup
from gravix.settings import load_settings
from gravix.storage import layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, generate

HOURS = [Hour(DAY1, 10), Hour(DAY1, 11), Hour(DAY1, 12)]
TABLE = "request_metrics_minute"
ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_CONSOLE_WIDTH": "400", "NO_COLOR": "1"}


def rows(path: Path) -> list[tuple[object, ...]]:
    with duckdb.connect() as con:
        return con.execute(
            "SELECT * EXCLUDE (lat_idx, lat_cnt), lat_idx::VARCHAR, lat_cnt::VARCHAR "
            "FROM read_parquet(?) ORDER BY ALL",
            [str(path)],
        ).fetchall()


def flip_a_data_page(path: Path, column: str = "latency_sum_ms") -> None:
    """Invert four bytes in the middle of one column chunk's data page."""
    meta = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(
        meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column
    )
    first = chunk.dictionary_page_offset or chunk.data_page_offset
    end = first + chunk.total_compressed_size
    middle = (chunk.data_page_offset + end) // 2
    data = bytearray(path.read_bytes())
    for k in range(middle, middle + 4):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_page_behind_an_intact_footer_is_found_quarantined_and_rebuilt(
    data_root: Path,
) -> None:
    generate(random.Random(11), HOURS, 300).write(data_root)
    run_rollup(root=data_root)
    target = layout.warehouse_hour_file(data_root, TABLE, HOURS[1])
    original = rows(target)
    flip_a_data_page(target)
    assert pq.ParquetFile(target).metadata.num_rows == len(original)  # the footer is intact

    doctor = run_doctor(settings=load_settings(data_dir=data_root), only=["warehouse"])
    warehouse = doctor.by_name()["warehouse"]
    assert warehouse.status == "fail"
    assert str(target.relative_to(layout.warehouse_root(data_root))) in warehouse.detail
    assert "gravix recover" in warehouse.hint

    result = CliRunner().invoke(app, ["recover", "--data-dir", str(data_root)], env=ENV)
    assert result.exit_code == 0, result.output
    assert str(target) in " ".join(result.output.split())
    assert len(list(layout.quarantine_root(data_root).rglob("*.parquet"))) == 1
    assert rows(target) == original

    again = recovery.run_recover(root=data_root)
    assert again.parquet_problems == []
    healthy = run_doctor(settings=load_settings(data_dir=data_root), only=["warehouse"])
    assert healthy.by_name()["warehouse"].status != "fail"


def test_the_rollup_writes_page_checksums_zstd_and_statistics(data_root: Path) -> None:
    generate(random.Random(12), HOURS[:1], 300).write(data_root)
    run_rollup(root=data_root)
    target = layout.warehouse_hour_file(data_root, TABLE, HOURS[0])
    meta = pq.ParquetFile(target).metadata.row_group(0)
    for i in range(meta.num_columns):
        assert meta.column(i).compression == "ZSTD"
        assert meta.column(i).is_stats_set
    # A reader that verifies checksums reads it; one flipped byte makes the same read fail.
    pq.ParquetFile(target, page_checksum_verification=True).read()
    flip_a_data_page(target)
    try:
        pq.ParquetFile(target, page_checksum_verification=True).read()
    except OSError as exc:
        assert "CRC" in str(exc)
    else:
        raise AssertionError("a flipped page passed the checksum verification")
