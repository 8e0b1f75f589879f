"""A data root with a symlinked directory under it is refused by every command before it
writes anything, naming the link and where it leads; the directory outside is untouched.

The matrix: every command × a link at every level (area, topic or table, lock and state
directories, a day partition)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gravix.cli import app
from gravix.errors import UnsafePath
from gravix.rollup import run_rollup
from gravix.storage import guard, layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, generate

ENV = {"GRAVIX_DATA_DIR": "", "GRAVIX_CONSOLE_WIDTH": "400", "NO_COLOR": "1"}
SERVER = [sys.executable, "-m", "gravix", "ingest-server", "--port", "0", "--insecure-no-auth"]
HOURS = [Hour(DAY1, 10), Hour(DAY1, 11)]
WINDOW = ["--start-time", "2026-02-16T10:00:00Z", "--end-time", "2026-02-16T12:00:00Z"]

# Relative to the data root; each is replaced by a link to a directory outside it.
LINKS = [
    "buffer",
    "raw",
    "warehouse",
    "quarantine",
    "state",
    "buffer/request_facts",
    "raw/request_facts",
    "warehouse/request_metrics_minute",
    "state/locks",
    "state/rollup",
    f"raw/request_facts/{layout.day_dir_name(DAY1)}",
    f"warehouse/request_metrics_minute/{layout.day_dir_name(DAY1)}",
]

COMMANDS: dict[str, list[str]] = {
    "rollup": ["rollup", *WINDOW],
    "rollup-incremental": ["rollup"],
    "recover": ["recover", "--deep"],
    "cleanup": ["cleanup", "--days", "1"],
    "query": ["query", "SELECT count(*) AS n FROM request_metrics_minute"],
    "query-raw": ["query", "SELECT count(*) AS n FROM request_facts"],
    "doctor": ["doctor", "--url", "http://127.0.0.1:9", "--json"],
    "demo": ["demo"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with raw facts, a built warehouse, state, a buffer and a quarantine."""
    root = tmp_path_factory.mktemp("base") / "data"
    root.mkdir()
    generate(random.Random(3), HOURS, 40).write(root)
    run_rollup(root=root)
    for topic in ("request_facts", "service_events"):
        layout.buffer_dir(root, topic).mkdir(parents=True)
    (layout.quarantine_root(root) / "parquet").mkdir(parents=True)
    return root


def _linked(built: Path, tmp_path: Path, rel: str) -> tuple[Path, Path]:
    root = tmp_path / "data"
    shutil.copytree(built, root, symlinks=True)
    outside = tmp_path / "outside" / rel.replace("/", "_")
    outside.parent.mkdir()
    shutil.move(root / rel, outside)
    (root / rel).symlink_to(outside, target_is_directory=True)
    return root, outside


def listing(directory: Path) -> list[tuple[str, int, int]]:
    """Every entry below ``directory`` with its size and modification time."""
    out = []
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        out.append((str(path.relative_to(directory)), st.st_size, st.st_mtime_ns))
    return out


def flat(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("rel", LINKS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_symlinked_directory_before_writing(
    built: Path, tmp_path: Path, rel: str, command: str
) -> None:
    root, outside = _linked(built, tmp_path, rel)
    before = listing(outside)
    result: Any = CliRunner().invoke(app, [*COMMANDS[command], "--data-dir", str(root)], env=ENV)
    output = flat(result.output)
    assert result.exit_code in (1, 2), result.output
    assert flat(str(root / rel)) in output and flat(str(outside)) in output, result.output
    assert "Traceback" not in result.output
    assert listing(outside) == before
    assert (root / rel).is_symlink()


@pytest.mark.parametrize("rel", ["warehouse", "raw/request_facts", "state"])
def test_the_server_refuses_a_symlinked_directory_before_listening(
    built: Path, tmp_path: Path, rel: str
) -> None:
    root, outside = _linked(built, tmp_path, rel)
    before = listing(outside)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_")}
    proc = subprocess.run(
        [*SERVER, "--data-dir", str(root)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, **ENV},
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert flat(str(outside)) in flat(proc.stderr) and "Traceback" not in proc.stderr
    assert listing(outside) == before


def test_the_root_itself_may_be_a_symlink(built: Path, tmp_path: Path) -> None:
    root = tmp_path / "real"
    shutil.copytree(built, root, symlinks=True)
    link = tmp_path / "link"
    link.symlink_to(root, target_is_directory=True)
    assert guard.check_root(link) == link
    summary = run_rollup(root=link, start="2026-02-16T10:00:00Z", end="2026-02-16T12:00:00Z")
    assert summary.hours_built > 0


def test_a_file_planted_as_a_link_beside_the_partitions_is_refused(
    built: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(built, root, symlinks=True)
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(b"x")
    day = layout.warehouse_day_dir(root, "request_metrics_minute", DAY1)
    planted = day / "part-23.parquet"
    planted.symlink_to(victim)
    with pytest.raises(UnsafePath) as caught:
        guard.check_root(root)
    assert str(planted) in caught.value.message and str(victim) in caught.value.message
