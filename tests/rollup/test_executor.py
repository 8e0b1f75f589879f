"""Rollup's hour tasks on its executors (DESIGN §11): a local pool of worker processes and a
Dask distributed cluster of real processes on loopback. Either gives the same tables as a
run in one process, and a worker killed in the middle of an hour costs a retry, never a
missing or doubled row."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from executor_support import (
    Reader,
    child_env,
    copy_raw,
    dask_cluster,
    hour_totals,
    table_rows,
    tmp_outputs,
    writer_pid,
)

from gravix import schema
from gravix.errors import ConfigError
from gravix.rollup import run_rollup
from gravix.rollup.compact import compact_closed_days
from gravix.rollup.executor import LocalExecutor
from gravix.settings import load_settings
from gravix.storage import durable
from gravix.storage.layout import Hour
from rollup_facts import DAY1, DAY2, Facts, event_line, generate

HOURS = [Hour(DAY1, h) for h in (20, 21, 22, 23)] + [Hour(DAY2, 0), Hour(DAY2, 1)]
# Each hour's Parquet waits this long before it is renamed into place: a kill lands while
# the hour's temporary file exists, in the middle of its task.
SLOW_PUBLISH = [
    {"op": "replace", "path": "warehouse/request_metrics_minute", "times": -1}
    | {"action": "delay", "seconds": 0.8}
]
RUN_TIMEOUT = 180.0


def _raw(root: Path, seed: int, prefix: str, per_hour: int = 300) -> None:
    rng = random.Random(seed)
    generate(rng, HOURS, per_hour, prefix=prefix).write(root)
    events = Facts()
    for hour in HOURS:
        for _ in range(5):
            moment = hour.start.replace(minute=rng.randrange(60))
            events.add(hour, f"{prefix}-e", event_line(rng, moment, "deploy_started"))
    events.write(root, schema.SERVICE_EVENTS)


def _reference(tmp_path: Path, source: Path) -> Path:
    """The same raw files rolled up in this process, one hour after another."""
    root = tmp_path / "reference"
    copy_raw(source, root)
    run_rollup(root=root, executor=LocalExecutor(workers=1))
    return root


def _kill_a_worker_mid_task(root: Path, pids: set[int], proc: subprocess.Popen[bytes]) -> int:
    """Wait for an hour's temporary output written by one of ``pids``; SIGKILL that writer."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        for tmp in tmp_outputs(root):
            pid = writer_pid(tmp)
            if pid in pids:
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.01)
    raise AssertionError("no worker was seen in the middle of an hour")


def _rollup_until_done(proc: subprocess.Popen[bytes]) -> dict[str, object]:
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, err.decode()[-3000:]
    summary: dict[str, object] = json.loads(out)
    return summary


def _assert_reads_saw_old_or_new(reader: Reader, old: dict[str, int], new: dict[str, int]) -> None:
    assert reader.failures == []
    assert len(reader.seen) >= 5, "the reader did not get to read"
    for totals in reader.seen:
        assert set(totals) == set(new), totals
        for hour, total in totals.items():
            assert total in (old[hour], new[hour]), (hour, total)


def test_executor_setting_comes_from_the_flag_then_the_environment_and_is_checked() -> None:
    env = {"GRAVIX_EXECUTOR": "dask://10.0.0.7:8786"}
    assert load_settings(environ={}).executor == "local"
    assert load_settings(environ=env).executor == "dask://10.0.0.7:8786"
    assert load_settings(executor="local", environ=env).executor == "local"
    for bad in ("dask://", "dask://host", "dask://host:0", "dask://host:x", "tcp://h:1", "ray"):
        with pytest.raises(ConfigError) as caught:
            load_settings(executor=bad, environ={})
        assert "--executor" in str(caught.value) and caught.value.hint
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"GRAVIX_EXECUTOR": "dask://h:99999"})
    assert "GRAVIX_EXECUTOR" in str(caught.value)


def test_cli_refuses_a_bad_executor_with_a_usage_error(data_root: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "gravix", "rollup", "--data-dir", str(data_root)),
            *("--json", "--executor", "dask://nowhere"),
        ],
        capture_output=True,
        env=child_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert "dask://HOST:PORT" in json.loads(proc.stdout)["error"]


def test_local_pool_builds_the_same_tables_as_one_process(tmp_path: Path) -> None:
    root = tmp_path / "pool"
    _raw(root, 1, "a")
    summary = run_rollup(root=root, executor=LocalExecutor(workers=2, min_bytes=0))
    assert summary.hours_built == len(HOURS) * 2  # both tables
    assert summary.duplicates > 0
    assert table_rows(root) == table_rows(_reference(tmp_path, root))


def test_a_killed_pool_worker_costs_a_retry_not_a_missing_or_doubled_row(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pool"
    _raw(root, 2, "a")
    run_rollup(root=root)
    old = hour_totals(root)
    _raw(root, 3, "b")  # late facts for every hour
    reference = _reference(tmp_path, root)
    new = hour_totals(reference)
    reader = Reader(root)
    reader.start()
    durable.install_fault_plan(json.dumps(SLOW_PUBLISH))
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline and not killed:
            me = psutil.Process()
            workers = {c.pid for c in me.children(recursive=True)}
            for tmp in tmp_outputs(root):
                if writer_pid(tmp) in workers:
                    os.kill(writer_pid(tmp), signal.SIGKILL)
                    killed.append(writer_pid(tmp))
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    try:
        summary = run_rollup(
            root=root,
            tables=schema.REQUEST_METRICS_MINUTE,
            executor=LocalExecutor(workers=2, min_bytes=0),
        )
    finally:
        durable.set_hook(None)
        killer.join(timeout=RUN_TIMEOUT)
        reader.stop.set()
        reader.join(timeout=60)
    assert killed, "no pool worker was killed"
    assert sorted(h.hour for h in summary.hours) == HOURS
    assert hour_totals(root) == new
    rows = table_rows(root)
    assert (
        rows[schema.REQUEST_METRICS_MINUTE] == table_rows(reference)[schema.REQUEST_METRICS_MINUTE]
    )
    _assert_reads_saw_old_or_new(reader, old, new)


def test_late_hours_of_a_compacted_day_in_the_pool_all_reach_its_one_file(
    tmp_path: Path,
) -> None:
    """Hours of a compacted day rewrite the day's one file: handed to two workers at once,
    one hour's new rows would overwrite the other's."""
    root = tmp_path / "pool"
    _raw(root, 8, "a")
    run_rollup(root=root)
    report = compact_closed_days(root, today=DAY2 + timedelta(days=1))
    assert {d.day for d in report.days} == {DAY1, DAY2}
    _raw(root, 9, "b")  # late facts for every hour of both compacted days
    reference = _reference(tmp_path, root)
    summary = run_rollup(root=root, executor=LocalExecutor(workers=2, min_bytes=0))
    assert (
        sorted(h.hour for h in summary.hours if h.table == schema.REQUEST_METRICS_MINUTE) == HOURS
    )
    assert hour_totals(root) == hour_totals(reference)
    assert table_rows(root) == table_rows(reference)


POOL_RUN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from gravix.rollup import run_rollup
    from gravix.rollup.executor import LocalExecutor
    from gravix.storage import durable
    durable.install_fault_plan(sys.argv[2])
    run_rollup(root=Path(sys.argv[1]), executor=LocalExecutor(workers=2, min_bytes=0))
""")


def test_pool_workers_end_with_a_killed_rollup(tmp_path: Path) -> None:
    """A worker that outlived its run would write hours that the next run owns."""
    root = tmp_path / "pool"
    _raw(root, 4, "a")
    proc = subprocess.Popen(
        [sys.executable, "-c", POOL_RUN, str(root), json.dumps(SLOW_PUBLISH)],
        env=child_env(),
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        workers: list[psutil.Process] = []
        while not workers and time.monotonic() < deadline and proc.poll() is None:
            children = psutil.Process(proc.pid).children()
            writing = {writer_pid(t) for t in tmp_outputs(root)}
            workers = [c for c in children if c.pid in writing]
            time.sleep(0.01)
        assert workers, "no worker was seen writing an hour"
        proc.kill()
        proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [] and gone
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    # The next run takes the lock, sweeps the dead workers' temporaries and builds it all.
    run_rollup(root=root)
    assert tmp_outputs(root) == []
    assert table_rows(root) == table_rows(_reference(tmp_path, root))


def test_dask_cluster_builds_the_same_tables_as_a_local_run(tmp_path: Path) -> None:
    root = tmp_path / "dask"
    _raw(root, 5, "a")
    reference = _reference(tmp_path, root)
    with dask_cluster(tmp_path) as cluster:
        summary = run_rollup(root=root, executor=cluster.address)
        log = cluster.scheduler_log()
    assert summary.hours_built == len(HOURS) * 2
    assert table_rows(root) == table_rows(reference)
    # Every hour of request_metrics_minute was computed by the cluster's workers.
    computed = {
        entry[0]
        for entry in log
        if str(entry[0]).startswith(f"gravix-rollup-{schema.REQUEST_METRICS_MINUTE}-")
        and entry[2] == "memory"
    }
    assert len(computed) == len(HOURS)


def test_dask_worker_killed_mid_task_costs_a_retry_not_a_missing_or_doubled_row(
    tmp_path: Path,
) -> None:
    root = tmp_path / "dask"
    _raw(root, 6, "a")
    run_rollup(root=root)
    old = hour_totals(root)
    _raw(root, 7, "b")  # late facts: every hour is rebuilt while a reader watches
    reference = _reference(tmp_path, root)
    new = hour_totals(reference)
    reader = Reader(root)
    with dask_cluster(tmp_path) as cluster:
        cmd = [sys.executable, "-m", "gravix", "rollup", "--data-dir", str(root), "--json"]
        proc = subprocess.Popen(
            cmd,
            env=child_env(
                {"GRAVIX_EXECUTOR": cluster.address, "GRAVIX_FAULT_PLAN": json.dumps(SLOW_PUBLISH)}
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        reader.start()
        try:
            killed = _kill_a_worker_mid_task(root, cluster.worker_pids(), proc)
            summary = _rollup_until_done(proc)
        finally:
            proc.kill()
            reader.stop.set()
            reader.join(timeout=60)
        log = cluster.scheduler_log()
    assert killed in cluster.worker_pids()
    assert summary["hours_built"] == len(HOURS) * 2
    assert hour_totals(root) == new
    assert table_rows(root) == table_rows(reference)
    _assert_reads_saw_old_or_new(reader, old, new)
    # The hour in flight on the killed worker was handed out again.
    started: dict[str, int] = {}
    for entry in log:
        if str(entry[0]).startswith("gravix-rollup-") and entry[2] == "processing":
            started[str(entry[0])] = started.get(str(entry[0]), 0) + 1
    assert max(started.values()) >= 2, started
    # The killed worker's temporary is swept by the next run, which finds nothing to do.
    assert run_rollup(root=root).nothing_to_do
    assert tmp_outputs(root) == []
