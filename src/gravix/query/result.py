"""What a preset answers: a frame, the window it covers and how to read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import polars as pl

from gravix.schema import sketch


@dataclass(frozen=True)
class PresetResult:
    """One preset's answer: a frame plus the window it covers and how to read it. Rendered
    as JSON by :func:`gravix.report.to_json` (the frame as ``rows``)."""

    JSON_EXTRA: ClassVar[tuple[str, ...]] = ("rows",)

    preset: str
    title: str
    frame: pl.DataFrame = field(metadata={"json": False})
    since: datetime
    until: datetime
    step_minutes: int | None = None
    relative_error: float = field(
        default=sketch.RELATIVE_ERROR, metadata={"json": "percentile_relative_error"}
    )
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.frame.to_dicts()
