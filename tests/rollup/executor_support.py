"""Helpers for the executor tests: a Dask cluster of real processes on loopback, the
tables read back by DuckDB, and a reader that watches hour totals while a run goes on."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from gravix import schema
from gravix.storage import layout

SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child that must import this checkout's gravix."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


@dataclass
class Cluster:
    address: str  # dask://127.0.0.1:PORT, as --executor takes it
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def tcp(self) -> str:
        return "tcp://" + self.address.removeprefix("dask://")

    def worker_pids(self) -> set[int]:
        return {w.pid for w in self.workers}

    def scheduler_log(self) -> list[Any]:
        """The scheduler's transitions: (key, start, finish, recommendations, stimulus, time)."""
        import distributed

        with distributed.Client(self.tcp, timeout=START_TIMEOUT) as client:
            return list(
                client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.transition_log))
            )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def dask_cluster(tmp_path: Path, workers: int = 2) -> Iterator[Cluster]:
    """``dask scheduler`` and ``workers`` × ``dask worker`` (one thread each, no nanny, so
    a killed worker stays dead) on loopback; always stopped at the end."""
    import distributed

    port = free_port()
    dask = [sys.executable, "-m", "dask"]
    logs = tmp_path / "dask-logs"
    logs.mkdir(exist_ok=True)
    with (logs / "scheduler.log").open("wb") as log:  # the child keeps its own copy
        scheduler = subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    cluster = Cluster(f"dask://127.0.0.1:{port}", scheduler)
    try:
        for n in range(workers):
            with (logs / f"worker-{n}.log").open("wb") as log:
                worker = subprocess.Popen(
                    [
                        *dask,
                        *("worker", cluster.tcp, "--nthreads", "1", "--no-nanny"),
                        *("--no-dashboard", "--host", "127.0.0.1", "--name", f"w{n}"),
                        *("--local-directory", str(tmp_path / f"dask-w{n}")),
                    ],
                    env=child_env(),
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            cluster.workers.append(worker)
        with distributed.Client(cluster.tcp, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(workers, timeout=START_TIMEOUT)
        yield cluster
    finally:
        _stop([*cluster.workers, scheduler])


def table_rows(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every warehouse table, as DuckDB reads them."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in schema.WAREHOUSE_TABLES:
        glob = layout.warehouse_glob(root, table)
        out[table] = con.execute(
            f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY ALL"
        ).fetchall()
    return out


def hour_totals(root: Path) -> dict[str, int]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = layout.warehouse_glob(root, schema.REQUEST_METRICS_MINUTE)
    rows = con.execute(
        "SELECT strftime(date_trunc('hour', bucket_start), '%Y-%m-%dT%H'), sum(request_count) "
        f"FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY 1"
    ).fetchall()
    return {hour: int(total) for hour, total in rows}


class Reader(threading.Thread):
    """Reads the hour totals again and again until stopped; what it saw is in ``seen``."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.seen: list[dict[str, int]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        failed = 0
        while not self.stop.is_set():
            try:
                self.seen.append(hour_totals(self.root))
                failed = 0
            except duckdb.Error as exc:  # a scan can straddle a rename: retry, as readers do
                failed += 1
                if failed >= 3:
                    self.failures.append(repr(exc))
            time.sleep(0.02)


def copy_raw(source: Path, target: Path) -> None:
    shutil.copytree(layout.raw_root(source), layout.raw_root(target))


def tmp_outputs(root: Path) -> list[Path]:
    """Temporaries of hour outputs being written (their names carry the writer's pid)."""
    base = layout.warehouse_table_dir(root, schema.REQUEST_METRICS_MINUTE)
    return [p for p in base.rglob("*") if layout.is_tmp(p)] if base.is_dir() else []


def writer_pid(tmp: Path) -> int:
    return int(tmp.name.removesuffix(layout.TMP_SUFFIX).rsplit(".", 1)[1])
