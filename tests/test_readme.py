"""README.md cannot drift: its quick start runs for real, every `gravix …` line in it is
accepted by the CLI, and its tables cover the settings, the runbook and the dependencies."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer.main

from gravix.cli import app
from serverutil import free_port, server_env

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(info: str) -> list[str]:
    return [body for tag, body in _FENCE.findall(README) if tag.strip().startswith(info)]


def _quickstart() -> str:
    blocks = [body for tag, body in _FENCE.findall(README) if tag.split()[1:] == ["quickstart"]]
    assert len(blocks) == 1, "README needs exactly one ```bash quickstart block"
    return blocks[0]


def _logical_lines(script: str) -> list[str]:
    return [line.strip() for line in script.replace("\\\n", " ").splitlines()]


def _gravix_commands() -> list[list[str]]:
    """Every `gravix …` invocation in the README's bash blocks and inline code."""
    texts: list[str] = []
    for block in _blocks("bash"):
        texts += _logical_lines(block)
    texts += re.findall(r"`((?:\S*/)?gravix [^`]+)`", README)
    commands = []
    for text in texts:
        for part in re.split(r";|&&|\|\||\||>|&\s*$", text):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                continue
            if words and Path(words[0]).name == "gravix" and len(words) > 1:
                commands.append(words)
    return commands


def _command(name: str) -> Any:
    group: Any = typer.main.get_command(app)
    assert name in group.commands, f"README uses `gravix {name}`, which does not exist"
    return group.commands[name]


def test_readme_names_the_two_setup_commands() -> None:
    setup = _blocks("bash")[0]
    assert "make demo" in setup and "make test" in setup
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.MULTILINE)
    assert re.search(r"^test:", makefile, re.MULTILINE)


def test_every_gravix_command_in_the_readme_is_accepted_by_the_cli() -> None:
    commands = _gravix_commands()
    assert len(commands) > 20
    placeholders = ("…", "KEY")
    for words in commands:
        command = _command(words[1])
        args = words[2:]
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for word in args:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"`{shlex.join(words)}`: no flag {word}"
        if not any(p in word for word in args for p in placeholders):
            command.make_context(shlex.join(words[:2]), list(args))


def test_configuration_table_lists_every_environment_variable_settings_reads() -> None:
    settings = (REPO / "src" / "gravix" / "settings.py").read_text()
    names = set(re.findall(r"GRAVIX_[A-Z_]+|\bAPI_KEY\b", settings))
    names.discard("GRAVIX_FAULT_PLAN")  # a test hook for fault injection, not a setting
    config = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = sorted(n for n in names if f"`{n}`" not in config)
    assert not missing, f"configuration table lacks {missing}"


RUNBOOK_COMMANDS = (
    "docker-compose up -d",
    "docker-compose down",
    "docker-compose logs -f ingestion",
    "./scripts/cleanup_data.sh",
    "go run transforms/request_metrics_minute/main.go",
    "ls -R data/raw",
    "ls -R data/warehouse",
    "SELECT * FROM gravix.raw.request_metrics_minute LIMIT 10",
    "check Cube",
    "Hive Metastore",
    "Unauthorized",
    "docker-compose restart ingestion",
    "Parquet corrupted",
    "Raw corrupted",
)


def test_the_percentile_error_bound_says_which_exact_value() -> None:
    """1.08 % of what: the rank quantile of DESIGN §6 for merged percentiles, and
    quantile_cont for the per-minute columns."""
    text = " ".join(README.split())
    for claim in re.finditer(r"1\.08 %", text):
        assert "rank quantile" in text[claim.start() : claim.start() + 120], claim
    assert "quantile_cont" in text


def test_every_runbook_task_maps_to_a_gravix_command() -> None:
    table = README.split("## The runbook, task by task", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    for task in RUNBOOK_COMMANDS:
        matching = [row for row in rows if task in row]
        assert matching, f"no runbook row for {task!r}"
        assert all("`gravix " in row for row in matching), f"{task!r} has no gravix command"


def test_cron_lines_schedule_rollup_every_five_minutes_and_cleanup_daily() -> None:
    (cron,) = _blocks("cron")
    entries = [line.split() for line in cron.splitlines() if line and not line.startswith("#")]
    schedule = {tuple(e[:5]): " ".join(e[5:]) for e in entries}
    rollup = [cmd for when, cmd in schedule.items() if when[0] == "*/5" and when[1:] == ("*",) * 4]
    assert rollup and "gravix rollup" in rollup[0]
    daily = [
        cmd
        for when, cmd in schedule.items()
        if when[2:] == ("*", "*", "*") and when[0].isdigit() and when[1].isdigit()
    ]
    assert daily and "gravix cleanup" in daily[0]


def test_every_declared_dependency_is_explained() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    table = README.split("## Dependencies", 1)[1].split("\n## ", 1)[0]
    for requirement in declared:
        name = re.split(r"[<>=!;\[ ]", requirement, maxsplit=1)[0].lower()
        assert name in table.lower(), f"README does not say why {name} is a dependency"


def test_trino_path_is_documented() -> None:
    assert "gravix query --ddl trino" in README


def test_quickstart_runs_against_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    script = _quickstart().replace("8090", str(port))
    env = server_env({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        # A failed step leaves the background server running: end the script's group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    loadgen = json.loads((tmp_path / "loadgen.json").read_text())
    assert loadgen["acknowledged"] == loadgen["sent"] > 0
    # The curl fact and the loadgen facts reached the warehouse, read back by DuckDB.
    parquet = str(tmp_path / "data" / "warehouse" / "request_metrics_minute" / "**" / "*.parquet")
    total, orders = duckdb.sql(
        f"select sum(request_count), sum(request_count) filter (where service = 'checkout' "
        f"and path_template = '/api/orders' and method = 'POST') "
        f"from read_parquet('{parquet}', hive_partitioning = true)"
    ).fetchall()[0]
    assert total == loadgen["acknowledged"] + 1
    assert orders >= 1
    assert "checkout" in stdout
    doctor = json.loads((tmp_path / "doctor.json").read_text())
    assert doctor["checks"], "doctor ran its checks"


@pytest.mark.parametrize(
    "path", ["deploy/README.md", "SCALING.md", "deploy/docker-compose.nodes.yml"]
)
def test_linked_documents_exist(path: str) -> None:
    assert path in README
    assert (REPO / path).is_file()
