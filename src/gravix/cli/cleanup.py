"""`gravix cleanup` (being built)."""

from __future__ import annotations

from gravix.cli.app import DataDir, Json, app


@app.command("cleanup")
def cleanup_command(data_dir: DataDir = None, json: Json = False) -> None:
    """Not available yet.

    Example: gravix cleanup --help
    """
    raise SystemExit("gravix cleanup is not available yet")
