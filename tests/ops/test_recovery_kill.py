"""`gravix recover` killed with SIGKILL at random points and run again: every good line ends
up in raw exactly once, under one name."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gravix.storage.layout import is_tmp
from publish_facts import fact_lines, raw_content


def orphan_tree(root: Path) -> list[bytes]:
    """Sealed files and dead processes' active files, some damaged; returns the good lines."""
    buffer = root / "buffer" / "request_facts"
    buffer.mkdir(parents=True)
    good: list[bytes] = []
    old = time.time() - 120
    for i in range(14):
        start = datetime(2026, 2, 16, 8, tzinfo=UTC) + timedelta(minutes=17 * i)
        lines = fact_lines(90, start=start, step_s=61.0)
        data = b"".join(lines)
        if i % 4 == 1:
            data += b'{"event_id":"0190'  # torn tail
        if i % 5 == 2:
            data = b"".join(lines[:30]) + b"\x00" * 64 + b"\n" + b"".join(lines[30:])
        good.extend(lines)
        kind = "active" if i % 3 == 0 else "sealed"
        path = buffer / f"{kind}-{i:04d}.jsonl"
        path.write_bytes(data)
        os.utime(path, (old, old))
    return good


def recover(root: Path, kill_after: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_")}
    if kill_after is not None:
        env["GRAVIX_FAULT_PLAN"] = json.dumps(
            [{"op": "*", "skip": kill_after, "times": 1, "action": "kill"}]
        )
    return subprocess.run(
        [sys.executable, "-m", "gravix", "recover", "--data-dir", str(root), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_exactly_once(root: Path, good: list[bytes]) -> None:
    stored = raw_content(root)
    lines = [line for file_lines in stored.values() for line in file_lines]
    assert Counter(lines) == Counter(good)  # nothing lost, nothing twice
    assert len(set(lines)) == len(lines)  # so no line under two names either
    assert not list((root / "buffer" / "request_facts").iterdir())
    assert not [p for p in root.rglob("*") if is_tmp(p)]
    # each damaged file's bad bytes are quarantined once
    quarantined = [p for p in (root / "quarantine").rglob("*") if p.is_file()]
    assert len(quarantined) == len([i for i in range(14) if i % 4 == 1 or i % 5 == 2])


def run_chain(root: Path, good: list[bytes], kills: list[int]) -> None:
    killed = 0
    for kill_after in kills:
        result = recover(root, kill_after)
        assert result.returncode in (-signal.SIGKILL, 0), result.stderr
        killed += result.returncode == -signal.SIGKILL
    assert killed >= 1  # the kills did happen
    final = recover(root)
    assert final.returncode == 0, final.stderr
    assert_exactly_once(root, good)


def test_recover_killed_at_random_operations_and_rerun_stores_every_line_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(20260216)
    pristine = tmp_path / "pristine"
    good = orphan_tree(pristine)
    for chain in range(1):
        root = tmp_path / f"chain{chain}"
        shutil.copytree(pristine, root)
        run_chain(root, good, [rng.randrange(0, 120) for _ in range(5)])


@pytest.mark.slow
def test_recover_killed_many_times_at_random_moments_stores_every_line_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    pristine = tmp_path / "pristine"
    good = orphan_tree(pristine)
    for chain in range(6):
        root = tmp_path / f"ops{chain}"
        shutil.copytree(pristine, root)
        run_chain(root, good, [rng.randrange(0, 40) for _ in range(8)])
    # and by the clock rather than by operation count
    for chain in range(4):
        root = tmp_path / f"clock{chain}"
        shutil.copytree(pristine, root)
        for _ in range(6):
            proc = subprocess.Popen(
                [sys.executable, "-m", "gravix", "recover", "--data-dir", str(root), "--json"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.2, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        final = recover(root)
        assert final.returncode == 0, final.stderr
        assert_exactly_once(root, good)
