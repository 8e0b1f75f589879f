"""`gravix rollup` (being built)."""

from __future__ import annotations

from gravix.cli.app import DataDir, Json, app


@app.command("rollup")
def rollup_command(data_dir: DataDir = None, json: Json = False) -> None:
    """Not available yet.

    Example: gravix rollup --help
    """
    raise SystemExit("gravix rollup is not available yet")
