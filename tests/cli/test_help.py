"""Every `gravix` command explains itself: `--help` exits 0, shows an example, and each
example in the help is a command line the CLI accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from gravix.cli import app

GROUP: Any = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)


def _examples(text: str) -> list[str]:
    """`Example:` paragraphs of a help text, each joined into one line."""
    paragraphs = re.split(r"\n\s*\n", text)
    return [
        " ".join(p.split())[len("Example:") :].strip()
        for p in paragraphs
        if p.strip().startswith("Example:")
    ]


def test_the_program_help_lists_every_command() -> None:
    env = {**os.environ, "GRAVIX_CONSOLE_WIDTH": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "gravix", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Example:" in proc.stdout
    for name in COMMANDS:
        assert name in proc.stdout
    assert {
        "ingest-server",
        "rollup",
        "cleanup",
        "recover",
        "query",
        "doctor",
        "demo",
        "loadgen",
    } <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_exits_zero_and_shows_an_example(name: str) -> None:
    result = CliRunner().invoke(app, [name, "--help"], env={"GRAVIX_CONSOLE_WIDTH": "200"})
    assert result.exit_code == 0, result.output
    assert f"Usage: gravix {name}" in result.output
    assert "Example:" in result.output
    assert "--json" in result.output, "every command has --json (DESIGN §2)"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_example_in_a_help_text_is_accepted(name: str) -> None:
    command = GROUP.commands[name]
    examples = _examples(command.help or "")
    assert examples, f"gravix {name} has no Example: paragraph"
    for example in examples:
        words = shlex.split(example)
        assert words[:2] == ["gravix", name], example
        if "--help" in words:
            continue
        command.make_context(f"gravix {name}", words[2:])
