"""`gravix doctor`: run the runbook's troubleshooting checks and name the fixes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from gravix.cli.app import DataDir, Json, StoreUrl, app, boundary

if TYPE_CHECKING:
    from gravix.ops.doctor import DoctorReport

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


@app.command("doctor")
def doctor_command(
    data_dir: DataDir = None,
    store: StoreUrl = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Ingest server to check (env GRAVIX_URL; default http://127.0.0.1:8090).",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            metavar="KEY",
            help="API key clients send, checked against the server (env API_KEY).",
            show_default=False,
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Check ingestion, buffer, raw, rollup, warehouse, query, retention and locks; name
    the command that fixes each problem. Exits 1 when a check fails.

    Example: gravix doctor --url http://127.0.0.1:8090 --api-key "$API_KEY"
    """
    from gravix.ops.doctor import run_doctor
    from gravix.settings import load_settings

    with boundary(json=json):
        settings = load_settings(data_dir=data_dir, store=store, url=url, api_keys=api_key)
        report = run_doctor(settings=settings)
    if json:
        from gravix.cli.render import print_json
        from gravix.report import to_json

        print_json(to_json(report))
    else:
        _render(report)
    raise typer.Exit(1 if report.failed else 0)


def _render(report: DoctorReport) -> None:
    from rich.table import Table

    from gravix.cli.render import console

    table = Table(title=f"gravix doctor — {report.data_dir}", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail")
    table.add_column("fix")
    for check in report.checks:
        status = f"[{_STYLE[check.status]}]{check.status}[/]"
        table.add_row(check.name, status, check.detail, check.hint, end_section=False)
    console().print(table)
    counts = report.counts()
    verdict = "[bold red]problems found[/]" if report.failed else "[green]no failures[/]"
    console().print(
        f"{verdict}: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail "
        f"({report.elapsed_s:.2f} s)",
        highlight=False,
    )
