"""`gravix cleanup`: delete raw and warehouse partitions older than the retention."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from gravix.cli.app import DataDir, Json, StoreUrl, app, boundary
from gravix.units import format_size

if TYPE_CHECKING:
    from gravix.ops.partitions import CleanupReport


@app.command("cleanup")
def cleanup_command(
    data_dir: DataDir = None,
    store: StoreUrl = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            help="Keep raw facts of this many days before today (env GRAVIX_RETENTION_DAYS, "
            "default 30).",
            show_default=False,
        ),
    ] = None,
    warehouse_days: Annotated[
        int | None,
        typer.Option(
            "--warehouse-days",
            help="Keep warehouse metrics this many days (env GRAVIX_WAREHOUSE_RETENTION_DAYS, "
            "default 30).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and change nothing.")
    ] = False,
    json: Json = False,
) -> None:
    """Delete raw and warehouse partitions whose event day is older than the retention,
    judged by the partition's date. The buffer is never touched; a running rollup is
    waited for. With --store the partitions are the store's objects (closed days are not
    compacted there).

    Example: gravix cleanup --days 30 --warehouse-days 90 --dry-run
    """
    from gravix.cli.render import progress
    from gravix.ops.retention import run_cleanup
    from gravix.settings import load_settings

    with boundary(json=json):
        settings = load_settings(
            store=store,
            data_dir=data_dir,
            retention_days=days,
            warehouse_retention_days=warehouse_days,
        )
        with progress(not json, "deleting partitions") as bar:
            report = run_cleanup(
                root=settings.data_dir,
                days=settings.retention_days,
                warehouse_days=settings.warehouse_retention_days,
                dry_run=dry_run,
                progress=bar,
                store=settings.store,
                node_id=settings.node_id,
                lease_seconds=settings.lease_seconds,
            )
    if json:
        from gravix.cli.render import print_json
        from gravix.report import to_json

        print_json(to_json(report))
    else:
        _render(report)


def _render(report: CleanupReport) -> None:
    from rich.table import Table

    from gravix.cli.render import console

    plan = report.plan
    out = console()
    out.print(
        f"Retention: raw before {plan.raw_cutoff} ({plan.days} days), warehouse before "
        f"{plan.warehouse_cutoff} ({plan.warehouse_days} days), in {plan.store or plan.root}",
        highlight=False,
    )
    tables = plan.tables()
    if tables:
        table = Table(
            title="delete" if not report.dry_run else "would delete", title_justify="left"
        )
        for col in ("table", "partitions", "files", "bytes", "event days"):
            table.add_column(col, justify="right" if col in ("partitions", "files") else "left")
        for name, row in tables.items():
            days = sorted(row["days"])
            span = days[0] if len(days) == 1 else f"{days[0]} … {days[-1]}"
            table.add_row(
                name, str(row["partitions"]), str(row["files"]), format_size(row["bytes"]), span
            )
        out.print(table)
    for path, reason in plan.skipped:
        out.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)
    _render_compaction(report)
    if report.dry_run:
        out.print(
            f"Would delete {len(plan.partitions)} partitions, {plan.files} files, "
            f"{format_size(plan.bytes)}.",
            highlight=False,
        )
        out.print("No files were changed.")
    elif not plan.partitions:
        out.print("Nothing is older than the retention; nothing deleted.")
    else:
        out.print(
            f"Deleted {len(plan.partitions)} partitions: {report.deleted_files} files, "
            f"{format_size(report.deleted_bytes)}; removed {report.removed_dirs} directories.",
            highlight=False,
        )


def _render_compaction(report: CleanupReport) -> None:
    from gravix.cli.render import console

    out = console()
    if report.plan.store is not None:
        out.print("Closed days are not compacted on a store: hour objects stay.")
        return
    if report.dry_run:
        if report.plan.compact:
            out.print(f"Would compact {len(report.plan.compact)} closed day(s) into one file each.")
        return
    done = report.compacted.days
    if done:
        files = sum(day.hour_files for day in done)
        out.print(
            f"Compacted {len(done)} closed day(s): {files} hour files into {len(done)}.",
            highlight=False,
        )
    for where, reason in report.compacted.skipped:
        out.print(f"[yellow]not compacted[/] {where}: {reason}", highlight=False)
