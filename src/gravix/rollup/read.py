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
class _HourInput:
    frame: pl.DataFrame  # valid, de-duplicated rows
    files: dict[str, int]
    lines: int
    bad: int
    duplicates: int


def load_hour(root: Path, topic: str, hour: Hour) -> _HourInput:
    import polars as pl

    read = raw.read_hour(root, topic, hour)
    # The first line of each event_id, in file order (so a rebuild aggregates the same
    # rows in the same order); eager, which measured four times faster than a lazy unique().
    unique = read.frame.filter(pl.col("event_id").is_first_distinct())
    return _HourInput(
        frame=unique,
        files=read.files,
        lines=read.lines,
        bad=read.bad,
        duplicates=read.frame.height - unique.height,
    )
