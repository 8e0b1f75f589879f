"""`gravix dashboard`: parse flags, load settings, run :func:`gravix.dashboard.serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from gravix.cli.app import DataDir, Json, StoreUrl, app, boundary


@app.command("dashboard")
def dashboard_command(
    data_dir: DataDir = None,
    store: StoreUrl = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on [env GRAVIX_DASHBOARD_HOST, default 127.0.0.1]. Any "
            "address but loopback needs a key.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port [env GRAVIX_DASHBOARD_PORT, default 8091].", show_default=False),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="A key that opens the dashboard (repeatable) [env API_KEY, GRAVIX_API_KEYS]; "
            "visible in ps: prefer API_KEY or --api-key-file.",
            show_default=False,
        ),
    ] = None,
    api_key_file: Annotated[
        str | None,
        typer.Option(
            "--api-key-file",
            help="File of keys, one per line [env GRAVIX_API_KEY_FILE].",
            show_default=False,
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve without a key on a non-loopback address (a trusted network only).",
        ),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Ingest server URL shown in the first-run example [env GRAVIX_URL].",
            show_default=False,
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Serve the browser dashboard and its JSON data API from the warehouse.

    Error rates (5xx and 4xx), merged p50/p95/p99, throughput, a latency heatmap, Apdex,
    top failing endpoints and deploy markers, for any service and time range. Open on
    127.0.0.1 without a key; with keys, the page asks for one (scripts send X-API-Key).
    Stops on Ctrl-C or SIGTERM.

    Example: gravix dashboard --data-dir demo-data

    Example: gravix dashboard --host 0.0.0.0 --port 8091 --api-key-file /etc/gravix/api-keys

    Example: gravix dashboard --store s3://metrics/gravix
    """
    from gravix.dashboard import serve
    from gravix.settings import load_settings

    def ready(address: str) -> None:
        from gravix.cli.render import err_console

        err_console().print(
            f"Dashboard on {address} (data in {where}); Ctrl-C stops it.",
            highlight=False,
            soft_wrap=True,
        )

    with boundary():
        settings = load_settings(
            store=store,
            data_dir=data_dir,
            api_keys=api_key,
            api_key_file=api_key_file,
            dashboard_host=host,
            dashboard_port=port,
            url=url,
        )
        where = settings.store.url if settings.store else settings.data_dir
        code = serve(settings=settings, insecure_no_auth=insecure_no_auth, on_ready=ready)
    if json:
        from gravix.cli.render import print_json

        print_json({"exit_code": code, "data_dir": str(settings.data_dir)})
    raise typer.Exit(code)
