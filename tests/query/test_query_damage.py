"""Damaged data never ends a query in a traceback.

A warehouse file with its footer intact and a data page corrupted makes every preset and
SQL end in one clear error naming the file and the fix (`gravix recover --deep`). A damaged
raw line is skipped and counted by the query exactly as by the rollup (DESIGN §8), and
`gravix recover` moves it to quarantine without losing it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gravix import schema
from gravix.cli import app
from gravix.ops.recovery import run_recover
from gravix.query import answer_sql
from gravix.rollup import run_rollup
from gravix.storage import layout
from gravix.storage.layout import Hour
from test_query_support import DEPLOY_STARTED, build_warehouse, make_facts, populate, write_raw

ENV = {"GRAVIX_DATA_DIR": "", "NO_COLOR": "1", "COLUMNS": None, "GRAVIX_CONSOLE_WIDTH": None}
WINDOW = ("--since", "2026-02-16T08:00:00Z", "--until", "2026-02-16T12:00:00Z")


def invoke(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["query", *args, "--data-dir", str(root)], env=ENV)


def flip_column_page(path: Path, column: str) -> None:
    """Corrupt the middle of one column chunk's data page; the footer stays intact."""
    meta = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(
        meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column
    )
    data = bytearray(path.read_bytes())
    middle = chunk.data_page_offset + chunk.total_compressed_size // 2
    for i in range(middle, middle + 8):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))


def unreadable(path: Path) -> bool:
    """Whether polars fails reading ``path`` whole and for each service the presets ask."""
    reads = [
        lambda: pl.read_parquet(path),
        *(
            lambda service=service: (
                pl.scan_parquet(path).filter(pl.col("service") == service).collect()
            )
            for service in ("api", "frontend")
        ),
    ]
    for read in reads:
        try:
            read()
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
            continue
        return False
    return True


def damage(target: Path) -> None:
    """One data page of ``target`` corrupted (the footer intact) so that polars cannot read
    it whole nor for one service: corrupted bytes do not always fail a read (polars may
    decode them silently), so the first column chunk whose damage does is kept."""
    original = target.read_bytes()
    meta = pq.ParquetFile(target).metadata.row_group(0)
    for i in range(meta.num_columns):
        target.write_bytes(original)
        flip_column_page(target, meta.column(i).path_in_schema)
        assert pq.ParquetFile(target).metadata.num_rows > 0  # the footer still reads
        if unreadable(target):
            return
    raise AssertionError("no single corrupted page made the file unreadable")


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A real rollup's files of one hour, in the minute and in the hour table, each with a
    data page corrupted: the hour of the deploy, so that every preset (the deploy's windows
    too) reads one of them (a whole hour of a window is read from the hour table)."""
    root = tmp_path_factory.mktemp("damage") / "data"
    populate(root, minutes=240)
    build_warehouse(root)
    hour = Hour.of(DEPLOY_STARTED)
    targets = [
        layout.warehouse_hour_file(root, table, hour)
        for table in ("request_metrics_minute", "request_metrics_hour")
    ]
    for target in targets:
        damage(target)
    return root, targets


@pytest.mark.parametrize(
    "args",
    [
        ("SELECT * FROM request_metrics_minute",),
        ("SELECT * FROM gravix.raw.request_metrics_minute WHERE error_count > 0",),
        ("--preset", "health", "--service", "api", *WINDOW),
        ("--preset", "top-endpoints", *WINDOW),
        ("--preset", "endpoint", "--service", "api", "--endpoint", "/checkout", *WINDOW),
        ("--preset", "apdex", "--threshold", "300", *WINDOW),
        ("--preset", "deploy", "--service", "frontend", *WINDOW),
    ],
)
def test_a_damaged_parquet_page_is_one_error_naming_the_file_and_the_fix(
    damaged: tuple[Path, list[Path]], args: tuple[str, ...]
) -> None:
    root, targets = damaged
    result = invoke(root, *args)
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "Traceback" not in output and "ComputeError" not in output
    assert any(str(target) in result.stderr for target in targets), result.stderr
    assert "gravix recover --deep" in result.stderr


# --- damaged raw lines -----------------------------------------------------------------------

BAD_LINES = [
    b'{"event_id": tru',  # torn: not JSON at all
    b"\x00\x00\x00\x00",  # zero fill
    b'{"event_id":"x","event_time":"2026-02-16T08:00:01.000Z","service":"api",'
    b'"method":"GET","path_template":"/","status_code":999,"latency_ms":1}',  # out of range
]


@pytest.fixture()
def raw_root(tmp_path: Path) -> tuple[Path, Path, int]:
    """Raw facts with three damaged lines in one file of the first hour; returns the root,
    that file and the number of good facts."""
    root = tmp_path / "data"
    facts = make_facts(minutes=120, per_minute=6)
    write_raw(root, schema.REQUEST_FACTS, facts)
    first = sorted(layout.raw_hours(root, schema.REQUEST_FACTS).items())[0][1]
    path = layout.raw_files(first)[0]
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join([lines[0], *BAD_LINES, *lines[1:]]) + b"\n")
    return root, path, len(facts)


def test_sql_over_raw_skips_and_counts_the_lines_the_rollup_skips(
    raw_root: tuple[Path, Path, int],
) -> None:
    root, _, good = raw_root
    sql = "SELECT status_code, count(*) FROM request_facts GROUP BY 1 ORDER BY 1"
    result = invoke(root, sql, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    counted = sum(int(line.split(",")[1]) for line in result.stdout.splitlines()[1:])
    summary = run_rollup(root=root)
    assert counted == good == summary.lines - summary.bad_lines
    assert summary.bad_lines == len(BAD_LINES)
    assert f"{len(BAD_LINES)} damaged line(s) of raw request_facts skipped" in result.stderr
    document = json.loads(invoke(root, sql, "--json").stdout)
    assert document["skipped_lines"] == {"request_facts": len(BAD_LINES)}
    assert sum(row["count"] for row in document["rows"]) == good


def test_recover_moves_damaged_raw_lines_to_quarantine_and_loses_none(
    raw_root: tuple[Path, Path, int],
) -> None:
    root, path, good = raw_root
    before = path.read_bytes()
    planned = run_recover(root=root, dry_run=True)
    assert [(d.path, d.bad_lines) for d in planned.raw_damaged] == [(path, len(BAD_LINES))]
    assert path.read_bytes() == before  # a dry run changes nothing
    shown = CliRunner().invoke(app, ["recover", "--dry-run", "--data-dir", str(root)], env=ENV)
    assert f"{len(BAD_LINES)} damaged line(s) in 1 file(s)" in shown.stdout, shown.stdout
    assert "No files were changed." in shown.stdout

    done = run_recover(root=root)
    moved = done.raw_damaged[0].quarantined
    assert moved is not None and moved.is_relative_to(layout.quarantine_root(root))
    assert moved.read_bytes().splitlines() == BAD_LINES
    kept = path.read_bytes().splitlines()
    assert sorted(kept + BAD_LINES) == sorted(before.splitlines())  # every line is somewhere
    answer = answer_sql(root, "SELECT count(*) FROM request_facts")
    assert answer.skipped_lines == {} and answer.frame["count"][0] == good
    assert run_recover(root=root, dry_run=True).raw_damaged == []


def test_a_raw_file_of_only_damaged_lines_is_moved_whole(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_raw(root, schema.REQUEST_FACTS, make_facts(minutes=60, per_minute=2))
    hour_dir = next(iter(layout.raw_hours(root, schema.REQUEST_FACTS).values()))
    junk = hour_dir / "junk.jsonl"
    shutil.copy(layout.raw_files(hour_dir)[0], junk)
    junk.write_bytes(b"\n".join(BAD_LINES[:2]) + b"\n")
    done = run_recover(root=root)
    assert not junk.exists()
    moved = done.raw_damaged[0].quarantined
    assert moved is not None and moved.read_bytes().splitlines() == BAD_LINES[:2]
