"""Run ``gravix ARGS…`` as the user ``nobody``, for the permission tests.

The interpreter lives under /root (mode 0700 here), so the child starts as root, imports
what the commands will need while it still can read it, then drops to uid/gid 65534 and
runs the CLI. Used as ``python asnobody.py rollup --data-dir DIR``."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys

NOBODY = 65534
# Importing these has side effects (a browser, a banner, a GUI) or needs absent parts.
_SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "__main__"}


def _preload() -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for name in sorted(sys.stdlib_module_names - _SKIP):
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        for name in (
            "gravix.cli",
            "gravix.cli.render",
            "gravix.rollup",
            "gravix.ops.recovery",
            "gravix.ops.retention",
            "gravix.ops.doctor",
            "gravix.query",
            "gravix.tools.demo",
            "pydantic",
            "encodings.idna",
            "logging.config",
            "logging.handlers",
            "uvicorn",
            "uvloop",
            "httptools",
            "gravix.ingest.process",
            "polars",
            "pyarrow.parquet",
            "duckdb",
            "rich.table",
            "rich.progress",
            "httpx",
        ):
            with contextlib.suppress(Exception):
                importlib.import_module(name)


def main() -> None:
    _preload()
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    from gravix.cli import main as gravix_main

    sys.argv = ["gravix", *sys.argv[1:]]
    gravix_main()


if __name__ == "__main__":
    main()
