"""`gravix rollup` on the command line: the window reaches the library, widening is said,
--json is one document, the second run says there is nothing to do, exit codes, and the
progress bar shows on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import random
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gravix.cli import app
from gravix.storage.layout import Hour
from rollup_facts import DAY1, generate

ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_CONSOLE_WIDTH": "200", "NO_COLOR": "1"}
HOURS = [Hour(DAY1, 10), Hour(DAY1, 11), Hour(DAY1, 12)]
SRC = Path(__file__).resolve().parents[2] / "src"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["rollup", *args], env=ENV)


def raw(root: Path) -> Path:
    generate(random.Random(4), HOURS, 100).write(root)
    return root


def test_help_explains_the_window_and_has_an_example() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    for flag in ("--start-time", "--end-time", "--table", "--json", "--data-dir"):
        assert flag in result.output


def test_runbook_command_rebuilds_that_hour_and_prints_json(data_root: Path) -> None:
    raw(data_root)
    result = invoke(
        "--data-dir",
        str(data_root),
        "--start-time",
        "2026-02-16T10:00:00Z",
        "--end-time",
        "2026-02-16T11:00:00Z",
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["mode"] == "window"
    assert doc["widened"] is False
    assert [(h["table"], h["hour"]) for h in doc["hours"]] == [
        ("request_metrics_minute", "2026-02-16T10")
    ]
    assert doc["facts"] > 100


def test_window_off_the_hour_is_widened_and_the_output_says_so(data_root: Path) -> None:
    raw(data_root)
    result = invoke(
        "--data-dir",
        str(data_root),
        "--start-time",
        "2026-02-16T10:30:00Z",
        "--end-time",
        "2026-02-16T11:30:00Z",
    )
    assert result.exit_code == 0, result.output
    assert "widened to whole hours: 2026-02-16T10:00:00Z – 2026-02-16T12:00:00Z" in result.stdout
    assert "Rolled up 2 hour(s)" in result.stdout


def test_incremental_run_then_nothing_to_do(data_root: Path) -> None:
    raw(data_root)
    first = invoke("--data-dir", str(data_root), "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["hours_built"] == 3
    second = invoke("--data-dir", str(data_root))
    assert second.exit_code == 0
    assert "Nothing to do" in second.stdout


def test_bad_flags_are_usage_errors(data_root: Path) -> None:
    bad_time = invoke("--data-dir", str(data_root), "--start-time", "tuesday")
    assert bad_time.exit_code == 2
    assert "Error:" in bad_time.stderr and "--start-time" in bad_time.stderr
    bad_table = invoke("--data-dir", str(data_root), "--table", "metrics")
    assert bad_table.exit_code == 2
    assert "unknown table" in bad_table.stderr
    missing = invoke("--data-dir", str(data_root / "nope"))
    assert missing.exit_code == 2
    assert not (data_root / "nope").exists()


def _run_on_terminal(root: Path, *args: str, stderr_tty: bool = True) -> tuple[int, str, bytes]:
    """``gravix rollup`` with stderr on a pseudo-terminal (or a pipe): (code, stdout, stderr)."""
    master, slave = pty.openpty()
    env = {**os.environ, **ENV, "TERM": "xterm", "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(root), *args]
    proc = subprocess.Popen(
        cmd,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave if stderr_tty else subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode(), seen if stderr_tty else err


def test_progress_bar_on_a_terminal_only_and_never_with_json(tmp_path: Path) -> None:
    bar = "━".encode()
    code, out, err = _run_on_terminal(raw(tmp_path / "a"))
    assert code == 0 and "Rolled up" in out
    assert bar in err and b"rollup" in err
    code, out, err = _run_on_terminal(raw(tmp_path / "b"), "--json")
    assert code == 0 and json.loads(out)["hours_built"] == len(HOURS)
    assert bar not in err
    code, out, err = _run_on_terminal(raw(tmp_path / "c"), stderr_tty=False)
    assert code == 0 and "Rolled up" in out
    assert bar not in err
