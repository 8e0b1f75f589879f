"""`gravix ingest-server` (being built)."""

from __future__ import annotations

from gravix.cli.app import DataDir, Json, app


@app.command("ingest-server")
def ingest_server_command(data_dir: DataDir = None, json: Json = False) -> None:
    """Not available yet.

    Example: gravix ingest-server --help
    """
    raise SystemExit("gravix ingest-server is not available yet")
