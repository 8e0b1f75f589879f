"""`gravix query`: SQL over the tables, incident presets, Trino DDL."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gravix.cli.app import TIME, DataDir, Json, app, boundary

if TYPE_CHECKING:
    import polars as pl

    from gravix.query import DeployComparison, PresetResult


class Preset(StrEnum):
    health = "health"
    top_endpoints = "top-endpoints"
    endpoint = "endpoint"
    apdex = "apdex"
    deploy = "deploy"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    ndjson = "ndjson"
    parquet = "parquet"


class Ddl(StrEnum):
    trino = "trino"


def _opt(flag: str, text: str) -> Any:
    return typer.Option(flag, help=text, show_default=False)


_EPILOG = (
    "Tables: request_metrics_minute, service_events_daily (warehouse); request_facts, "
    "service_events (raw). Names may be bare, raw.<t> or gravix.raw.<t>. A filter on event_day, "
    "bucket_start or raw event_time reads only the matching partitions.\n\n"
    "Presets: health (--service, --step), top-endpoints (--limit), endpoint (--service "
    "--endpoint [--method]), apdex (--threshold [--by-endpoint]), deploy (--service [--deploy "
    "ID] [--window]). Percentiles are merged from histograms (±1.08%)."
)


@app.command("query", epilog=_EPILOG)
def query_command(
    sql: Annotated[str | None, typer.Argument(help="SQL to run.", show_default=False)] = None,
    preset: Annotated[Preset | None, _opt("--preset", "Answer an incident question.")] = None,
    service: Annotated[str | None, _opt("--service", "Service to look at.")] = None,
    endpoint: Annotated[str | None, _opt("--endpoint", "Path template, e.g. /checkout.")] = None,
    method: Annotated[str | None, _opt("--method", "HTTP method of --endpoint.")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            parser=TIME,
            help="Start: 90m, 24h, 7d, 2w ago or RFC 3339 (default 24h; deploy: 7d).",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            "--until",
            parser=TIME,
            help="End (exclusive): now, a time ago or RFC 3339 (default now).",
            show_default=False,
        ),
    ] = None,
    step: Annotated[int | None, _opt("--step", "Minutes per row (default: ≤100 rows).")] = None,
    threshold: Annotated[float | None, _opt("--threshold", "Apdex threshold T in ms.")] = None,
    by_endpoint: Annotated[bool, typer.Option("--by-endpoint", help="Apdex per endpoint.")] = False,
    deploy: Annotated[
        str | None, _opt("--deploy", "Deploy event or entity id (default latest).")
    ] = None,
    window: Annotated[int, typer.Option("--window", help="Minutes before/after a deploy.")] = 30,
    limit: Annotated[int, typer.Option("--limit", help="Rows for top-endpoints / deploy.")] = 10,
    ddl: Annotated[Ddl | None, _opt("--ddl", "Print DDL for another engine.")] = None,
    location_prefix: Annotated[
        str | None, _opt("--location-prefix", "DDL file location instead of the data root.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    output: Annotated[Path | None, _opt("--output", "Write the result to FILE.")] = None,
    data_dir: DataDir = None,
    json: Json = False,
) -> None:
    """Run SQL over the Gravix tables, answer incident questions with presets, or print
    Trino DDL for the same files.

    Example: gravix query "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10"

    Example: gravix query --preset health --service frontend --since 24h --step 5
    """
    from gravix import query
    from gravix.settings import load_settings

    chosen = [name for name, on in (("SQL", sql), ("--preset", preset), ("--ddl", ddl)) if on]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of SQL, --preset or --ddl")
    out_fmt = Format.json if json else fmt
    if out_fmt is Format.parquet and output is None and sys.stdout.isatty():
        raise typer.BadParameter("Parquet is binary: give --output FILE or redirect stdout")
    with boundary(json=json):
        root = load_settings(data_dir=data_dir).data_dir
        if ddl is not None:
            _emit_text(query.trino_ddl(root, location_prefix=location_prefix), output)
            return
        if sql is not None:
            _emit(query.write_result(query.run_sql(root, sql), out_fmt.value, output))
            return
        assert preset is not None
        result = query.run_preset(
            root=root,
            preset=preset.value,
            service=service,
            endpoint=endpoint,
            method=method,
            since=since,
            until=until,
            step_minutes=step,
            threshold_ms=threshold,
            by_endpoint=by_endpoint,
            deploy=deploy,
            window_minutes=window,
            limit=limit,
        )
        _render_preset(result, out_fmt, output, as_document=json)


def _emit(data: bytes | None) -> None:
    if data is not None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _emit_text(text: str, output: Path | None) -> None:
    if output is None:
        _emit(text.encode())
        return
    from gravix.storage import durable

    durable.atomic_write(output, text.encode())


def _table(frame: pl.DataFrame) -> str:
    """A preset's table for reading: milliseconds to 2 decimals, rates and ratios to 4."""
    import polars as pl

    from gravix.query.output import render_table

    floats = [name for name, dtype in frame.schema.items() if dtype == pl.Float64]
    readable = frame.with_columns(pl.col(name).round(2 if "_ms" in name else 4) for name in floats)
    return render_table(readable.columns, readable.rows())


def _render_preset(
    result: PresetResult | DeployComparison, fmt: Format, output: Path | None, *, as_document: bool
) -> None:
    from gravix.cli.render import err_console, print_json
    from gravix.query import DeployComparison, write_result
    from gravix.report import to_json

    if as_document and output is None:
        print_json(to_json(result))
        return
    if isinstance(result, DeployComparison):
        frame = result.endpoints
        lines = [
            f"Deploy of {result.service} {result.entity_id or result.deploy_event_id}: started "
            f"{result.started.isoformat()}, completed "
            f"{result.completed.isoformat() if result.completed else 'not seen'}",
            f"before [{result.before[0].isoformat()}, {result.before[1].isoformat()}) "
            f"vs after [{result.after[0].isoformat()}, {result.after[1].isoformat()})",
            "",
            _table(result.summary),
            "Endpoints by change in error rate:",
        ]
    else:
        frame = result.frame
        lines = [
            f"{result.title}: [{result.since.isoformat()}, {result.until.isoformat()})",
            "",
        ]
    if fmt is Format.table and output is None:
        body = "\n".join([*lines, _table(frame), *(f"Note: {n}" for n in result.notes)])
        _emit((body + "\n").encode())
        return
    for line in [*lines[:2], *(f"Note: {n}" for n in result.notes)]:
        if line:
            err_console().print(line, highlight=False, markup=False)
    _emit(write_result(frame, fmt.value, output))
