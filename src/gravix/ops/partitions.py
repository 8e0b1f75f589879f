"""What cleanup plans and reports: the partitions it deletes, by area and table, and what
it did. Shared by cleanup on a data root (:mod:`gravix.ops.retention`) and on a store
(:mod:`gravix.ops.store_retention`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

from gravix.rollup.compact import CompactReport

Progress = Callable[[str, int, int], None]


RAW = "raw"
WAREHOUSE = "warehouse"
STATE = "state"


@dataclass
class Partition:
    """One ``event_day=`` directory to delete, with what it holds."""

    area: str  # raw | warehouse | state
    name: str  # topic or table
    day: date
    path: Path
    files: list[Path] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)  # deepest first, the partition itself last
    bytes: int = 0


@dataclass
class CleanupPlan:
    """What cleanup removes and why (the cutoffs), and what it refuses to touch."""

    root: Path
    today: date
    days: int
    warehouse_days: int
    partitions: list[Partition] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    # Closed days kept by the retention whose hour files will be joined into one file.
    compact: list[tuple[str, date]] = field(default_factory=list)
    # The object store cleaned instead of the data root's raw/ and warehouse/ (DESIGN §11).
    store: str | None = None

    @property
    def raw_cutoff(self) -> date:
        """Raw partitions of days before this one are deleted."""
        return self.today - timedelta(days=self.days)

    @property
    def warehouse_cutoff(self) -> date:
        return self.today - timedelta(days=self.warehouse_days)

    @property
    def files(self) -> int:
        return sum(len(p.files) for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    def tables(self) -> dict[str, dict[str, Any]]:
        """Partitions, files and bytes per topic or table (``raw.request_facts`` …)."""
        out: dict[str, dict[str, Any]] = {}
        for p in self.partitions:
            row = out.setdefault(
                f"{p.area}.{p.name}", {"partitions": 0, "files": 0, "bytes": 0, "days": []}
            )
            row["partitions"] += 1
            row["files"] += len(p.files)
            row["bytes"] += p.bytes
            row["days"].append(p.day.isoformat())
        return out


@dataclass
class CleanupReport:
    """What cleanup deleted (or, in a dry run, would delete): the plan's figures at the
    top level of the JSON document, as cron users read them."""

    JSON_EXTRA: ClassVar[tuple[str, ...]] = (
        "data_dir",
        "today",
        "days",
        "warehouse_days",
        "raw_cutoff",
        "warehouse_cutoff",
        "partitions",
        "files",
        "bytes",
        "tables",
        "skipped",
        "compact_days",
        "store",
    )

    plan: CleanupPlan = field(metadata={"json": False})
    dry_run: bool
    deleted_files: int = 0
    deleted_bytes: int = 0
    removed_dirs: int = 0
    compacted: CompactReport = field(default_factory=CompactReport)

    @property
    def data_dir(self) -> Path:
        return self.plan.root

    @property
    def today(self) -> date:
        return self.plan.today

    @property
    def days(self) -> int:
        return self.plan.days

    @property
    def warehouse_days(self) -> int:
        return self.plan.warehouse_days

    @property
    def raw_cutoff(self) -> date:
        return self.plan.raw_cutoff

    @property
    def warehouse_cutoff(self) -> date:
        return self.plan.warehouse_cutoff

    @property
    def partitions(self) -> int:
        return len(self.plan.partitions)

    @property
    def files(self) -> int:
        return self.plan.files

    @property
    def bytes(self) -> int:
        return self.plan.bytes

    def tables(self) -> dict[str, dict[str, Any]]:
        return self.plan.tables()

    @property
    def skipped(self) -> list[dict[str, str]]:
        return [{"path": str(p), "reason": r} for p, r in self.plan.skipped]

    @property
    def store(self) -> str | None:
        return self.plan.store

    @property
    def compact_days(self) -> list[dict[str, str]]:
        """The closed days the plan compacts (in a dry run: would compact)."""
        return [{"table": t, "day": d.isoformat()} for t, d in self.plan.compact]


# --- planning ---------------------------------------------------------------------------------
