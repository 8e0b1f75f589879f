"""Writing and removing the warehouse's Parquet files: one writer for every file the
rollup makes (an hour, a day of events, a compacted day), so all share one format."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gravix.errors import StorageError
from gravix.storage import durable, links

if TYPE_CHECKING:
    import polars as pl


def write_parquet(
    root: Path, frame: pl.DataFrame, path: Path, *, row_group_rows: int | None = None
) -> None:
    """ZSTD with statistics, as polars writes it, plus a CRC on every page: a page damaged
    on disk behind an intact footer is then found by doctor and recover, not by a query.
    Only the text columns (a few services, methods and paths, repeated) are dictionary
    encoded: a dictionary of times, numbers and histograms, nearly all distinct, costs a
    third of the write and makes the file larger. Replaced atomically (a reader sees the
    old file or the new)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    links.ensure_inside(root, path.parent if path.parent.exists() else root)
    hint = "check free space and permissions under the data root"
    table = frame.to_arrow()
    text = [
        f.name
        for f in table.schema
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    try:
        with durable.atomic_output(path) as tmp:
            pq.write_table(
                table,
                tmp,
                row_group_size=row_group_rows,
                compression="zstd",
                write_statistics=True,
                write_page_checksum=True,
                use_dictionary=text,
            )
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc.strerror or exc}", hint=hint, errno=exc.errno
        ) from None
    except pa.ArrowException as exc:  # the writer reports I/O failures its own way
        raise StorageError(f"cannot write {path}: {exc}", hint=hint) from None


def read_parquet(path: Path, doing: str) -> pl.DataFrame:
    """A warehouse file whole, read to ``doing`` (words for the error); a file that does
    not read is a StorageError whose hint is recover, which quarantines it and rebuilds
    its hours from raw."""
    import polars as pl

    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise StorageError(
            f"cannot read {path} to {doing}: {str(exc).splitlines()[0]}",
            hint="run `gravix recover`: it quarantines a damaged file and rebuilds its "
            "hours from raw",
        ) from None


def remove_output(path: Path) -> None:
    try:
        durable.unlink(path)
    except OSError as exc:
        raise StorageError(
            f"cannot remove {path}: {exc.strerror or exc}", errno=exc.errno
        ) from None
