"""`gravix recover`: orphaned buffer files into raw, stray temporaries, corrupt Parquet."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gravix.cli.app import TIME, DataDir, Json, StoreUrl, app, boundary

if TYPE_CHECKING:
    from gravix.ops.recovery import RecoverReport
    from gravix.ops.store_recovery import StoreRecoverReport
    from gravix.storage.orphans import BufferRecoveryReport


@app.command("recover")
def recover_command(
    data_dir: DataDir = None,
    store: StoreUrl = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and change nothing.")
    ] = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also decode every Parquet file with the query engine (every page and its "
            "checksum is read either way).",
        ),
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild", help="Also roll up the window --start-time … --end-time again from raw."
        ),
    ] = False,
    start_time: Annotated[
        datetime | None,
        typer.Option(
            "--start-time",
            parser=TIME,
            help="Window start for --rebuild (RFC 3339 or a time ago like 24h; inclusive).",
            show_default=False,
        ),
    ] = None,
    end_time: Annotated[
        datetime | None,
        typer.Option(
            "--end-time",
            parser=TIME,
            help="Window end for --rebuild (as --start-time, exclusive).",
            show_default=False,
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Recover after a crash: move orphaned buffer files into raw (torn tails dropped,
    damaged lines quarantined), remove stray temporary files, quarantine unreadable Parquet
    and rebuild its hours from raw. Safe to interrupt and run again. With --store: seal
    this node's orphaned buffer files (its uploader sends them), take over a dead
    rollup's lease, and rebuild the hours whose manifest and Parquet object disagree.

    Example: gravix recover --deep --dry-run
    """
    from gravix.cli.render import progress
    from gravix.errors import ConfigError
    from gravix.ops.recovery import run_recover
    from gravix.ops.store_recovery import StoreRecoverReport
    from gravix.settings import load_settings
    from gravix.storage import durable

    with boundary(json=json):
        if (start_time or end_time) and not rebuild:
            raise ConfigError(
                "--start-time and --end-time go with --rebuild",
                hint="add --rebuild to roll that window up again",
            )
        if rebuild and not (start_time and end_time):
            raise ConfigError(
                "--rebuild needs --start-time and --end-time",
                hint="e.g. --rebuild --start-time 2026-02-16T10:00:00Z "
                "--end-time 2026-02-16T11:00:00Z",
            )
        settings = load_settings(data_dir=data_dir, store=store)
        durable.install_fault_plan(settings.fault_plan)
        with progress(not json, "recovering") as bar:
            report = run_recover(
                root=settings.data_dir,
                dry_run=dry_run,
                deep=deep,
                rebuild_start=start_time,
                rebuild_end=end_time,
                progress=bar,
                store=settings.store,
                node_id=settings.node_id,
                lease_seconds=settings.lease_seconds,
            )
    if json:
        from gravix.cli.render import print_json
        from gravix.report import to_json

        print_json(to_json(report))
    elif isinstance(report, StoreRecoverReport):
        _render_store(report)
    else:
        _render(report)


_WOULD = {
    "moved": "to move",
    "moved to quarantine": "to move to quarantine",
    "dropped": "to drop",
    "quarantined": "to quarantine",
    "removed": "to remove",
    "rebuilt": "to rebuild",
    "rolled up again": "to roll up again",
}


def _would(dry: bool, past: str) -> str:
    """What was done (``past``), or in a dry run what would be done."""
    return _WOULD[past] if dry else past


def _render(report: RecoverReport) -> None:
    from gravix.cli.render import console

    out = console()
    dry = report.dry_run
    would = partial(_would, dry)

    out.print(f"Recover {report.root}", highlight=False)
    _render_buffers(out, report.buffers, would)
    out.print(
        f"  temporaries: {len(report.temporaries)} stray file(s) {would('removed')}",
        highlight=False,
    )
    bad = sum(d.bad_lines for d in report.raw_damaged)
    out.print(
        f"  raw: {bad} damaged line(s) in {len(report.raw_damaged)} file(s) "
        f"{would('moved to quarantine')}",
        highlight=False,
    )
    for damaged in report.raw_damaged:
        out.print(f"    {damaged.path}: {damaged.bad_lines} line(s)", highlight=False, markup=False)
        if damaged.quarantined:
            out.print(f"      → {damaged.quarantined}", highlight=False, markup=False)
    mode = "pages, checksums and query decode" if report.deep else "pages and checksums"
    out.print(
        f"  parquet: {report.parquet_checked} file(s) checked ({mode}), "
        f"{len(report.parquet_problems)} unreadable",
        highlight=False,
    )
    for problem in report.parquet_problems:
        out.print(f"    [red]{problem.path}[/]: {problem.error}", highlight=False)
        if problem.quarantined:
            out.print(f"      → {problem.quarantined}", highlight=False)
    for table, hours in report.rebuild_hours.items():
        out.print(f"  rebuild: {table}: {len(hours)} hour(s) {would('rebuilt')} from raw")
    for table, hours in report.not_rebuildable.items():
        out.print(
            f"  [yellow]rebuild: {table}: {len(hours)} hour(s) have no raw facts left "
            f"(retention); their files stay in quarantine[/]",
            highlight=False,
        )
    if report.window:
        out.print(
            f"  window: {report.window[0]} – {report.window[1]} {would('rolled up again')}",
            highlight=False,
        )
    for summary in report.rebuilt:
        out.print(f"  rollup: {summary['message']}", highlight=False)
    if dry:
        out.print("No files were changed.")
    else:
        out.print("Recovery complete.")


def _render_buffers(out: Any, buffers: BufferRecoveryReport, would: Callable[[str], str]) -> None:
    if buffers.published:
        touched = {h for p in buffers.published for h in p.hours}
        out.print(
            f"  buffer: {len(buffers.published)} orphaned file(s) {would('moved')} into raw: "
            f"{buffers.lines:,} lines in {len(touched)} hour(s)"
            + (f", {len(buffers.activated)} left by dead processes" if buffers.activated else ""),
            highlight=False,
        )
    else:
        out.print("  buffer: no orphaned files", highlight=False)
    if buffers.torn_tail_lines:
        out.print(
            f"  buffer: {buffers.torn_tail_lines} torn tail line(s) "
            f"{would('dropped')} (unfinished writes)",
            highlight=False,
        )
    if buffers.damaged_lines:
        out.print(
            f"  [yellow]buffer: {buffers.damaged_lines} damaged line(s) {would('quarantined')}[/]",
            highlight=False,
        )
    for p in buffers.published:
        if p.quarantined:
            out.print(f"    quarantine: {p.quarantined}", highlight=False)
    if buffers.skipped_live:
        out.print(
            f"  buffer: {len(buffers.skipped_live)} file(s) held by a live server, left alone",
            highlight=False,
        )


def _render_store(report: StoreRecoverReport) -> None:
    from gravix.cli.render import console

    out = console()
    dry = report.dry_run
    would = partial(_would, dry)

    out.print(f"Recover {report.store} (node {report.data_dir})", highlight=False)
    if report.buffers is not None:
        sealed = len(report.buffers.activated)
        out.print(
            f"  buffer: {sealed} orphaned active file(s) sealed for upload"
            + (" (dry run)" if dry else ""),
            highlight=False,
        )
    if report.dead_lease is not None:
        out.print(
            f"  lease: left by {report.dead_lease.holder()}, expired; "
            f"{would('removed') if dry else 'taken over and released'}",
            highlight=False,
        )
    else:
        out.print("  lease: no lease of a dead runner", highlight=False)
    out.print(f"  parquet: {report.parquet_checked} object footer(s) checked", highlight=False)
    for problem in report.problems:
        action = would("rebuilt") if problem.rebuildable else "kept (no raw objects left)"
        out.print(
            f"    {problem.table} {problem.hour}: {problem.problem}; {action}",
            highlight=False,
            markup=False,
        )
    for table, hours in report.pending.items():
        out.print(
            f"  pending: {table}: {len(hours)} hour(s) for the next `gravix rollup --store`",
            highlight=False,
        )
    for summary in report.rebuilt:
        out.print(f"  rollup: {summary['message']}", highlight=False)
    out.print("No files were changed." if dry else "Recovery complete.")
