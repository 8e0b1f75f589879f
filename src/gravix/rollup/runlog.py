"""The runs log (``state/rollup/runs.jsonl``): one summary per rollup run, newest last.

The planner reads it to know when the last incremental run planned every hour; the
doctor reads it for bad-line counts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gravix.storage import durable, layout

RUNS_KEPT = 200
INCREMENTAL = "incremental"


def recent_runs(root: Path, limit: int = 10) -> list[dict[str, Any]]:
    """The newest ``limit`` run summaries, newest first."""
    try:
        text = layout.rollup_runs_path(root).read_text(errors="replace")
    except OSError:
        return []
    runs: list[dict[str, Any]] = []
    for line in reversed(text.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            runs.append(value)
        if len(runs) >= limit:
            break
    return runs


def append_run(root: Path, document: dict[str, Any]) -> None:
    """Add one run summary, keeping the newest :data:`RUNS_KEPT`."""
    kept = list(reversed(recent_runs(root, RUNS_KEPT - 1)))
    lines = [json.dumps(r, separators=(",", ":")) for r in [*kept, document]]
    durable.atomic_write(layout.rollup_runs_path(root), ("\n".join(lines) + "\n").encode())


def last_full_plans(root: Path) -> dict[str, float]:
    """Per table, when the latest recorded incremental rollup started (floored to the
    second): that run planned every hour of the table after this moment."""
    out: dict[str, float] = {}
    for run in recent_runs(root, limit=50):  # newest first
        if run.get("mode") != INCREMENTAL:
            continue
        try:
            started = datetime.strptime(str(run["started_at"]), "%Y-%m-%dT%H:%M:%SZ")
        except (KeyError, ValueError):
            continue
        for table in run.get("tables") or []:
            out.setdefault(str(table), started.replace(tzinfo=UTC).timestamp())
    return out
