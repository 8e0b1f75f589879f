"""Where rollup's hour tasks run: ``local`` (a pool of worker processes, one per core) or
``dask://HOST:PORT`` (the workers of an existing Dask distributed cluster, DESIGN §11).

An hour task builds one hour of ``request_metrics_minute`` and of ``request_metrics_hour``:
it reads the hour's raw files, writes each table's Parquet for the hour to a temporary
sibling renamed over the old file, then the hour's manifest. It is idempotent (the same raw
files give the same rows) and publishes atomically, so a worker that dies in the middle of
one costs a retry: the task runs again in another worker, and readers see the hour's old
rows until the new ones replace them whole. The run that hands out the tasks holds the
rollup lock for all of them.

Workers must see the data root at the same path (one machine, or a shared file system).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from gravix.errors import ConfigError, GravixError
from gravix.rollup.build import HourResult, build_request_hour
from gravix.rollup.plan import PlannedHour
from gravix.rollup.store_build import build_store_hours
from gravix.settings import DASK_SCHEME, DEFAULT_EXECUTOR, StoreConfig
from gravix.storage import faults

# A pool's start-up (a fresh interpreter that imports polars, per worker: ~0.3 s of CPU)
# pays for itself from about this much raw input; less runs in this process.
POOL_MIN_BYTES = 48 * 2**20
# How often the hours in flight may lose their worker before the run gives up (Dask's
# default for distributed.scheduler.allowed-failures is the same).
ALLOWED_FAILURES = 3
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class HourTask:
    """One hour to build, or the hours of one compacted day (they rewrite the day's one
    file, so they are built one after another, by one worker), with what a worker needs
    to build them as this process would."""

    root: Path
    hours: tuple[PlannedHour, ...]
    fault_plans: tuple[str, ...] = ()
    # With a store (DESIGN §11) the hours are read from and written to it; ``root`` then
    # only holds the task's local work directory.
    store: StoreConfig | None = None
    # On a Dask worker, which need not see the runner's disk, a store's task works in the
    # worker's own local directory instead of under ``root``.
    worker_scratch: bool = False

    @property
    def raw_bytes(self) -> int:
        return sum(p.raw_bytes for p in self.hours)

    def __str__(self) -> str:
        return ", ".join(str(p.hour) for p in self.hours)


def run_task(task: HourTask) -> list[HourResult]:
    """Build a task's hours in a worker (a pool process or a Dask worker)."""
    for plan in task.fault_plans:
        if plan not in faults.installed_plans():
            faults.install_fault_plan(plan)
    return _build(task)


def _build(task: HourTask) -> list[HourResult]:
    if task.store is not None:
        root = _worker_directory() if task.worker_scratch else task.root
        return build_store_hours(root, task.store, task.hours)
    return [build_request_hour(task.root, planned) for planned in task.hours]


def _worker_directory() -> Path:
    """The local directory of the Dask worker running this task (``--local-directory``;
    Dask's own scratch space on the worker's disk)."""
    import distributed

    return Path(distributed.get_worker().local_directory)


class Executor(Protocol):
    """Runs hour tasks; yields each result as its task finishes."""

    name: str

    def run(self, tasks: list[HourTask]) -> Iterator[HourResult]: ...


def _die_with(parent: int, threads: int) -> None:
    """Pool worker start-up: end with the rollup process that started it (a worker left
    running after its run was killed would write hours that the next run owns), and use
    a share of the cores (polars reads this before it is imported here)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    os.environ["POLARS_MAX_THREADS"] = str(threads)


def _start_method() -> multiprocessing.context.BaseContext:
    """``fork`` when this process runs one thread (a worker then starts at once, without
    a fresh interpreter importing everything again); ``spawn`` otherwise, because a forked
    copy of a process with other threads (a progress bar's, polars' own) can hang on a
    lock one of them held."""
    try:
        alone = len(os.listdir("/proc/self/task")) == 1
    except OSError:  # not Linux: no cheap way to count native threads
        alone = False
    return multiprocessing.get_context("fork" if alone else "spawn")


class LocalExecutor:
    """Hour tasks in a pool of worker processes on this machine (``--executor local``).

    Each worker builds one hour at a time with its share of the cores, so both cores are
    busy through the parts of an hour that run on one thread, and memory is bounded by
    one hour per worker, whatever the window. A worker that dies is replaced and the
    hours it had not finished run again."""

    name = DEFAULT_EXECUTOR

    def __init__(self, workers: int | None = None, *, min_bytes: int = POOL_MIN_BYTES) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.min_bytes = min_bytes

    def run(self, tasks: list[HourTask]) -> Iterator[HourResult]:
        work = sum(t.raw_bytes for t in tasks)
        if self.workers == 1 or len(tasks) < 2 or work < self.min_bytes:
            for task in tasks:  # this process's fault plans are already installed
                yield from _build(task)
            return
        todo = list(tasks)
        failures = 0
        while todo:
            finished: list[HourTask] = []
            try:
                for task, results in self._pool(todo):
                    finished.append(task)
                    yield from results
            except BrokenProcessPool:
                failures += 1
                if failures > ALLOWED_FAILURES:
                    raise GravixError(
                        f"rollup workers died {failures} times; last in flight: "
                        f"{', '.join(str(t) for t in todo if t not in finished)}",
                        hint="check `dmesg` for the out-of-memory killer and free memory, "
                        "or run with fewer hours at a time (--start-time/--end-time)",
                    ) from None
            todo = [t for t in todo if t not in finished]

    def _pool(self, tasks: list[HourTask]) -> Iterator[tuple[HourTask, list[HourResult]]]:
        workers = min(self.workers, len(tasks))
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_start_method(),
            initializer=_die_with,
            initargs=(os.getpid(), threads),
        ) as pool:
            plans = faults.installed_plans()
            pending: dict[Future[list[HourResult]], HourTask] = {
                pool.submit(run_task, replace(t, fault_plans=plans)): t for t in tasks
            }
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        task = pending.pop(future)
                        if future.exception() is None:
                            yield task, future.result()
                    for future in done:  # a task's own error (or a broken pool) ends the run
                        future.result()
            finally:
                for future in pending:
                    future.cancel()


class DaskExecutor:
    """Hour tasks on the workers of a running Dask distributed cluster
    (``--executor dask://HOST:PORT``). The scheduler reruns the task of a worker that
    died on another worker. Unlike the local pool's workers, a task already running when
    the run that submitted it dies cannot be stopped: it finishes within seconds, and
    writes the rows its raw files give, as the next run would."""

    def __init__(self, address: str) -> None:
        self.name = address
        self.address = "tcp://" + address.removeprefix(DASK_SCHEME)

    def _client(self) -> Any:
        try:
            import distributed
        except ImportError:
            raise ConfigError(
                "--executor dask:// needs the Dask distributed client",
                hint="pip install 'gravix[dask]' (on this machine and on the workers)",
            ) from None
        try:
            return distributed.Client(  # type: ignore[no-untyped-call]
                self.address, timeout=10, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise GravixError(
                f"cannot reach the Dask scheduler at {self.address}: {exc}",
                hint="start one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                "or check --executor / GRAVIX_EXECUTOR",
            ) from None

    def run(self, tasks: list[HourTask]) -> Iterator[HourResult]:
        if not tasks:
            return
        import distributed

        plans = faults.installed_plans()
        run = uuid.uuid4().hex[:12]
        with self._client() as client:
            futures = [
                client.submit(
                    run_task,
                    replace(t, fault_plans=plans, worker_scratch=t.store is not None),
                    key=f"gravix-rollup-{t.hours[0].table}-{t.hours[0].hour}-{run}",
                    pure=False,
                )
                for t in tasks
            ]
            try:
                for future in distributed.as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
                    results: list[HourResult] = future.result()
                    future.release()
                    yield from results
            except (distributed.client.FutureCancelledError, distributed.KilledWorker) as exc:
                raise GravixError(
                    f"the Dask cluster gave up on an hour task: {exc}",
                    hint="see the scheduler's log; workers that die again and again on "
                    "one hour are often out of memory",
                ) from None
            finally:
                client.cancel(futures)


def open_executor(spec: str | Executor | None) -> Executor:
    """The executor a setting names (``local`` or ``dask://HOST:PORT``), or the one given."""
    if spec is None or spec == DEFAULT_EXECUTOR:
        return LocalExecutor()
    if isinstance(spec, str):
        if not spec.startswith(DASK_SCHEME):
            raise ConfigError(f"unknown executor {spec!r}", hint="local or dask://HOST:PORT")
        return DaskExecutor(spec)
    return spec
