"""A data root the current user may not write (made by root, used by a service user; or
made read-only) gives every command a one-line error naming the path, its owner and the
fix — never a traceback — and doctor's permissions check fails naming the first place.

The commands run as ``nobody`` (uid 65534) in a subprocess, so the suite needs root."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gravix.rollup import run_rollup
from gravix.storage.layout import Hour
from rollup_facts import DAY1, generate

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to make a root-owned data root and drop to nobody"
)

NOBODY = 65534
HELPER = Path(__file__).with_name("asnobody.py")
SRC = Path(__file__).resolve().parents[2] / "src"
COUNT = "SELECT count(*) AS n FROM request_metrics_minute"
WRITERS = {
    "rollup": ["rollup"],
    "recover": ["recover"],
    "cleanup": ["cleanup", "--days", "1"],
}


def _traversable(path: Path) -> None:
    """Let nobody reach ``path``: every parent up to / must be searchable."""
    for parent in [path, *path.parents]:
        if parent == Path("/") or parent.stat().st_mode & 0o005 == 0o005:
            continue
        parent.chmod(parent.stat().st_mode | 0o005)


def _chmod_tree(root: Path, dirs: int, files: int) -> None:
    for dirpath, _dirs, names in os.walk(root):
        os.chmod(dirpath, dirs)
        for name in names:
            os.chmod(os.path.join(dirpath, name), files)


@pytest.fixture()
def reachable() -> Iterator[Path]:
    """A directory nobody can reach. Not under tmp_path: pytest keeps its base directory
    0700, and another pytest session may reset it at any moment."""
    base = Path(tempfile.mkdtemp(prefix="gravix-perm-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    for dirpath, _dirs, _names in os.walk(base):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(base)


@pytest.fixture()
def root_owned(reachable: Path) -> Iterator[Path]:
    """A root written once by root (mode 0755/0644), rolled up, then handed to nobody."""
    root = reachable / "data"
    root.mkdir()
    generate(random.Random(5), [Hour(DAY1, 10), Hour(DAY1, 11)], 30).write(root)
    run_rollup(root=root)
    _chmod_tree(root, 0o755, 0o644)
    _traversable(root)
    yield root


def as_nobody(root: Path, *args: str, via_env: bool = False) -> subprocess.CompletedProcess[str]:
    """``gravix ARGS --data-dir ROOT`` as nobody (or with GRAVIX_DATA_DIR, ``via_env``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_")}
    env.update(PYTHONPATH=str(SRC), GRAVIX_CONSOLE_WIDTH="400", NO_COLOR="1")
    where = ["--data-dir", str(root)]
    if via_env:
        env["GRAVIX_DATA_DIR"], where = str(root), []
    return subprocess.run(
        [sys.executable, str(HELPER), *args, *where],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd="/",
        check=False,
    )


def _flat(text: str) -> str:
    return " ".join(text.split())


def _says_who_and_how(stderr: str, owner: str, root: Path) -> None:
    text = _flat(stderr)
    assert "Traceback" not in stderr, stderr
    assert "permission denied: nobody cannot" in text and f"(owned by {owner})" in text, stderr
    assert str(root) in text, stderr


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_root_owned_by_another_user_is_a_clear_error_naming_path_owner_and_fix(
    root_owned: Path, command: str
) -> None:
    proc = as_nobody(root_owned, *WRITERS[command])
    assert proc.returncode == 1, proc.stderr
    _says_who_and_how(proc.stderr, "root", root_owned)
    assert f"chown -R nobody {root_owned}" in _flat(proc.stderr)
    assert "state/locks" in proc.stderr


def test_doctor_fails_when_a_command_could_not_write(root_owned: Path) -> None:
    proc = as_nobody(root_owned, "doctor", "--url", "http://127.0.0.1:9", "--json")
    assert proc.returncode == 1, proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["permissions"]["status"] == "fail"
    assert "state/locks" in checks["permissions"]["detail"]
    assert "owned by root" in checks["permissions"]["detail"]
    assert f"chown -R nobody {root_owned}" in checks["permissions"]["hint"]


def test_query_only_reads_so_it_answers_on_a_root_it_may_not_write(root_owned: Path) -> None:
    proc = as_nobody(root_owned, "query", COUNT, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["rollup"],
        ["recover"],
        ["cleanup", "--days", "1"],
        ["doctor", "--url", "http://127.0.0.1:9"],
        ["query", COUNT],
    ],
    ids=lambda a: a[0],
)
def test_an_unreadable_root_is_a_clear_error_for_every_command(
    root_owned: Path, args: list[str]
) -> None:
    # Through the environment: typer already refuses an unreadable --data-dir (exit 2).
    root_owned.chmod(0o700)
    proc = as_nobody(root_owned, *args, via_env=True)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    _says_who_and_how(proc.stderr + proc.stdout, "root", root_owned)


@pytest.mark.parametrize(
    "args",
    [
        ["rollup", "--start-time", "2026-02-16T10:00:00Z", "--end-time", "2026-02-16T12:00:00Z"],
        ["recover"],
        ["cleanup", "--days", "1"],
    ],
    ids=lambda a: a[0],
)
def test_a_read_only_root_of_ones_own_is_a_clear_error_naming_chmod(
    root_owned: Path, args: list[str]
) -> None:
    shutil.chown(root_owned, NOBODY, NOBODY)
    for dirpath, dirs, names in os.walk(root_owned):
        for name in [*dirs, *names]:
            os.chown(os.path.join(dirpath, name), NOBODY, NOBODY)
    _chmod_tree(root_owned, 0o555, 0o444)
    before = sorted(str(p) for p in root_owned.rglob("*"))
    proc = as_nobody(root_owned, *args)
    assert proc.returncode == 1, proc.stderr
    _says_who_and_how(proc.stderr, "nobody", root_owned)
    assert f"chmod -R u+rwX {root_owned}" in _flat(proc.stderr)
    assert sorted(str(p) for p in root_owned.rglob("*")) == before


def test_the_server_names_path_owner_and_fix_before_listening(root_owned: Path) -> None:
    proc = as_nobody(root_owned, "ingest-server", "--port", "0", "--insecure-no-auth")
    assert proc.returncode == 1, proc.stderr
    _says_who_and_how(proc.stderr, "root", root_owned)
    assert "listening" not in proc.stderr


def test_the_demo_names_path_owner_and_fix(reachable: Path) -> None:
    root = reachable / "empty"
    root.mkdir()
    _traversable(root)
    proc = as_nobody(root, "demo")
    assert proc.returncode == 1, proc.stderr
    _says_who_and_how(proc.stderr, "root", root)
    assert list(root.iterdir()) == []
