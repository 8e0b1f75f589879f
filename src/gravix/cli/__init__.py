"""The ``gravix`` command line: one module per subcommand, each parse → one library call
→ render. Heavy libraries (polars, pyarrow, uvicorn) are imported inside commands so
that ``gravix --help`` stays fast."""

from __future__ import annotations

# Importing a command module registers its command on ``app``.
from gravix.cli import (  # noqa: F401  (registration by import)
    cleanup,
    dashboard,
    demo,
    doctor,
    ingest_server,
    loadgen,
    query,
    recover,
    rollup,
)
from gravix.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
