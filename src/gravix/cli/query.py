"""`gravix query` (being built)."""

from __future__ import annotations

from gravix.cli.app import DataDir, Json, app


@app.command("query")
def query_command(data_dir: DataDir = None, json: Json = False) -> None:
    """Not available yet.

    Example: gravix query --help
    """
    raise SystemExit("gravix query is not available yet")
