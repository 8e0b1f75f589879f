"""`gravix rollup`: raw facts → per-minute metrics and daily service events."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from gravix.cli.app import TIME, DataDir, Json, StoreUrl, app, boundary

if TYPE_CHECKING:
    from gravix.rollup import RollupSummary


@app.command("rollup")
def rollup_command(
    start_time: Annotated[
        datetime | None,
        typer.Option(
            "--start-time",
            parser=TIME,
            help="Window start: RFC 3339 (e.g. 2026-02-16T10:00:00Z) or a time ago "
            "(24h, 7d); widened down to a whole hour.",
            show_default=False,
        ),
    ] = None,
    end_time: Annotated[
        datetime | None,
        typer.Option(
            "--end-time",
            parser=TIME,
            help="Window end (exclusive), as --start-time or now; widened up to a whole hour.",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        str,
        typer.Option(
            "--table",
            help="request_metrics_minute (which also writes request_metrics_hour), "
            "service_events_daily or all.",
        ),
    ] = "all",
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help="Where the hour tasks run: local (worker processes on this machine) or "
            "dask://HOST:PORT (a Dask distributed scheduler) (env GRAVIX_EXECUTOR; "
            "default local).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    json: Json = False,
) -> None:
    """Roll raw facts up into the warehouse tables, one hour of event time at a time.

    Without a window it is incremental: it rebuilds exactly the hours whose raw files
    changed since they were built (new hours, late facts). With --start-time/--end-time
    it rebuilds every hour the window touches. Each hour is replaced atomically; one
    rollup runs at a time per data root, or per store with --store (a lease in the store).

    Example: gravix rollup --start-time 2026-02-16T10:00:00Z --end-time 2026-02-16T11:00:00Z

    Example: gravix rollup --store s3://metrics/gravix --executor dask://scheduler:8786
    """
    import os

    # Polars' allocator hands freed pages back to the kernel after every hour and faults
    # them in again for the next; keeping them cuts system time by half. Memory stays
    # bounded by the largest hour, as each hour reuses the previous hour's pages.
    os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1")
    from gravix.cli.render import progress
    from gravix.rollup import run_rollup
    from gravix.settings import load_settings
    from gravix.storage import durable

    with boundary(json=json):
        settings = load_settings(data_dir=data_dir, store=store, executor=executor)
        durable.install_fault_plan(settings.fault_plan)
        with progress(not json, "rollup") as bar:
            summary = run_rollup(
                root=settings.data_dir,
                start=start_time,
                end=end_time,
                tables=table,
                progress=bar,
                executor=settings.executor,
                store=settings.store,
                node_id=settings.node_id,
                lease_seconds=settings.lease_seconds,
            )
    if json:
        from gravix.cli.render import print_json
        from gravix.report import to_json

        print_json(to_json(summary))
    else:
        _render(summary)


def _render(summary: RollupSummary) -> None:
    from rich.table import Table

    from gravix.cli.render import console

    out = console()
    if summary.widened_note:
        out.print(f"Note: {summary.widened_note}.", highlight=False)
    if summary.hours:
        grid = Table(title_justify="left")
        for col in ("table", "hour", "reason", "files", "facts", "dupes", "bad lines", "rows"):
            grid.add_column(col, justify="left" if col in ("table", "hour", "reason") else "right")
        for h in summary.hours:
            grid.add_row(
                h.table,
                str(h.hour),
                h.reason,
                f"{h.files:,}",
                f"{h.facts:,}",
                f"{h.duplicates:,}",
                f"{h.bad_lines:,}",
                f"{h.rows:,}",
            )
        out.print(grid)
    if summary.hours_without_raw:
        out.print(
            f"{summary.hours_without_raw} hour(s) in the window have no raw files; "
            "their rows were kept.",
            highlight=False,
        )
    out.print(summary.message, highlight=False)
