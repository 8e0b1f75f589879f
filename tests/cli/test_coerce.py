"""Option values converted without pydantic give what typer's own conversion gives: the same
value of the same type, or the same usage error in the same words, for every option of every
command; and a command run as a process does not import pydantic."""

from __future__ import annotations

import shlex
import subprocess
import sys
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer._coercion import build_runtime_param

from gravix.cli import app
from gravix.cli.coerce import QuickRuntimeParam

GROUP: Any = typer.main.get_command(app)

TEXTS = ["abc", "", " padded ", "ünïcode", "-"]
NUMBERS = ["0", "7", "-3", "007", " 5", "1_000", "+4", "x", "1.5", "99999999999999999999", "-0"]
DECIMALS = ["1.5", "10", "0.25", "-2.75", "1e3", "inf", "nan", "abc", " 2", ".5", "01.5"]
TIMES = ["24h", "90m", "now", "2026-02-19T00:00:00Z", "2026-02-19", "yesterday", ""]
DURATIONS = ["60", "60s", "5m", "1h", "-1", "soon", ""]
SIZES = ["1024", "64MiB", "1 MB", "huge", ""]


def _outcome(convert: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        result = convert(value, param=param, ctx=ctx)
    except (typer.BadParameter, ValueError) as exc:
        return ("error", str(exc))
    if isinstance(result, datetime):
        return ("datetime", result)
    return (type(result).__name__, repr(result))  # repr: nan equals nan


def _samples(param: Any, tmp: Path) -> list[Any]:
    annotation = param.type_descriptor.annotation
    info = param.type_descriptor.parameter_info
    if info.parser is not None:
        return [*TIMES, *DURATIONS, *SIZES]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        values = [str(m.value) for m in annotation]
        return [*values, *(v.upper() for v in values), "nope", "", *list(annotation)]
    if annotation is int:
        return [*NUMBERS, 0, 12]
    if annotation is float:
        return [*DECIMALS, 3, 2.5]
    if annotation is Path:
        existing = tmp / "file.txt"
        existing.write_text("x")
        return ["data", "", ".", str(tmp), str(existing), "/no/such/place", tmp]
    if annotation is bool:
        return [True, False]
    return [*TEXTS, *NUMBERS[:3]]


def _quick_params() -> list[tuple[str, Any]]:
    found = []
    for name, command in [("gravix", GROUP), *sorted(GROUP.commands.items())]:
        for param in command.params:
            if isinstance(getattr(param, "_runtime_param", None), QuickRuntimeParam):
                found.append((f"{name} {param.name}", (command, param)))
    return found


QUICK = _quick_params()


def test_every_command_has_quick_options() -> None:
    """Not vacuous: the options of each command are converted quickly, the ones the
    benchmarks' `gravix query` lines use among them."""
    names = {label for label, _ in QUICK}
    assert {
        "query sql",
        "query preset",
        "query since",
        "query step",
        "query fmt",
        "query data_dir",
        "query threshold",
        "rollup data_dir",
    } <= names
    assert {label.split()[0] for label in names} >= set(GROUP.commands) - {"loadgen"}


@pytest.mark.parametrize(("command", "param"), [p for _, p in QUICK], ids=[n for n, _ in QUICK])
def test_quick_conversion_is_typers_conversion(command: Any, param: Any, tmp_path: Path) -> None:
    ctx = typer.Context(command, info_name=command.name)
    quick = param._runtime_param
    reference = build_runtime_param(param.type_descriptor)
    assert not isinstance(reference, QuickRuntimeParam)
    for value in _samples(param, tmp_path):
        ours = _outcome(quick.coerce, value, param, ctx)
        theirs = _outcome(reference.coerce, value, param, ctx)
        if ours[0] == theirs[0] == "datetime":  # "24h" is read against the clock, twice
            assert abs(ours[1] - theirs[1]) < timedelta(seconds=5), f"{param.name} {value!r}"
            continue
        assert ours == theirs, f"{param.name} {value!r}"


def test_the_help_flag_is_converted_quickly() -> None:
    ctx = typer.Context(GROUP, info_name="gravix", help_option_names=["-h", "--help"])
    assert isinstance(GROUP.get_help_option(ctx)._runtime_param, QuickRuntimeParam)
    _name, command, _rest = GROUP.resolve_command(ctx, ["query"])
    assert isinstance(command.get_help_option(ctx)._runtime_param, QuickRuntimeParam)


_PROBE = """
import sys
from gravix.cli import main
sys.argv = ["gravix", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("IMPORTED", sorted(m for m in ("pydantic", "typer._adapters") if m in sys.modules),
      "EXIT", code, file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        "--help",
        "query --help",
        "query --ddl trino --location-prefix s3://bucket/gravix --data-dir {root}",
        "query --preset health --service api --since 24h --step 5 --format csv --data-dir {root}",
        "query 'SELECT 1 AS one' --json --data-dir {root}",
    ],
    ids=["help", "query-help", "ddl", "preset", "sql"],
)
def test_a_command_process_does_not_import_pydantic(args: str, tmp_path: Path) -> None:
    """Each runs to its library call (the empty data root's preset ends in the library's
    "no data yet", exit 1) with no usage error, and without pydantic."""
    words = shlex.split(args.replace("{root}", str(tmp_path)))
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *words],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("IMPORTED [] EXIT"), proc.stderr[-2000:]
    assert last.split()[-1] in ("0", "1"), proc.stderr[-2000:]
