"""Run every benchmark module (``bench/bench_*.py``) and print one table of results.

Each module exposes ``run(quick: bool) -> list[dict]``; a row has ``name``, ``value``,
``unit``, and where it applies ``reference`` (the reference's value), ``ratio``,
``target`` (text), ``ok`` (bool) and ``peak_rss_mb``. Results are also written to
``bench-results/latest.json``.

    python -m bench                 # everything
    python -m bench ingest rollup   # only these modules
    python -m bench --quick         # smaller sizes, for a smoke run

Every process the benchmarks start keeps its compiled bytecode (in
``bench-results/pycache/``), as an installed program does, even in a shell that sets
``PYTHONDONTWRITEBYTECODE``: without it, a process that starts from an uninstalled source
tree compiles each of its modules again on every start (about 30 ms of a ``gravix query``),
a cost no installed ``gravix``, and no installed reference library, pays.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

COLUMNS = ("module", "name", "value", "unit", "reference", "ratio", "target", "ok", "peak_rss_mb")


def _keep_bytecode() -> None:
    """Processes started from here write and read their bytecode in one cache of their own."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(Path("bench-results", "pycache").resolve())


def main(argv: list[str] | None = None) -> int:
    _keep_bytecode()
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("only", nargs="*", help="module names without bench_ (e.g. ingest)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args(argv)
    here = Path(__file__).parent
    names = sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {names}")
        names = [n for n in names if n in args.only]
    rows: list[dict[str, object]] = []
    err = Console(stderr=True)
    for name in names:
        err.print(f"[bold]bench {name}[/] …")
        started = time.perf_counter()
        module = importlib.import_module(f"bench.bench_{name}")
        for row in module.run(quick=args.quick):
            row.setdefault("module", name)
            rows.append(row)
        err.print(f"  done in {time.perf_counter() - started:.1f}s")
    table = Table(title="Gravix benchmarks")
    for col in COLUMNS:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in COLUMNS))
    Console(width=max(160, Console().width)).print(table)
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0 if all(row.get("ok", True) for row in rows) else 1


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
