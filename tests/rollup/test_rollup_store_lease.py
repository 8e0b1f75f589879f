"""One rollup at a time per store (DESIGN §11), with real `gravix rollup --store` processes
against moto's S3 server: a second run is refused while the first holds the lease, the
lease of a SIGKILLed runner is taken over once it expires, and of two runners that try to
take it over at once exactly one wins.

The first runner is held in the middle of its run by a fault plan that delays the write
of its first Parquet file (it holds the lease, renewing it, all that time).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gravix import schema
from gravix.storage.layout import Hour
from rollup_facts import DAY1, generate
from s3util import MotoServer
from store_facts import put_facts, split_url

LEASE_SECONDS = "2"


def _stall(seconds: float) -> str:
    return json.dumps(
        [{"op": "replace", "path": "part-", "action": "delay", "seconds": seconds, "times": -1}]
    )


def _rollup(
    url: str, root: Path, moto: MotoServer, node: str, stall: float = 0.0
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **moto.env(),
        "GRAVIX_LEASE_SECONDS": LEASE_SECONDS,
        "GRAVIX_NODE_ID": node,
        "GRAVIX_STORE": "",
    }
    if stall:
        env["GRAVIX_FAULT_PLAN"] = _stall(stall)
    args = ["rollup", "--store", url, "--data-dir", str(root), "--json"]
    return subprocess.Popen(
        [sys.executable, "-m", "gravix", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, dict[str, Any]]:
    out, _err = proc.communicate(timeout=120)
    return proc.returncode, json.loads(out)


def _leases(moto: MotoServer, url: str) -> dict[int, dict[str, Any]]:
    bucket, prefix = split_url(url)
    found = moto.objects(bucket, f"{prefix}/state/leases/rollup/")
    return {
        int(k.rsplit("-", 1)[-1].removesuffix(".json")): json.loads(v)
        for k, v in found.items()
        if not k.endswith("/")
    }


def _wait_for_lease(moto: MotoServer, url: str, pid: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for state in _leases(moto, url).values():
            if state["pid"] == pid and not state["released"]:
                return state
        time.sleep(0.05)
    raise AssertionError("the first rollup never took the lease")


def _killed_holder(url: str, tmp_path: Path, moto: MotoServer) -> int:
    """A rollup SIGKILLed while it holds the lease; its pid."""
    put_facts(moto, url, tmp_path / "local", generate(random.Random(1), [Hour(DAY1, 9)], 200),
              schema.REQUEST_FACTS)  # fmt: skip
    first = _rollup(url, tmp_path / "first", moto, "runner-1", stall=600)
    _wait_for_lease(moto, url, first.pid)
    _kill(first)
    return first.pid


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def test_second_rollup_is_refused_while_the_first_holds_the_lease_then_takes_it_over(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    url = s3_store_url
    put_facts(moto, url, tmp_path / "local", generate(random.Random(1), [Hour(DAY1, 9)], 200),
              schema.REQUEST_FACTS)  # fmt: skip
    first = _rollup(url, tmp_path / "first", moto, "runner-1", stall=600)
    _wait_for_lease(moto, url, first.pid)
    time.sleep(3)  # longer than the lease: the first runner's renewals keep it
    code, doc = _finish(_rollup(url, tmp_path / "second", moto, "runner-2"))
    assert code == 1
    assert f"held by pid {first.pid}" in doc["error"] and "node runner-1" in doc["error"]
    assert "until 20" in doc["error"] and doc["hint"]
    _kill(first)
    (left,) = _leases(moto, url).values()
    assert left["pid"] == first.pid and not left["released"]
    time.sleep(max(0.0, left["expires_at"] - time.time()) + 0.3)
    code, doc = _finish(_rollup(url, tmp_path / "third", moto, "runner-3"))
    assert code == 0, doc
    assert doc["hours_built"] == 1 and doc["facts"] > 0
    leases = _leases(moto, url)
    assert list(leases) == [2]  # the killed runner's generation 1 is gone
    assert leases[2]["node"] == "runner-3" and leases[2]["released"] is True


def test_two_runners_taking_over_a_killed_runners_lease_at_once_exactly_one_wins(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    url = s3_store_url
    killed = _killed_holder(url, tmp_path, moto)
    (left,) = _leases(moto, url).values()
    assert left["pid"] == killed
    time.sleep(max(0.0, left["expires_at"] - time.time()) + 0.3)
    # Both hold the lease for 8 s once they have it: far longer than their start-up skew.
    racers = [_rollup(url, tmp_path / f"racer-{n}", moto, f"racer-{n}", stall=8) for n in (1, 2)]
    outcomes = [_finish(p) for p in racers]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 1], outcomes
    winner = next(p for p, (code, _) in zip(racers, outcomes, strict=True) if code == 0)
    refused = next(doc for code, doc in outcomes if code == 1)
    assert f"held by pid {winner.pid}" in refused["error"]
    leases = _leases(moto, url)
    assert list(leases) == [2] and leases[2]["pid"] == winner.pid
