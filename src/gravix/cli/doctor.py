"""`gravix doctor` (being built)."""

from __future__ import annotations

from gravix.cli.app import DataDir, Json, app


@app.command("doctor")
def doctor_command(data_dir: DataDir = None, json: Json = False) -> None:
    """Not available yet.

    Example: gravix doctor --help
    """
    raise SystemExit("gravix doctor is not available yet")
