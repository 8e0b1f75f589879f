"""deploy/: the systemd units, timers, Dockerfile and compose file parse, schedule what the
runbook asks for, and every `gravix …` command line in them is one the CLI accepts."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from gravix.cli import app

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SYSTEMD = DEPLOY / "systemd"
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


def _gravix_lines_in_shell(text: str) -> list[list[str]]:
    """`gravix …` invocations inside a shell snippet, split at ; && || and newlines."""
    text = _DEFAULTED.sub(lambda m: m.group(2), text)
    out = []
    for part in re.split(r";|&&|\|\||\n", text):
        words = shlex.split(part)
        while words and words[0] in ("do", "then", "exec", "while", "true"):
            words = words[1:]
        if words and Path(words[0]).name == "gravix":
            out.append(words)
    return out


def _compose() -> dict[str, object]:
    data = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _compose_commands() -> list[list[str]]:
    lines: list[list[str]] = []
    services = _compose()["services"]
    assert isinstance(services, dict)
    for service in services.values():
        command = service.get("command")
        if isinstance(command, list):
            if command[:2] == ["sh", "-c"]:
                lines += _gravix_lines_in_shell(command[2])
            else:
                lines += _gravix_lines_in_shell(shlex.join(command))
        elif isinstance(command, str):
            lines += _gravix_lines_in_shell(command)
    return lines


def _unit_commands() -> list[list[str]]:
    lines: list[list[str]] = []
    for path in sorted(SYSTEMD.glob("*.service")):
        service = _unit(path)["Service"]
        for key in ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecReload"):
            if key in service:
                lines += _gravix_lines_in_shell(service[key].lstrip("-+!@:"))
    return lines


def _dockerfile_commands() -> list[list[str]]:
    lines: list[list[str]] = []
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith(("CMD ", "ENTRYPOINT ")):
            words = json.loads(line.split(" ", 1)[1])
            lines += _gravix_lines_in_shell(shlex.join(words))
    return lines


ALL_COMMAND_LINES = _unit_commands() + _compose_commands() + _dockerfile_commands()


def test_every_unit_and_timer_parses_and_has_its_sections() -> None:
    names = {p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer")}
    assert names == {
        "gravix-ingest.service",
        "gravix-rollup.service",
        "gravix-rollup.timer",
        "gravix-cleanup.service",
        "gravix-cleanup.timer",
    }
    for name in names:
        unit = _unit(SYSTEMD / name)
        assert "Unit" in unit and unit["Unit"].get("Description")
        if name.endswith(".timer"):
            target = unit["Timer"]["Unit"]
            assert (SYSTEMD / target).is_file(), f"{name} starts a unit that is not shipped"
            assert unit["Install"]["WantedBy"] == "timers.target"
        else:
            exec_start = unit["Service"]["ExecStart"]
            assert exec_start.startswith("/"), "systemd needs an absolute ExecStart"


def test_timers_run_rollup_every_five_minutes_and_cleanup_daily() -> None:
    rollup = _unit(SYSTEMD / "gravix-rollup.timer")["Timer"]
    cleanup = _unit(SYSTEMD / "gravix-cleanup.timer")["Timer"]
    assert rollup["OnCalendar"] == "*:0/5"
    assert cleanup["OnCalendar"] == "daily"
    assert rollup.getboolean("Persistent") and cleanup.getboolean("Persistent")
    for name in ("gravix-rollup.service", "gravix-cleanup.service"):
        assert _unit(SYSTEMD / name)["Service"]["Type"] == "oneshot"


def test_ingest_unit_stops_gracefully_and_restarts_on_failure() -> None:
    service = _unit(SYSTEMD / "gravix-ingest.service")["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) >= 30
    assert service["Restart"] == "on-failure"
    assert "gravix ingest-server" in service["ExecStart"]


def test_compose_mirrors_the_runbook_services() -> None:
    compose = _compose()
    services = compose["services"]
    assert isinstance(services, dict)
    assert {"ingestion", "rollup", "cleanup"} <= set(services)
    ingestion = services["ingestion"]
    assert ingestion["container_name"] == "gravix-ingestion"
    assert ingestion["command"][:2] == ["gravix", "ingest-server"]
    assert "API_KEY" in ingestion["environment"]
    assert ingestion["stop_signal"] == "SIGTERM"
    assert services["trino"]["container_name"] == "gravix-trino"
    # Every Gravix service shares the one data volume.
    for name in ("ingestion", "rollup", "cleanup"):
        assert "./data:/data" in services[name]["volumes"]


def test_the_files_contain_every_scheduled_command() -> None:
    commands = {line[1] for line in ALL_COMMAND_LINES}
    assert commands == {"ingest-server", "rollup", "cleanup"}
    assert len(ALL_COMMAND_LINES) >= 6


def _click_command(name: str) -> Any:
    """The parsed command object behind `gravix NAME` (typer's own click)."""
    group: Any = typer.main.get_command(app)
    assert name in group.commands, f"gravix has no command {name!r}"
    return group.commands[name]


@pytest.mark.parametrize("line", ALL_COMMAND_LINES, ids=lambda line: " ".join(line[1:]))
def test_each_command_line_is_accepted_by_the_cli(line: list[str]) -> None:
    name, args = line[1], line[2:]
    proc = subprocess.run(
        [sys.executable, "-m", "gravix", name, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    command = _click_command(name)
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in args:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"`gravix {name}` has no flag {word}"
    # Parsing the whole line (types, choices, counts) without running the command.
    command.make_context(f"gravix {name}", list(args))
