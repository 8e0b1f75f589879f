"""`gravix ingest-server`: parse flags, load settings, run :func:`gravix.ingest.app.serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from gravix.cli.app import DURATION, SIZE, DataDir, Json, StoreUrl, app, boundary


@app.command("ingest-server")
def ingest_server_command(
    data_dir: DataDir = None,
    store: StoreUrl = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            "--node-id",
            help="This node's name in the store's object names (with --store) [env "
            "GRAVIX_NODE_ID, default the host name].",
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accepted X-API-Key (repeatable) [env API_KEY, GRAVIX_API_KEYS]. Visible to "
            "every local user in the process list: prefer API_KEY or --api-key-file.",
            show_default=False,
        ),
    ] = None,
    api_key_file: Annotated[
        str | None,
        typer.Option(
            "--api-key-file",
            help="File of accepted keys, one per line; blank lines and # comments ignored "
            "[env GRAVIX_API_KEY_FILE].",
            show_default=False,
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Accept writes without a key (local experiments only)."
        ),
    ] = False,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on [env GRAVIX_HOST, default 127.0.0.1].", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [env GRAVIX_PORT, default 8090].", show_default=False)
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Server processes sharing the port, each with its own buffer files."
        ),
    ] = 1,
    log_format: Annotated[
        str,
        typer.Option("--log-format", help="Logs on stderr as text or json (one object per line)."),
    ] = "text",
    rotate_seconds: Annotated[
        float | None,
        typer.Option(
            parser=DURATION,
            help="Seal the active buffer file after this long, e.g. 60, 90s, 5m [env "
            "GRAVIX_ROTATE_SECONDS, default 60s].",
            show_default=False,
        ),
    ] = None,
    rotate_bytes: Annotated[
        int | None,
        typer.Option(
            parser=SIZE,
            help="Seal the active buffer file at this size, e.g. 64MiB [env GRAVIX_ROTATE_BYTES].",
            show_default=False,
        ),
    ] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            help="Requests per second per key, bursts of 2× (0 = off) [env GRAVIX_RATE_LIMIT].",
            show_default=False,
        ),
    ] = None,
    max_single_bytes: Annotated[
        int | None,
        typer.Option(
            parser=SIZE,
            help="Body limit of single-event routes [default 1MiB].",
            show_default=False,
        ),
    ] = None,
    max_batch_bytes: Annotated[
        int | None,
        typer.Option(
            parser=SIZE, help="Body limit of batch routes [default 16MiB].", show_default=False
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Receive request facts and service events over HTTP and store them durably.

    A 2xx means the events are on disk and fsynced. Stops cleanly on SIGTERM or Ctrl-C
    (drains requests, seals the buffer files into raw). With --json, prints a JSON
    summary on stdout when it stops.

    Keys: set API_KEY (or GRAVIX_API_KEYS) in the server's environment, or give
    --api-key-file; a key passed with --api-key is visible to every local user in ps.

    Example: gravix ingest-server --api-key-file /etc/gravix/api-keys --port 8090 --workers 2

    Example: gravix ingest-server --port 8090 --data-dir /var/lib/gravix
    """
    from gravix.ingest import process as server
    from gravix.settings import load_settings

    with boundary(json=json):
        settings = load_settings(
            data_dir=data_dir,
            store=store,
            node_id=node_id,
            api_keys=api_key,
            api_key_file=api_key_file,
            host=host,
            port=port,
            rate_limit=rate_limit,
            rotate_seconds=rotate_seconds,
            rotate_bytes=rotate_bytes,
            max_single_bytes=max_single_bytes,
            max_batch_bytes=max_batch_bytes,
        )
        code = server.serve(
            settings=settings,
            workers=workers,
            log_format=log_format,
            insecure_no_auth=insecure_no_auth,
        )
    if json:
        from gravix.cli.render import print_json

        print_json({"exit_code": code, "data_dir": str(settings.data_dir)})
    raise typer.Exit(code)
