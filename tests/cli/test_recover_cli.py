"""`gravix recover` on the command line: flags reach the library, a summary (or one JSON
document), a dry run that says nothing changed, usage errors exit 2."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix.cli import app
from gravix.ops import recovery
from gravix.storage.orphans import BufferRecoveryReport
from publish_facts import fact_lines, raw_content, write_buffer

ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_CONSOLE_WIDTH": "200", "NO_COLOR": "1"}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["recover", *args], env=ENV)


def orphans(root: Path) -> list[bytes]:
    lines = fact_lines(50)
    old = time.time() - 60
    dead = write_buffer(root, "active-dead.jsonl", b"".join(lines[:20]) + b'{"event_')
    os.utime(dead, (old, old))
    middle = b"".join(lines[20:30]) + b"\xff\xfe\n" + b"".join(lines[30:])
    write_buffer(root, "sealed-s1.jsonl", middle)
    return lines


def test_flags_reach_the_library(monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    calls: list[dict[str, Any]] = []

    def spy(**kwargs: Any) -> recovery.RecoverReport:
        calls.append(kwargs)
        return recovery.RecoverReport(
            root=kwargs["root"],
            dry_run=kwargs["dry_run"],
            deep=kwargs["deep"],
            buffers=BufferRecoveryReport(dry_run=kwargs["dry_run"]),
        )

    monkeypatch.setattr(recovery, "run_recover", spy)
    window = ["--start-time", "2026-02-16T10:00:00Z", "--end-time", "2026-02-16T11:00:00Z"]
    result = invoke("--data-dir", str(data_root), "--deep", "--dry-run", "--rebuild", *window)
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    call = calls[0]
    assert (call["root"], call["dry_run"], call["deep"]) == (data_root, True, True)
    assert (call["rebuild_start"], call["rebuild_end"]) == (
        datetime(2026, 2, 16, 10, tzinfo=UTC),
        datetime(2026, 2, 16, 11, tzinfo=UTC),
    )


def test_recover_prints_a_summary_with_counts(data_root: Path) -> None:
    lines = orphans(data_root)

    result = invoke("--data-dir", str(data_root))

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "2 orphaned file(s) moved into raw: 50 lines" in out
    assert "1 torn tail line(s) dropped" in out
    assert "1 damaged line(s) quarantined" in out
    assert out.rstrip().endswith("Recovery complete.")
    stored = sorted(line for f in raw_content(data_root).values() for line in f)
    assert stored == sorted(lines)


def test_dry_run_prints_the_plan_ends_with_no_files_changed_and_changes_nothing(
    data_root: Path,
) -> None:
    orphans(data_root)
    before = {str(p): p.read_bytes() for p in data_root.rglob("*") if p.is_file()}

    result = invoke("--data-dir", str(data_root), "--dry-run")

    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().splitlines()[-1] == "No files were changed."
    assert "to move into raw: 50 lines" in result.stdout
    assert {str(p): p.read_bytes() for p in data_root.rglob("*") if p.is_file()} == before


def test_json_is_one_document_with_the_counts(data_root: Path) -> None:
    orphans(data_root)

    result = invoke("--data-dir", str(data_root), "--json")

    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["buffers"]["lines"] == 50
    assert doc["buffers"]["torn_tail_lines"] == 1
    assert doc["buffers"]["damaged_lines"] == 1
    assert doc["buffers"]["files"] == 2
    assert len(doc["buffers"]["quarantined"]) == 2
    assert doc["parquet_problems"] == []


@pytest.mark.parametrize(
    "args",
    [
        ["--rebuild"],
        ["--start-time", "2026-02-16T10:00:00Z", "--end-time", "2026-02-16T11:00:00Z"],
        ["--rebuild", "--start-time", "yesterday", "--end-time", "2026-02-16T11:00:00Z"],
        ["--rebuild", "--start-time", "2026-02-16T12:00:00Z", "--end-time", "2026-02-16T11:00:00Z"],
    ],
)
def test_a_bad_window_is_a_usage_error_that_changes_nothing(
    data_root: Path, args: list[str]
) -> None:
    orphans(data_root)
    before = {str(p): p.read_bytes() for p in data_root.rglob("*") if p.is_file()}
    result = invoke("--data-dir", str(data_root), *args)
    assert result.exit_code == 2, result.output
    assert "Hint:" in result.stderr or "Error" in result.stderr
    assert {str(p): p.read_bytes() for p in data_root.rglob("*") if p.is_file()} == before


def test_help_has_an_example() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Example: gravix recover" in result.stdout


def run_on_terminal(*args: str) -> tuple[int, str]:
    """Run `gravix …` with stdout and stderr on a pseudo-terminal; returns what it showed."""
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_")}
    env.pop("NO_COLOR", None)
    env.update(TERM="xterm", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gravix", *args], stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=60), shown.decode(errors="replace")


def test_progress_is_shown_on_a_terminal_and_not_with_json(data_root: Path) -> None:
    for i in range(12):
        write_buffer(data_root, f"sealed-p{i:02d}.jsonl", b"".join(fact_lines(30)))

    code, shown = run_on_terminal("recover", "--data-dir", str(data_root))

    assert code == 0
    # the bar is drawn when the work starts (later frames depend on the clock)
    assert "\x1b[?25l" in shown and "recovering" in shown
    assert "Recovery complete." in shown

    for i in range(12):
        write_buffer(data_root, f"sealed-q{i:02d}.jsonl", b"".join(fact_lines(30)))
    code, shown = run_on_terminal("recover", "--data-dir", str(data_root), "--json")
    assert code == 0
    assert "recovering" not in shown
    assert json.loads(shown.replace("\r\n", "\n"))["buffers"]["files"] == 12
