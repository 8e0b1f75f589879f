"""`gravix demo` (being built)."""

from __future__ import annotations

from gravix.cli.app import DataDir, Json, app


@app.command("demo")
def demo_command(data_dir: DataDir = None, json: Json = False) -> None:
    """Not available yet.

    Example: gravix demo --help
    """
    raise SystemExit("gravix demo is not available yet")
