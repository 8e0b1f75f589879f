"""`gravix doctor`: the runbook's troubleshooting list, run as checks.

The checks are in :mod:`gravix.ops.checks` (and :mod:`gravix.ops.probe` for the server);
:func:`run_doctor` runs them all. A check that cannot run (a module missing, an unexpected
error) becomes a result instead of an exception, so one broken part never hides the others.

Doctor only reads: it takes no lock, writes no file and sends the server nothing that is
stored (the key check posts an empty batch, which the server refuses).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from gravix.errors import GravixError
from gravix.ops.checks import (
    CHECK_SQL,
    FAIL,
    OK,
    WARN,
    Check,
    CheckResult,
    Context,
    Thresholds,
    check_bad_lines,
    check_buffer,
    check_data_root,
    check_disk,
    check_locks,
    check_query,
    check_raw,
    check_retention,
    check_rollup,
)
from gravix.ops.probe import UNAUTHORIZED_HINT, check_ingestion
from gravix.ops.store_checks import check_store_lease, check_store_rollup
from gravix.ops.uploads import check_node_buffer, check_not_on_store, check_uploads
from gravix.ops.warehouse import check_warehouse
from gravix.settings import Settings
from gravix.storage import guard


@dataclass(frozen=True)
class DoctorReport:
    JSON_EXTRA: ClassVar[tuple[str, ...]] = ("ok", "counts")

    data_dir: Path
    url: str
    checks: tuple[CheckResult, ...]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in (OK, WARN, FAIL)}

    def by_name(self) -> dict[str, CheckResult]:
        return {c.name: c for c in self.checks}


def check_permissions(ctx: Context) -> CheckResult:
    """Whether this user can write everywhere the commands write: a root made by another
    user (root, say) fails rollup, recover and cleanup with a permission error."""
    place = guard.first_unwritable(ctx.root)
    if place is None:
        return CheckResult("permissions", OK, f"{guard.current_user()} can write the data root")
    error = guard.permission_error(ctx.root, place, "write")
    return CheckResult("permissions", FAIL, error.message, error.hint or "")


CHECKS: tuple[tuple[str, Check], ...] = (
    ("ingestion", check_ingestion),
    ("permissions", check_permissions),
    ("buffer", check_buffer),
    ("disk", check_disk),
    ("raw", check_raw),
    ("rollup", check_rollup),
    ("bad lines", check_bad_lines),
    ("warehouse", check_warehouse),
    ("query", check_query),
    ("retention", check_retention),
    ("locks", check_locks),
)

# With a store (DESIGN §11): the node's buffer, upload backlog and disk, and the store's
# rollup state and lease.
NODE_CHECKS: tuple[tuple[str, Check], ...] = (
    ("ingestion", check_ingestion),
    ("permissions", check_permissions),
    ("buffer", check_node_buffer),
    ("uploads", check_uploads),
    ("disk", check_disk),
    ("locks", check_locks),
    ("rollup", check_store_rollup),
    ("lease", check_store_lease),
    ("store", check_not_on_store),
)


def _run_check(name: str, check: Check, ctx: Context) -> CheckResult:
    try:
        return check(ctx)
    except GravixError as exc:
        return CheckResult(name, FAIL, exc.message, exc.hint or "")
    except Exception as exc:  # a check that breaks is itself a finding, never a crash
        return CheckResult(
            name,
            FAIL,
            f"check could not run: {type(exc).__name__}: {exc}"[:200],
            "report this with the output of `gravix doctor --json`",
        )


def run_doctor(
    *,
    settings: Settings,
    now: datetime | None = None,
    thresholds: Thresholds | None = None,
    only: Iterable[str] | None = None,
) -> DoctorReport:
    """Run every check (or those named in ``only``) against ``settings.data_dir`` and
    ``settings.url`` (with a store, those of an ingest node: its buffer, upload backlog and
    disk, and the store's rollup state and lease); never raises for what it finds."""
    started = time.perf_counter()
    ctx = Context(
        settings=settings, now=now or datetime.now(UTC), limits=thresholds or Thresholds()
    )
    wanted = set(only) if only is not None else None
    results: list[CheckResult] = []
    root_result = _run_check("data root", check_data_root, ctx)
    results.append(root_result)
    for name, check in CHECKS if settings.store is None else NODE_CHECKS:
        if wanted is not None and name not in wanted:
            continue
        if root_result.status == FAIL and name != "ingestion":
            continue
        results.append(_run_check(name, check, ctx))
    return DoctorReport(
        data_dir=settings.data_dir,
        url=settings.url,
        checks=tuple(results),
        elapsed_s=time.perf_counter() - started,
    )


__all__ = [
    "CHECKS",
    "CHECK_SQL",
    "FAIL",
    "OK",
    "UNAUTHORIZED_HINT",
    "WARN",
    "CheckResult",
    "Context",
    "DoctorReport",
    "Thresholds",
    "run_doctor",
]
