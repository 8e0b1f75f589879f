"""Rendering helpers: JSON on stdout, rich tables and progress on a terminal, logs on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

# Library code reports progress through this callback: (label, done, total).
ProgressCallback = Callable[[str, int, int], None]


# Off a terminal nobody reads at 80 columns: output goes to a file, a pipe or a log, where a
# wrapped line or a cut value (``2026-12-0…``) is lost information. So tables are laid out
# at this width (they take only what they need) and lines are never wrapped.
OFF_TERMINAL_WIDTH = 4096


def _console_kwargs(stream: TextIO) -> dict[str, Any]:
    # Tests set GRAVIX_CONSOLE_WIDTH for stable output; NO_COLOR is honoured by rich itself.
    width = os.environ.get("GRAVIX_CONSOLE_WIDTH")  # presentation only, not a setting
    if width:
        return {"width": int(width)}
    if not stream.isatty():
        return {"width": OFF_TERMINAL_WIDTH, "soft_wrap": True}
    return {}


@cache
def _console(stderr: bool, options: tuple[tuple[str, Any], ...]) -> Console:
    from rich.console import Console  # not at import: a --json answer never needs it

    return Console(stderr=stderr, **dict(options))


def console() -> Console:
    """The console on stdout, laid out for where stdout goes (a terminal or not)."""
    return _console(False, tuple(sorted(_console_kwargs(sys.stdout).items())))


def err_console() -> Console:
    """The console on stderr, laid out for where stderr goes (a terminal or not)."""
    return _console(True, tuple(sorted(_console_kwargs(sys.stderr).items())))


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def print_json(document: object) -> None:
    """One JSON document on stdout (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(document, default=_default, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


@contextmanager
def progress(enabled: bool, description: str = "working") -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr when it is a terminal and ``enabled``; else None."""
    if not enabled or not err_console().is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(label: str, done: int, total: int) -> None:
            bar.update(task, description=label or description, completed=done, total=total)

        yield update
