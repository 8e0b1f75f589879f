"""`gravix query`: SQL over the tables, incident presets, Trino DDL."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gravix.cli.app import TIME, DataDir, Json, StoreUrl, app, boundary

if TYPE_CHECKING:
    import polars as pl

    from gravix.query import DeployComparison, PresetResult, SqlAnswer


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
    "Tables: request_metrics_minute, request_metrics_hour, service_events_daily (warehouse); "
    "request_facts, "
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
    window: Annotated[
        int | None, _opt("--window", "Minutes before/after a deploy (default 30).")
    ] = None,
    limit: Annotated[
        int | None, _opt("--limit", "Rows for top-endpoints / deploy (default 10).")
    ] = None,
    ddl: Annotated[Ddl | None, _opt("--ddl", "Print DDL for another engine.")] = None,
    location_prefix: Annotated[
        str | None, _opt("--location-prefix", "DDL file location instead of the data root.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    output: Annotated[Path | None, _opt("--output", "Write the result to FILE.")] = None,
    data_dir: DataDir = None,
    store: StoreUrl = None,
    json: Json = False,
) -> None:
    """Run SQL over the Gravix tables, answer incident questions with presets, or print
    Trino DDL for the same files.

    Example: gravix query "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10"

    Example: gravix query --preset health --service frontend --since 24h --step 5

    Example: gravix query --store s3://metrics/gravix --preset top-endpoints --since 3h

    Example: gravix query --ddl trino --store s3://metrics/gravix
    """
    from gravix import query
    from gravix.settings import load_settings

    chosen = [name for name, on in (("SQL", sql), ("--preset", preset), ("--ddl", ddl)) if on]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of SQL, --preset or --ddl")
    preset_flags: dict[str, object] = {
        "--since": since, "--until": until, "--service": service, "--endpoint": endpoint,
        "--method": method, "--step": step, "--threshold": threshold,
        "--by-endpoint": by_endpoint or None, "--deploy": deploy, "--window": window,
        "--limit": limit,
    }  # fmt: skip
    if chosen[0] == "--ddl":
        preset_flags |= {"--format": None if fmt is Format.table else fmt, "--json": json or None}
    _refuse_unused(chosen[0], preset_flags, location_prefix)
    if json and fmt not in (Format.table, Format.json):
        raise typer.BadParameter(
            f"--json prints one JSON document: it cannot go with --format {fmt.value}"
        )
    out_fmt = Format.json if json else fmt
    terminal = output is None and sys.stdout.isatty()
    if out_fmt is Format.parquet and terminal:
        raise typer.BadParameter("Parquet is binary: give --output FILE or redirect stdout")
    with boundary(json=json):
        settings = load_settings(data_dir=data_dir, store=store)
        if ddl is not None:
            text = query.trino_ddl_for(
                settings.data_dir, store=settings.store, location_prefix=location_prefix
            )
            _emit_text(text, output)
            return
        root = query.open_root(settings)
        if sql is not None:
            _render_answer(query.answer_sql(root, sql), out_fmt, output, as_document=json)
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
            window_minutes=30 if window is None else window,
            limit=10 if limit is None else limit,
        )
        _render_preset(result, out_fmt, output, as_document=json)


def _refuse_unused(mode: str, flags: dict[str, object], location_prefix: str | None) -> None:
    """A flag that would do nothing beside ``mode`` is a usage error, never ignored."""
    unused = [] if mode == "--preset" else [f for f, value in flags.items() if value is not None]
    if mode != "--ddl" and location_prefix is not None:
        unused.append("--location-prefix")
    if unused:
        what = "free SQL" if mode == "SQL" else mode
        raise typer.BadParameter(
            f"{', '.join(unused)} would do nothing beside {what}: the preset flags apply to "
            "--preset only, --location-prefix to --ddl only"
        )


def _notes(notes: tuple[str, ...] | list[str]) -> None:
    from gravix.cli.render import err_console
    from gravix.query.output import safe_text

    for note in notes:
        err_console().print(
            f"Note: {safe_text(note)}", highlight=False, markup=False, soft_wrap=True
        )


def _render_answer(
    answer: SqlAnswer, fmt: Format, output: Path | None, *, as_document: bool
) -> None:
    from gravix.cli.render import print_json
    from gravix.query import write_result
    from gravix.report import to_json

    _notes(answer.notes)
    if as_document and output is None:
        print_json(to_json(answer))
        return
    _emit(write_result(answer.frame, fmt.value, output, terminal=sys.stdout.isatty()))


def _emit(data: bytes | None) -> None:
    if data is not None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _emit_text(text: str, output: Path | None) -> None:
    from gravix.query.output import write_output

    if output is None:
        _emit(text.encode())
        return
    write_output(output, text.encode())


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
    from gravix.query.output import safe_text
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
    lines = [safe_text(line) for line in lines]
    if fmt is Format.table and output is None:
        body = "\n".join([*lines, _table(frame), *(f"Note: {n}" for n in result.notes)])
        _emit((body + "\n").encode())
        return
    for line in [*lines[:2], *(f"Note: {safe_text(n)}" for n in result.notes)]:
        if line:
            err_console().print(line, highlight=False, markup=False, soft_wrap=True)
    _emit(write_result(frame, fmt.value, output, terminal=sys.stdout.isatty()))
