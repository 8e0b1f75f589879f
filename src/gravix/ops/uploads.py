"""The checks of `gravix doctor` for an ingest node with a store (DESIGN §11): the upload
backlog (sealed buffer files on the local disk that the store has not confirmed yet) and
orphaned buffer files, which on such a node are only active files of dead processes (a
sealed file is the uploader's to take, not an orphan)."""

from __future__ import annotations

from gravix import schema
from gravix.ops.checks import FAIL, OK, WARN, CheckResult, Context
from gravix.storage import durable, layout
from gravix.storage.orphans import find_orphans
from gravix.storage.upload import backlog
from gravix.units import format_size

# A file waits for one rotation or so; longer means the uploads are failing or too slow.
BACKLOG_WARN_SECONDS = 5 * 60
BACKLOG_FAIL_SECONDS = 60 * 60
# The checks that read raw/, the warehouse or rollup state: not yet on a store.
NOT_ON_STORE = ("raw", "bad lines", "warehouse", "query", "retention")


def check_uploads(ctx: Context) -> CheckResult:
    store = ctx.settings.store_url
    found = backlog(ctx.root, schema.TOPICS, ctx.now.timestamp())
    if found.files == 0:
        return CheckResult("uploads", OK, f"upload backlog empty: everything is in {store}")
    detail = (
        f"upload backlog: {found.files} sealed file(s), {format_size(found.bytes)} waiting for "
        f"{store}; the oldest since {found.oldest_seconds:.0f} s"
    )
    if found.oldest_seconds < BACKLOG_WARN_SECONDS:
        return CheckResult("uploads", OK, detail)
    status = FAIL if found.oldest_seconds >= BACKLOG_FAIL_SECONDS else WARN
    return CheckResult(
        "uploads",
        status,
        detail,
        "check that the store answers (AWS_ENDPOINT_URL, credentials, the bucket) and see "
        "gravix_upload_failures on /metrics; a running `gravix ingest-server --store …` "
        "uploads them once it does, and uploads leftovers when it starts; nothing is lost "
        "meanwhile, but the local disk fills",
    )


def check_node_buffer(ctx: Context) -> CheckResult:
    orphans = [
        p
        for p in find_orphans(ctx.root)
        if (layout.parse_buffer_name(p) or ("",))[0] == "active" and not durable.is_locked(p)
    ]
    if orphans:
        return CheckResult(
            "buffer",
            FAIL,
            f"{len(orphans)} active buffer file(s) of dead server processes: "
            + ", ".join(p.name for p in orphans[:2]),
            "start `gravix ingest-server --store …` on this data root: it seals them and "
            "uploads them",
        )
    return CheckResult("buffer", OK, "no orphaned active files")


def check_not_on_store(ctx: Context) -> CheckResult:
    return CheckResult(
        "store",
        WARN,
        f"not checked on {ctx.settings.store_url} yet: " + ", ".join(NOT_ON_STORE),
        "run those checks on a data root (gravix doctor without --store)",
    )
