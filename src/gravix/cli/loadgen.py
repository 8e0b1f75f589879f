"""`gravix loadgen`: synthetic traffic against any Gravix server."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from gravix.cli.app import DURATION, TIME, Json, app, boundary


@app.command("loadgen")
def loadgen_command(
    url: Annotated[
        str | None,
        typer.Option(help="Server URL (env GRAVIX_URL; default http://127.0.0.1:8090)."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="API key to send (env API_KEY).")
    ] = None,
    rate: Annotated[
        float, typer.Option(help="Facts per second to send; 0 = as fast as the server takes them.")
    ] = 1000.0,
    duration: Annotated[
        float | None,
        typer.Option(
            parser=DURATION,
            help="How long to send: 30, 30s, 5m. Default 10s unless --total is given.",
        ),
    ] = None,
    total: Annotated[
        int | None, typer.Option(help="Stop after this many facts.", show_default=False)
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Facts per POST /api/v1/facts/batch.")] = 200,
    services: Annotated[int, typer.Option(help="Number of services to simulate (1–100).")] = 3,
    incident: Annotated[
        list[str] | None,
        typer.Option(
            help="SERVICE:PATH:START:DURATION — error spike and latency rise on one endpoint, "
            "START after the first event time (repeatable), e.g. frontend:/checkout:5m:10m.",
            show_default=False,
        ),
    ] = None,
    start_time: Annotated[
        datetime | None,
        typer.Option(
            parser=TIME,
            help="Back-date: the first event time (RFC 3339, or a time ago like 2h).",
            show_default=False,
        ),
    ] = None,
    time_span: Annotated[
        float | None,
        typer.Option(
            parser=DURATION,
            help="Back-date: spread the facts over this much event time (e.g. 2h); alone, the "
            "span ends now.",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 4,
    seed: Annotated[
        int | None, typer.Option(help="Seed for a repeatable traffic shape.", show_default=False)
    ] = None,
    deploys: Annotated[
        bool, typer.Option("--deploys/--no-deploys", help="Send deploy events.")
    ] = True,
    json: Json = False,
) -> None:
    """Send realistic synthetic traffic to a Gravix server and print what it acknowledged.

    Several services and endpoints, lognormal latencies, a few 4xx and 5xx, deploy events,
    and optional incidents. Exits 1 if any fact failed or was rejected.

    Example: gravix loadgen --api-key KEY --rate 2000 --duration 30s --incident
    frontend:/checkout:10s:10s

    Example: gravix loadgen --api-key KEY --time-span 2h --total 100000 --rate 0
    """
    from gravix.cli.render import progress
    from gravix.report import to_json
    from gravix.settings import load_settings
    from gravix.tools.loadgen import run_loadgen
    from gravix.tools.traffic import Incident

    with boundary(json=json):
        settings = load_settings(url=url, api_keys=[api_key] if api_key else None)
        with progress(not json, "sending facts") as bar:
            summary = run_loadgen(
                url=settings.url,
                api_key=settings.api_keys[0] if settings.api_keys else None,
                rate=rate,
                duration=duration,
                total=total,
                batch_size=batch_size,
                services=services,
                incidents=[Incident.parse(text) for text in incident or []],
                start_time=start_time,
                time_span=time_span,
                concurrency=concurrency,
                seed=seed,
                deploys=deploys,
                progress=bar,
            )
    report = to_json(summary)
    if json:
        from gravix.cli.render import print_json

        print_json(report)
    else:
        _render(report)
    if summary.failed or summary.rejected or summary.events_failed:
        raise typer.Exit(1)


def _render(report: dict[str, Any]) -> None:
    from rich.table import Table

    from gravix.cli.render import console

    table = Table(title=f"loadgen → {report['url']}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("sent", f"{report['sent']:,}"),
        ("acknowledged", f"{report['acknowledged']:,}"),
        ("rejected", f"{report['rejected']:,}"),
        ("failed", f"{report['failed']:,}"),
        ("achieved rate", f"{report['achieved_rate']:,.0f} facts/s"),
        (
            "requested rate",
            f"{report['requested_rate']:,.0f} facts/s" if report["requested_rate"] else "unlimited",
        ),
        ("wall time", f"{report['wall_seconds']:.1f} s"),
        ("requests", f"{report['requests']:,} ({report['retries']} retried)"),
        ("deploy events", f"{report['events_acknowledged']}/{report['events_sent']} acknowledged"),
        ("event time", f"{report['first_event_time']} … {report['last_event_time']}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console().print(table)
    for error in report["errors"]:
        console().print(f"  [yellow]•[/] {error}", highlight=False)
