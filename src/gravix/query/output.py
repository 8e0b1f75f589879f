"""Result writers: table, csv, json, ndjson, parquet, to a file (atomically) or as bytes.

Stored strings come from clients, so they may hold terminal control sequences (``ESC]0;…``
retitles a terminal, ``ESC[2J`` clears it). The table format is for reading: it shows every
control character escaped (``\\x1b``), wherever it goes. The data formats stay exact data,
except on a terminal: csv shows control characters escaped there, and json/ndjson spell the
C1 and bidirectional controls as ``\\u`` escapes (JSON already escapes C0), which decode to
the same strings.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import polars as pl

from gravix.errors import QueryError
from gravix.storage import durable, layout

FORMATS: tuple[str, ...] = ("table", "csv", "json", "ndjson", "parquet")
NULL_TEXT = "null"


# C0 and C1 controls, DEL, and the Unicode controls that reorder or hide text.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def safe_text(text: str, *, keep: str = "") -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``, ``\\u202e``), so
    that printing it cannot drive a terminal; the characters in ``keep`` stay as they are."""
    return _CONTROLS.sub(lambda m: m.group() if m.group() in keep else _escape(m.group()), text)


def _json_safe(text: str) -> str:
    """JSON text with C1 and bidirectional controls as ``\\u`` escapes (same data)."""
    return _CONTROLS.sub(
        lambda m: m.group() if m.group() == "\n" else f"\\u{ord(m.group()):04x}", text
    )


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
    texts = [[safe_text(cell_text(v)).replace("|", "\\|") for v in row] for row in rows]
    columns = [safe_text(c) for c in columns]
    widths = [len(c) for c in columns]
    for row in texts:
        widths = [max(w, len(t)) for w, t in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(list(columns)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in texts)
    return "\n".join(out) + "\n"


def format_result(df: pl.DataFrame, fmt: str, *, terminal: bool = False) -> bytes:
    """The bytes of ``df`` in one of FORMATS; ``terminal``: they are shown on a terminal."""
    if fmt == "table":
        return render_table(df.columns, df.rows()).encode()
    if fmt == "csv":
        text = _flatten_nested(df).write_csv()
        return (safe_text(text, keep="\n") if terminal else text).encode()
    if fmt in ("json", "ndjson"):
        text = df.write_json() + "\n" if fmt == "json" else df.write_ndjson()
        return (_json_safe(text) if terminal else text).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        df.write_parquet(buffer, compression="zstd")
        return buffer.getvalue()
    raise QueryError(f"unknown format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}")


def write_result(
    df: pl.DataFrame, fmt: str, output: Path | None = None, *, terminal: bool = False
) -> bytes | None:
    """Write ``df`` as ``fmt`` to ``output`` (atomically: a reader never sees half a file) and
    return None, or return the bytes when there is no output file."""
    data = format_result(df, fmt, terminal=terminal and output is None)
    if output is None:
        return data
    write_output(Path(output), data)
    return None


def write_output(output: Path, data: bytes) -> None:
    """Write ``data`` to the file ``output`` atomically, only where asked: its directory must
    exist (none is created) and it must not be a directory. Nothing is left on failure."""
    parent = output.parent
    if not parent.is_dir():
        raise QueryError(
            f"cannot write {output}: the directory {parent} does not exist",
            hint="create it first, or give --output a file in an existing directory",
        )
    if output.is_dir():
        raise QueryError(
            f"cannot write {output}: it is a directory",
            hint="give --output a file name, e.g. --output result.csv",
        )
    try:
        durable.atomic_write(output, data, make_parents=False)
    except OSError as exc:
        raise QueryError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        tmp = layout.tmp_path(output)
        if os.path.lexists(tmp):
            os.unlink(tmp)
