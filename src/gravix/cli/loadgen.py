"""`gravix loadgen` (being built)."""

from __future__ import annotations

from gravix.cli.app import DataDir, Json, app


@app.command("loadgen")
def loadgen_command(data_dir: DataDir = None, json: Json = False) -> None:
    """Not available yet.

    Example: gravix loadgen --help
    """
    raise SystemExit("gravix loadgen is not available yet")
