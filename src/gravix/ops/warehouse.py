"""The warehouse check: every Parquet file's footer and columns, every page of the newest
files (checksums verified), and how fresh the newest minute is."""

from __future__ import annotations

import os
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from gravix import schema
from gravix.ops.checks import FAIL, OK, WARN, CheckResult, Context, _ago, _mtime, _plural
from gravix.ops.recovery import check_parquet
from gravix.storage import layout

# Doctor reads every page (checksums verified) of the newest warehouse files that hold this
# many hours (a compacted day holds 24) and the footer of the rest; `gravix recover` reads
# every page of every file.
VERIFY_HOURS = 48


def _parquet_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for table in schema.WAREHOUSE_TABLES:
        for day_dir in layout.warehouse_days(root, table).values():
            with suppress(FileNotFoundError), os.scandir(day_dir) as entries:
                files.extend(
                    Path(e.path)
                    for e in entries
                    if e.name.endswith(layout.PARQUET)
                    and not e.name.startswith(".")
                    and e.is_file(follow_symlinks=False)
                )
    return files


def _newest_file(root: Path) -> Path | None:
    """The file of the newest hour of request_metrics_minute (an hour's, or a compacted
    day's)."""
    table = schema.REQUEST_METRICS_MINUTE
    for day_dir in reversed(layout.warehouse_days(root, table).values()):
        with os.scandir(day_dir) as entries:
            names = layout.readable_files(table, [e.name for e in entries])
        if names:
            return day_dir / names[-1]
    return None


def _newest_hours(files: list[Path]) -> set[Path]:
    """The newest files (by modification) that hold up to VERIFY_HOURS hours between them."""
    chosen: set[Path] = set()
    held = 0
    for path in sorted(files, key=_mtime, reverse=True):
        held += max(1, len(layout.parse_warehouse_file(path.parent.parent.name, path)))
        if held > VERIFY_HOURS and chosen:
            break
        chosen.add(path)
    return chosen


def _unusable(root: Path, files: list[Path]) -> list[str]:
    """Files whose footer cannot be read, whose metrics columns are missing, or (for the
    newest ones, see VERIFY_HOURS) whose pages fail their checksums."""
    verify = _newest_hours(files)
    base = layout.warehouse_root(root)
    expected = set(schema.REQUEST_METRICS_COLUMNS)
    metrics_dirs = [
        layout.warehouse_table_dir(root, table)
        for table in (schema.REQUEST_METRICS_MINUTE, schema.REQUEST_METRICS_HOUR)
    ]
    broken: list[str] = []
    for path in files:
        try:
            columns = set(pl.read_parquet_schema(path))
        except (OSError, pl.exceptions.PolarsError) as exc:
            if path.exists():  # else removed meanwhile by cleanup or recovery
                broken.append(f"{path.relative_to(base)} ({str(exc).splitlines()[0][:60]})")
            continue
        if path.parent.parent in metrics_dirs and not expected <= columns:
            missing = ", ".join(sorted(expected - columns)[:3])
            broken.append(f"{path.relative_to(base)} (columns missing: {missing})")
        elif path in verify and (problem := check_parquet(path)) is not None:
            broken.append(f"{path.relative_to(base)} ({problem[:80]})")
    return broken


def _newest_bucket(root: Path, broken: list[str]) -> datetime | None:
    """The newest bucket of the newest file (the one dashboards show), decoded in
    full; a failure to decode it is added to ``broken``."""
    newest_file = _newest_file(root)
    if newest_file is None:
        return None
    try:
        value = pl.read_parquet(newest_file)["bucket_start"].max()
    except (OSError, pl.exceptions.PolarsError) as exc:
        name = newest_file.relative_to(layout.warehouse_root(root))
        broken.append(f"{name} ({str(exc).splitlines()[0][:60]})")
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def check_warehouse(ctx: Context) -> CheckResult:
    files = _parquet_files(ctx.root)
    if not files:
        return CheckResult(
            "warehouse",
            WARN,
            "no Parquet files yet",
            "run `gravix rollup` to build the warehouse from raw",
        )
    broken = _unusable(ctx.root, files)
    newest = None if broken else _newest_bucket(ctx.root, broken)
    if broken:
        return CheckResult(
            "warehouse",
            FAIL,
            f"{_plural(len(broken), 'unusable Parquet file')} of {len(files)}: {broken[0]}"
            + (" …" if len(broken) > 1 else ""),
            "run `gravix recover` to quarantine them and rebuild those hours from raw",
        )
    if newest is None:
        return CheckResult("warehouse", OK, f"{_plural(len(files), 'Parquet file')} readable")
    age = (ctx.now - newest).total_seconds()
    detail = (
        f"{_plural(len(files), 'Parquet file')} readable; newest bucket "
        f"{newest:%Y-%m-%d %H:%M} UTC ({_ago(age)})"
    )
    if age > ctx.limits.warehouse_stale.total_seconds():
        return CheckResult(
            "warehouse",
            WARN,
            detail,
            "no recent metrics: run `gravix rollup` (and see the raw check)",
        )
    return CheckResult("warehouse", OK, detail)
