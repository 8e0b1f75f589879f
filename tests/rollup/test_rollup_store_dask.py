"""The store's rollup on a Dask distributed cluster (DESIGN §11): a scheduler and two worker
processes on loopback, raw facts and tables in moto's S3 server. The workers see nothing of
the runner's disk: each hour task works in its worker's own local directory and reads and
writes the store. The tables equal those of a data root rolled up from the same facts, and
a worker killed in the middle of an hour costs a retry, never a missing or doubled row."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from executor_support import child_env, dask_cluster

from gravix import schema
from gravix.rollup import run_rollup
from gravix.storage import layout
from gravix.storage.layout import Hour
from rollup_facts import DAY1, DAY2, generate
from s3util import MotoServer
from store_facts import NODE, download, events, put_facts, store_rollup, table_rows

HOURS = [Hour(DAY1, h) for h in (21, 22, 23)] + [Hour(DAY2, 0), Hour(DAY2, 1)]
# Each hour's Parquet waits this long before it is renamed into place in the task's work
# directory: a kill lands in the middle of a task.
SLOW_BUILD = [
    {"op": "replace", "path": "warehouse/request_metrics_minute", "times": -1}
    | {"action": "delay", "seconds": 0.8}
]
RUN_TIMEOUT = 180.0


def _facts(url: str, moto: MotoServer, local: Path, seed: int, prefix: str) -> None:
    rng = random.Random(seed)
    put_facts(moto, url, local, generate(rng, HOURS, 300, prefix=prefix), schema.REQUEST_FACTS)
    put_facts(moto, url, local, events(rng, HOURS, 5), schema.SERVICE_EVENTS)


def _same_tables(url: str, moto: MotoServer, local: Path, copy: Path) -> None:
    run_rollup(root=local)
    download(moto, url, copy, "warehouse/")
    for table in schema.WAREHOUSE_TABLES:
        rows = table_rows(copy, table)
        assert rows and rows == table_rows(local, table), table


def _work_dirs(tmp_path: Path) -> list[Path]:
    """The hour tasks' work directories in the workers' local directories."""
    return [p for p in tmp_path.glob("dask-w*/**/work/*") if p.is_dir()]


def _computed(log: list[tuple[object, ...]]) -> dict[str, int]:
    """How many times the scheduler handed out each hour task."""
    started: dict[str, int] = {}
    for entry in log:
        if str(entry[0]).startswith("gravix-rollup-") and entry[2] == "processing":
            started[str(entry[0])] = started.get(str(entry[0]), 0) + 1
    return started


def test_dask_cluster_rolls_up_the_store_as_a_data_root_is_rolled_up(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    local, runner = tmp_path / "local", tmp_path / "runner"
    _facts(s3_store_url, moto, local, 21, "a")
    with dask_cluster(tmp_path) as cluster:
        summary = store_rollup(s3_store_url, runner, executor=cluster.address)
        log = cluster.scheduler_log()
    assert summary.hours_built == 2 * len(HOURS)
    _same_tables(s3_store_url, moto, local, tmp_path / "copy")
    # Every hour of request_metrics_minute was built by the cluster's workers, in their own
    # directories: nothing of it was written on the runner's disk.
    assert len(_computed(log)) == len(HOURS)
    assert not layout.store_work_dir(runner).exists() or not list(
        layout.store_work_dir(runner).iterdir()
    )
    assert not list(layout.warehouse_root(runner).rglob("*.parquet"))
    assert _work_dirs(tmp_path) == []


def test_dask_worker_killed_mid_task_on_the_store_costs_a_retry_not_a_row(
    s3_store_url: str, moto: MotoServer, tmp_path: Path
) -> None:
    local, runner = tmp_path / "local", tmp_path / "runner"
    _facts(s3_store_url, moto, local, 22, "a")
    store_rollup(s3_store_url, runner)
    _facts(s3_store_url, moto, local, 23, "b")  # late facts: every hour is rebuilt
    with dask_cluster(tmp_path) as cluster:
        cmd = [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(runner)]
        extra = {
            "GRAVIX_EXECUTOR": cluster.address,
            "GRAVIX_FAULT_PLAN": json.dumps(SLOW_BUILD),
            "GRAVIX_NODE_ID": NODE,
        }
        proc = subprocess.Popen(
            [*cmd, "--store", s3_store_url, "--json"],
            env=child_env(extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            killed = _kill_a_worker_mid_task(tmp_path, cluster, proc)
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            proc.kill()
        log = cluster.scheduler_log()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert json.loads(out)["hours_built"] == 2 * len(HOURS)
    assert killed in cluster.worker_pids()
    assert max(_computed(log).values()) >= 2  # the killed worker's hour was handed out again
    _same_tables(s3_store_url, moto, local, tmp_path / "copy")
    assert store_rollup(s3_store_url, runner).nothing_to_do


def _kill_a_worker_mid_task(tmp_path: Path, cluster: object, proc: subprocess.Popen[bytes]) -> int:
    """Wait until a worker holds an hour's work directory (named by its pid); SIGKILL it."""
    pids = cluster.worker_pids()  # type: ignore[attr-defined]
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        for work in _work_dirs(tmp_path):
            pid = work.name.split("-", 1)[0]
            if pid.isdigit() and int(pid) in pids:
                os.kill(int(pid), signal.SIGKILL)
                return int(pid)
        time.sleep(0.01)
    _out, err = proc.communicate(timeout=RUN_TIMEOUT)
    raise AssertionError(f"no worker was seen in the middle of an hour: {err.decode()[-2000:]}")
