"""`gravix demo`: server, synthetic traffic with an incident, rollup, doctor, report."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gravix.cli.app import Json, StoreUrl, app, boundary

if TYPE_CHECKING:
    from gravix.tools.demo import DemoReport


@app.command("demo")
def demo_command(
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            help="Where the demo keeps its data (a new directory, or one an earlier demo "
            "made, which is replaced).",
        ),
    ] = Path("demo-data"),
    store: StoreUrl = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Use a non-empty directory the demo did not make: add, delete nothing."
        ),
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Then keep the dashboard running on the demo's data until Ctrl-C."
        ),
    ] = False,
    json: Json = False,
) -> None:
    """See Gravix work in one command, in well under a minute.

    Generates an API key, starts an ingest server on a free port, sends two hours of
    back-dated traffic in seconds (a deploy, then an error spike and a latency rise on
    one endpoint), rotates, rolls up, runs the doctor, stops the server and prints the
    incident report. The data stays in --data-dir for you to query.

    Example: gravix demo

    Example: gravix demo --data-dir /tmp/gravix-demo --json

    Example: gravix demo --serve
    """
    from gravix.cli.render import progress
    from gravix.settings import load_settings
    from gravix.tools.demo import run_demo

    with boundary(json=json):
        load_settings(store=store, local_only="gravix demo")
    with boundary(json=json), progress(not json, "gravix demo") as bar:
        report = run_demo(data_dir=data_dir, force=force, progress=bar)
    if json:
        from gravix.cli.render import print_json
        from gravix.report import to_json

        print_json(to_json(report))
    else:
        _render(report)
    if serve:
        from gravix.cli.render import err_console
        from gravix.tools.demo import serve_dashboard

        def ready(url: str) -> None:
            page = report.dashboard_url if report.dashboard_url.startswith(url) else url
            err_console().print(
                f"Dashboard on {page} (Ctrl-C stops it)", highlight=False, soft_wrap=True
            )

        with boundary():
            raise typer.Exit(serve_dashboard(report, on_ready=ready))


def _when(value: Any) -> datetime | None:
    """A time of a report document (a datetime or an RFC 3339 string) as a datetime."""
    if isinstance(value, datetime) or not value:
        return value or None
    return datetime.fromisoformat(str(value))


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%H:%M")
    return str(value)[11:16] if value else "—"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f}%"


def _ms(value: Any) -> str:
    return "—" if value is None else f"{float(value):,.0f}"


def _bar(rate: Any, scale: float) -> str:
    if not rate or scale <= 0:
        return ""
    return "█" * max(1, round(10 * float(rate) / scale))


def _series_table(
    title: str, rows: list[dict[str, Any]], incident: dict[str, Any], deploy_at: Any
) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in ("from", "req/s", "errors", "error rate"):
        table.add_column(name, justify="left" if name == "from" else "right")
    table.add_column("", min_width=10, no_wrap=True)
    for name in ("p95 ms", "p99 ms", "note"):
        table.add_column(name, justify="left" if name == "note" else "right")
    scale = max((float(r.get("error_rate") or 0) for r in rows), default=0.0)
    for row in rows:
        start, end = _when(row["bucket_start"]), _when(row["bucket_end"])
        assert start is not None and end is not None
        notes = []
        if deploy_at is not None and start <= deploy_at < end:
            notes.append("deploy")
        if start < incident["until"] and end > incident["from"]:
            notes.append("incident")
        spike = bool(notes and "incident" in notes)
        table.add_row(
            _time(start),
            f"{float(row.get('request_rate_per_s') or 0):.1f}",
            f"{row.get('errors', 0):,}",
            _pct(row.get("error_rate")),
            f"[red]{_bar(row.get('error_rate'), scale)}[/]"
            if spike
            else _bar(row.get("error_rate"), scale),
            _ms(row.get("p95_ms")),
            _ms(row.get("p99_ms")),
            ", ".join(notes),
        )
    return table


def _render(report: DemoReport) -> None:
    from gravix.cli.render import console

    out = console()
    out.print(
        f"[bold]Gravix demo[/] — data in [cyan]{report.data_dir}[/] "
        f"({report.data_dir_mode}), {report.elapsed_s:.1f} s",
        highlight=False,
    )
    _render_steps(out, report)
    out.print()
    deploy = report.findings["deploy"]
    deploy_at = _when(deploy.get("completed") or deploy.get("started"))
    for document in (report.health, report.endpoint):
        out.print(_series_table(document["title"], document["rows"], report.incident, deploy_at))
    out.print(_top_table(report.top_endpoints["rows"]))
    out.print(_compare_table(report.deploy["summary"], deploy, deploy_at))
    out.print(f"[dim]{report.health['notes'][0]}[/]")
    out.print()
    worst = report.findings.get("worst_step") or {}
    failing = report.findings["failing_endpoint"] or {}
    out.print(
        f"[bold]Incident:[/] the error rate of {report.incident['service']} peaked at "
        f"{_pct(worst.get('error_rate'))} at {_time(worst.get('bucket_start'))}; the top "
        f"failing endpoint is [bold]{failing.get('method')} {failing.get('path_template')}[/] "
        f"({_pct(failing.get('error_rate'))} errors); deploy [bold]{deploy['version']}[/] of "
        f"{deploy['service']} at {_time(deploy_at)} came just before it (error rate "
        f"{_pct(deploy['error_rate_before'])} → {_pct(deploy['error_rate_after'])}, p99 "
        f"{_ms(deploy['p99_ms_before'])} → {_ms(deploy['p99_ms_after'])} ms).",
        highlight=False,
    )
    out.print()
    out.print(
        f"[bold]Dashboard:[/] {report.dashboard_command}  →  {report.dashboard_url}",
        highlight=False,
        soft_wrap=True,
    )
    out.print()
    out.print("[bold]Next, try:[/]")
    for command in report.next_commands:
        out.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)


def _render_steps(out: Any, report: DemoReport) -> None:
    for step in report.steps:
        details = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("step", "seconds"))
        out.print(
            f"  [green]✓[/] {step['step']} [dim]({step['seconds']:.1f} s"
            f"{'; ' + details if details else ''})[/]",
            highlight=False,
        )
    doctor = report.doctor
    if doctor is None:
        return
    counts = doctor.counts()
    out.print(
        f"  doctor: {counts.get('ok', 0)} ok, {counts.get('warn', 0)} warning(s), "
        f"{counts.get('fail', 0)} failed",
        highlight=False,
    )
    for check in doctor.checks:
        if check.status != "ok":
            out.print(
                f"    [yellow]{check.status}[/] {check.name}: {check.detail}", highlight=False
            )


def _top_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    top = Table(title="Top failing endpoints", title_justify="left")
    for name in ("service", "endpoint", "requests", "errors", "error rate", "p99 ms"):
        top.add_column(name, justify="left" if name in ("service", "endpoint") else "right")
    for row in rows:
        top.add_row(
            row["service"],
            f"{row['method']} {row['path_template']}",
            f"{row['requests']:,}",
            f"{row['errors']:,}",
            _pct(row["error_rate"]),
            _ms(row["p99_ms"]),
        )
    return top


def _compare_table(rows: list[dict[str, Any]], deploy: dict[str, Any], deploy_at: Any) -> Any:
    from rich.table import Table

    compare = Table(
        title=f"{deploy['service']} before/after deploy {deploy['version']} "
        f"(completed {_time(deploy_at)})",
        title_justify="left",
    )
    for name in ("window", "requests", "errors", "error rate", "p50 ms", "p95 ms", "p99 ms"):
        compare.add_column(name, justify="left" if name == "window" else "right")
    for row in rows:
        compare.add_row(
            f"{row['window']} {_time(row['since'])}–{_time(row['until'])}",
            f"{row['requests']:,}",
            f"{row['errors']:,}",
            _pct(row["error_rate"]),
            _ms(row["p50_ms"]),
            _ms(row["p95_ms"]),
            _ms(row["p99_ms"]),
        )
    return compare
