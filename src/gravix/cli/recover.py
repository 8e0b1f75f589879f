"""`gravix recover` (being built)."""

from __future__ import annotations

from gravix.cli.app import DataDir, Json, app


@app.command("recover")
def recover_command(data_dir: DataDir = None, json: Json = False) -> None:
    """Not available yet.

    Example: gravix recover --help
    """
    raise SystemExit("gravix recover is not available yet")
