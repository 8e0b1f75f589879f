"""Result writers: table, csv, json, ndjson, parquet, to a file (atomically) or as bytes."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import polars as pl

from gravix.errors import QueryError
from gravix.storage import durable

FORMATS: tuple[str, ...] = ("table", "csv", "json", "ndjson", "parquet")
NULL_TEXT = "null"


def _is_nested(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.List | pl.Array | pl.Struct)


def _json_value(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _flatten_nested(df: pl.DataFrame) -> pl.DataFrame:
    """Nested columns as JSON text, for formats that hold only scalars."""
    nested = [name for name, dtype in df.schema.items() if _is_nested(dtype)]
    if not nested:
        return df
    return df.with_columns(
        pl.Series(
            name,
            [None if v is None else json.dumps(_json_value(v)) for v in df[name].to_list()],
            dtype=pl.String,
        )
        for name in nested
    )


def cell_text(value: object) -> str:
    """How one value reads in the table format: floats in full (shortest round-trip) form."""
    if value is None:
        return NULL_TEXT
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(_json_value(value))
    return str(value)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain pipe table (a Markdown table): aligned for reading and easy to parse."""
    texts = [[cell_text(v).replace("|", "\\|").replace("\n", " ") for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in texts:
        widths = [max(w, len(t)) for w, t in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(list(columns)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in texts)
    return "\n".join(out) + "\n"


def format_result(df: pl.DataFrame, fmt: str) -> bytes:
    """The bytes of ``df`` in one of FORMATS."""
    if fmt == "table":
        return render_table(df.columns, df.rows()).encode()
    if fmt == "csv":
        return _flatten_nested(df).write_csv().encode()
    if fmt == "json":
        return (df.write_json() + "\n").encode()
    if fmt == "ndjson":
        return df.write_ndjson().encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        df.write_parquet(buffer, compression="zstd")
        return buffer.getvalue()
    raise QueryError(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")


def write_result(df: pl.DataFrame, fmt: str, output: Path | None = None) -> bytes | None:
    """Write ``df`` as ``fmt`` to ``output`` (atomically: a reader never sees half a file) and
    return None, or return the bytes when there is no output file."""
    data = format_result(df, fmt)
    if output is None:
        return data
    try:
        durable.atomic_write(Path(output), data)
    except OSError as exc:
        raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from None
    return None
