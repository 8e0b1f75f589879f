"""Reading one raw hour for the rollup: the good lines (decided by
:mod:`gravix.storage.raw`, as the query decides them), de-duplicated by ``event_id``, and
how many lines were bad or duplicates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gravix.storage import raw
from gravix.storage.layout import Hour

if TYPE_CHECKING:
    import polars as pl


@dataclass
class HourInput:
    frame: pl.DataFrame  # valid, de-duplicated rows
    files: dict[str, int]
    lines: int
    bad: int
    duplicates: int


def first_of_each(ids: pl.Series) -> pl.Series:
    """True at the first row of each distinct id, in order (so a rebuild aggregates the same
    rows in the same order). Exact, at the cost of hashing 64-bit numbers: rows whose id
    hashes to a value no other row has are firsts; only the few rows that share a hash
    (the duplicates, and in theory a collision) are compared as strings."""
    shared = ids.hash().is_duplicated()
    if not shared.any():
        return ~shared
    rows = shared.arg_true()
    return (~shared).scatter(rows, ids.gather(rows).is_first_distinct())


def load_hour(root: Path, topic: str, hour: Hour) -> HourInput:

    read = raw.read_hour(root, topic, hour)
    unique = read.frame.filter(first_of_each(read.frame.get_column("event_id")))
    return HourInput(
        frame=unique,
        files=read.files,
        lines=read.lines,
        bad=read.bad,
        duplicates=read.frame.height - unique.height,
    )
