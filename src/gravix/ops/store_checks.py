"""The checks of `gravix doctor --store` that read the store itself (DESIGN §11): whether the
rollup is behind, judged by the store's raw objects and manifests with the store's own
planner, and the state of the rollup's lease. Both only read the store."""

from __future__ import annotations

import time
from datetime import timedelta

from gravix import schema
from gravix.ops.checks import FAIL, OK, WARN, CheckResult, Context
from gravix.rollup.plan import MISSING, REMOVED
from gravix.rollup.store_plan import look, plan_store_table
from gravix.storage import lease
from gravix.storage.store import open_store

HOUR = timedelta(hours=1)


def check_store_rollup(ctx: Context) -> CheckResult:
    """Hours the rollup would build, from the store's listing. An object's name carries
    its hour but the listing no arrival time, so an hour counts as due once it ended more
    than the grace ago (or lost its Parquet object); younger ones wait for the next run."""
    store = open_store(ctx.settings)
    view = look(store, ctx.root, list(schema.TABLES))
    pending = [
        p for t in schema.TABLES for p in plan_store_table(ctx.root, view, t) if p.reason != REMOVED
    ]
    limit = ctx.now - ctx.limits.rollup_grace
    due = [p for p in pending if p.hour.start + HOUR <= limit or p.reason == MISSING]
    if due:
        hours = sorted({p.hour for p in due})
        shown = ", ".join(str(h) for h in hours[:3]) + (" …" if len(hours) > 3 else "")
        reasons = ", ".join(sorted({p.reason for p in due}))
        return CheckResult(
            "rollup",
            FAIL,
            f"{len(hours)} hour(s) in {store.url} not rolled up ({reasons}): {shown}",
            f"run `gravix rollup --store {store.url}` (incremental: it builds exactly these)",
        )
    if pending:
        waiting = len({p.hour for p in pending})
        return CheckResult(
            "rollup", OK, f"{waiting} recent hour(s) in {store.url} wait for the next rollup"
        )
    return CheckResult("rollup", OK, f"every raw hour in {store.url} is rolled up")


def check_store_lease(ctx: Context) -> CheckResult:
    store = open_store(ctx.settings)
    state = lease.current(store)
    if state is None or state.released:
        return CheckResult("lease", OK, f"no rollup holds the lease of {store.url}")
    if state.live(time.time()):
        return CheckResult("lease", OK, f"the rollup lease is held by {state.holder()}")
    return CheckResult(
        "lease",
        WARN,
        f"the rollup lease of {store.url} was left by {state.holder()}, which died: "
        "the next rollup takes it over",
        f"run `gravix rollup --store {store.url}` or `gravix recover --store {store.url}`",
    )
