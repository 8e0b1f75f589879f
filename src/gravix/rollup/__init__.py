"""Rollup: raw facts → per-minute and per-hour Parquet metrics (DESIGN §6, §7)."""

from gravix.rollup.build import HourResult
from gravix.rollup.plan import PlannedHour, plan_hours, read_manifest
from gravix.rollup.run import LOCK_NAME, RollupSummary, rebuild_hours, recent_runs, run_rollup

__all__ = [
    "LOCK_NAME",
    "HourResult",
    "PlannedHour",
    "RollupSummary",
    "plan_hours",
    "read_manifest",
    "rebuild_hours",
    "recent_runs",
    "run_rollup",
]
