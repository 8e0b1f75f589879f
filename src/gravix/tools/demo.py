"""``gravix demo``: every part of Gravix in one run, ending in an incident report.

It generates an API key, starts ``gravix ingest-server`` as a subprocess on a free
loopback port, sends two hours of back-dated traffic in seconds (a deploy of
``frontend``, then an error spike and a latency rise on ``POST /checkout``), waits for
the buffer to rotate into raw, rolls up, runs the doctor, stops the server gracefully
and answers the incident questions from the warehouse.

The data root is safe to point anywhere: a directory that a previous demo made (it holds
``layout.demo_marker_path``) is emptied and reused; an empty or missing one is used; any
other non-empty directory is refused unless ``force``, and then the demo only adds its
traffic and deletes nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from gravix import schema
from gravix.errors import GravixError, LockHeld, UnsafePath
from gravix.report import to_json
from gravix.storage import durable, layout

ProgressCallback = Callable[[str, int, int], None]

SERVICE = "frontend"
METHOD = "POST"
ENDPOINT = "/checkout"
HOURS = 2.0
FACTS = 80_000
SERVICES = 3
INCIDENT_START = timedelta(minutes=80)
INCIDENT_LENGTH = timedelta(minutes=20)
STEP_MINUTES = 10
DEPLOY_WINDOW_MINUTES = 30
READY_TIMEOUT = 30.0
DRAIN_TIMEOUT = 20.0
STOP_TIMEOUT = 60.0
_AREAS = (
    layout.buffer_root,
    layout.raw_root,
    layout.warehouse_root,
    layout.quarantine_root,
    layout.state_root,
)


@dataclass
class DemoReport:
    """What the demo did and what the incident report found."""

    data_dir: Path
    data_dir_mode: str  # new | replaced | added (with --force)
    window_start: datetime
    window_end: datetime
    incident: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    loadgen: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    rollup: dict[str, Any] = field(default_factory=dict)
    doctor: dict[str, Any] = field(default_factory=dict)
    server_exit_code: int | None = None
    health: dict[str, Any] = field(default_factory=dict)
    endpoint: dict[str, Any] = field(default_factory=dict)
    top_endpoints: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, Any] = field(default_factory=dict)
    next_commands: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dir": str(self.data_dir),
            "data_dir_mode": self.data_dir_mode,
            "elapsed_s": round(self.elapsed_s, 2),
            "window": {"since": self.window_start, "until": self.window_end},
            "incident": self.incident,
            "findings": self.findings,
            "steps": self.steps,
            "loadgen": self.loadgen,
            "raw": self.raw,
            "rollup": self.rollup,
            "doctor": self.doctor,
            "server_exit_code": self.server_exit_code,
            "health": self.health,
            "endpoint": self.endpoint,
            "top_endpoints": self.top_endpoints,
            "deploy": self.deploy,
            "next_commands": self.next_commands,
        }


# --- the data root --------------------------------------------------------------------------------


def prepare_data_dir(root: Path, *, force: bool = False) -> str:
    """Make ``root`` ready for a demo; returns ``new``, ``replaced`` or ``added``."""
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise UnsafePath(f"{root} is not a directory", hint="choose another --data-dir")
    marker = layout.demo_marker_path(root)
    if root.is_dir() and any(root.iterdir()):
        if marker.is_file() and not marker.is_symlink():
            _refuse_if_live(root)
            for area in _AREAS:
                _remove_tree(root, area(root))
            mode = "replaced"
        elif force:
            return "added"  # not ours: add traffic, delete nothing, and never mark it as ours
        else:
            raise GravixError(
                f"{root} is not empty and was not made by gravix demo",
                hint="choose another --data-dir, or pass --force to add the demo's traffic "
                "to it (nothing is deleted)",
            )
    else:
        mode = "new"
    durable.makedirs(root)
    stamp = {"created_by": "gravix demo", "at": datetime.now(UTC).isoformat()}
    durable.atomic_write(marker, json.dumps(stamp).encode() + b"\n")
    return mode


def _refuse_if_live(root: Path) -> None:
    buffers = layout.buffer_root(root)
    if not buffers.is_dir():
        return
    for topic in schema.TOPICS:
        directory = layout.buffer_dir(root, topic)
        if directory.is_dir():
            for path in directory.iterdir():
                if path.is_file() and durable.is_locked(path):
                    raise LockHeld(
                        f"a server is still writing to {path}",
                        hint="stop the ingest server that uses this directory first",
                    )


def _remove_tree(root: Path, top: Path) -> None:
    """Delete ``top`` (inside ``root``) without following symlinks."""
    if top.is_symlink():
        durable.unlink(top)
        return
    if not top.is_dir():
        return
    layout.ensure_inside(root, top)
    for current, dirs, files in os.walk(top, topdown=False, followlinks=False):
        here = Path(current)
        for name in files:
            durable.unlink(here / name, sync_dir=False)
        for name in dirs:
            path = here / name
            if path.is_symlink():
                durable.unlink(path, sync_dir=False)
            else:
                durable.rmdir_if_empty(path)
    durable.rmdir_if_empty(top)


# --- the server -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """``gravix ingest-server`` in a subprocess; its log goes to a temporary file."""

    def __init__(self, root: Path, api_key: str) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Closed by stop(); it outlives this method because the server writes to it.
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k != "GRAVIX_API_KEYS"}
        env["API_KEY"] = api_key  # not on the command line, where `ps` would show it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gravix",
                "ingest-server",
                "--data-dir",
                str(root),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--rotate-seconds",
                "1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the server in order
        )

    def log_tail(self, limit: int = 2000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-limit:]

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GravixError(
                    f"the demo's ingest server exited with {self.proc.returncode}:\n"
                    f"{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise GravixError(
            f"the demo's ingest server was not ready after {READY_TIMEOUT:g}s:\n{self.log_tail()}"
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise GravixError(
                f"the demo's ingest server ignored SIGTERM for {STOP_TIMEOUT:g}s",
                hint="`gravix recover` moves whatever it left in the buffer into raw",
            ) from None
        finally:
            self.log.close()


@contextmanager
def _server(root: Path, api_key: str) -> Iterator[_Server]:
    for attempt in range(3):
        server = _Server(root, api_key)
        try:
            server.wait_ready()
            break
        except GravixError:
            # A server that exited early may have lost its free port to another process:
            # try a new port. One that hangs, or a third failure, is reported.
            alive = server.proc.poll() is None
            server.stop()
            if alive or attempt == 2:
                raise
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


def _raw_lines(root: Path, topic: str) -> tuple[int, int, int]:
    """(lines, files, hours) in a topic's raw partitions."""
    lines = files = 0
    hours = layout.raw_hours(root, topic)
    for directory in hours.values():
        for path in layout.raw_files(directory):
            files += 1
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    lines += chunk.count(b"\n")
    return lines, files, len(hours)


def _buffer_drained(root: Path) -> bool:
    for topic in schema.TOPICS:
        directory = layout.buffer_dir(root, topic)
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            parsed = layout.parse_buffer_name(path)
            if parsed is None:
                continue
            if parsed[0] == "sealed" or path.stat().st_size > 0:
                return False
    return True


def _wait_for_rotation(root: Path) -> bool:
    """True once every acknowledged line has been rotated out of the buffer into raw."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        if _buffer_drained(root):
            return True
        time.sleep(0.1)
    return False


# --- the run ------------------------------------------------------------------------------------


def run_demo(
    *,
    data_dir: Path,
    force: bool = False,
    facts: int = FACTS,
    seed: int = 7,
    progress: ProgressCallback | None = None,
) -> DemoReport:
    """Run the whole demo against ``data_dir`` and return the incident report."""
    from gravix.ops.doctor import run_doctor
    from gravix.rollup import run_rollup
    from gravix.settings import load_settings
    from gravix.tools.loadgen import Incident, run_loadgen

    started = time.perf_counter()
    root = Path(data_dir)
    mode = prepare_data_dir(root, force=force)
    now = datetime.now(UTC)
    # Whole steps, so the report's rows line up with the deploy and the incident.
    end = now.replace(minute=now.minute - now.minute % STEP_MINUTES, second=0, microsecond=0)
    start = end - timedelta(hours=HOURS)
    incident_from = start + INCIDENT_START
    report = DemoReport(
        data_dir=root,
        data_dir_mode=mode,
        window_start=start,
        window_end=end,
        incident={
            "service": SERVICE,
            "method": METHOD,
            "path_template": ENDPOINT,
            "from": incident_from,
            "until": incident_from + INCIDENT_LENGTH,
        },
    )
    step_started = time.perf_counter()

    def step(name: str, **details: Any) -> None:
        nonlocal step_started
        elapsed = time.perf_counter() - step_started
        report.steps.append({"step": name, "seconds": round(elapsed, 2), **details})
        step_started = time.perf_counter()
        if progress is not None:
            progress(name, len(report.steps), 7)

    def tell(label: str) -> None:
        if progress is not None:
            progress(label, len(report.steps), 7)

    api_key = secrets.token_urlsafe(24)
    tell("starting the ingest server")
    with _server(root, api_key) as server:
        step("started the ingest server", url=server.url)

        def sending(label: str, done: int, total: int) -> None:
            if progress is not None:
                progress(
                    f"sending {HOURS:g} hours of traffic ({done:,}/{total:,} facts)",
                    len(report.steps),
                    7,
                )

        summary = run_loadgen(
            url=server.url,
            api_key=api_key,
            rate=0,
            total=facts,
            batch_size=1000,
            services=SERVICES,
            start_time=start,
            time_span=HOURS * 3600,
            seed=seed,
            incidents=[
                Incident(
                    SERVICE,
                    ENDPOINT,
                    INCIDENT_START.total_seconds(),
                    INCIDENT_LENGTH.total_seconds(),
                )
            ],
            concurrency=4,
            progress=sending,
        )
        report.loadgen = summary.to_dict()
        if summary.acknowledged != summary.sent:
            raise GravixError(
                f"the demo's server acknowledged {summary.acknowledged:,} of "
                f"{summary.sent:,} facts",
                hint="; ".join(summary.errors[:3]) or None,
            )
        step(
            "sent traffic",
            facts=summary.acknowledged,
            events=summary.events_acknowledged,
            rate=round(summary.achieved_rate),
        )

        tell("rotating the buffer into raw")
        rotated = _wait_for_rotation(root)
        step("rotated the buffer into raw", complete=rotated)

        tell("rolling up")
        rollup = run_rollup(root=root)
        report.rollup = rollup.to_dict()
        step("rolled up", hours=report.rollup["hours_built"], rows=report.rollup["rows"])

        tell("running the doctor")
        settings = load_settings(data_dir=root, url=server.url, api_keys=[api_key])
        doctor = run_doctor(settings=settings)
        report.doctor = doctor.to_dict()
        step("ran the doctor", ok=not doctor.failed)
        tell("stopping the ingest server")
        report.server_exit_code = server.stop()
    step("stopped the ingest server", exit_code=report.server_exit_code)

    if not rotated:
        # The graceful stop sealed what the timer had not; roll those hours up too.
        report.rollup = run_rollup(root=root).to_dict()
        step("rolled up after the stop", hours=report.rollup["hours_built"])
    lines, files, hours = _raw_lines(root, schema.REQUEST_FACTS)
    report.raw = {"facts": lines, "files": files, "hours": hours}
    tell("answering the incident questions")
    _answer(report, root, now)
    step("built the incident report")
    report.next_commands = _next_commands(root, start, end)
    report.elapsed_s = time.perf_counter() - started
    return report


def _answer(report: DemoReport, root: Path, now: datetime) -> None:
    from gravix.query import deploy_compare, endpoint_drilldown, service_health, top_endpoints

    since, until = report.window_start, report.window_end
    health = service_health(
        root=root, service=SERVICE, since=since, until=until, step_minutes=STEP_MINUTES, now=now
    )
    endpoint = endpoint_drilldown(
        root=root,
        service=SERVICE,
        path_template=ENDPOINT,
        method=METHOD,
        since=since,
        until=until,
        step_minutes=STEP_MINUTES,
        now=now,
    )
    top = top_endpoints(root=root, since=since, until=until, limit=5, now=now)
    deploy = deploy_compare(
        root=root,
        service=SERVICE,
        window_minutes=DEPLOY_WINDOW_MINUTES,
        since=since,
        until=until,
        now=now,
    )
    report.health = to_json(health)
    report.endpoint = to_json(endpoint)
    report.top_endpoints = to_json(top)
    report.deploy = to_json(deploy)

    worst = report.health["rows"] and max(
        report.health["rows"], key=lambda r: r.get("error_rate") or 0.0
    )
    summary = {row["window"]: row for row in report.deploy["summary"]}
    changed = report.deploy["endpoints"][0] if report.deploy["endpoints"] else None
    first = report.top_endpoints["rows"][0] if report.top_endpoints["rows"] else None
    report.findings = {
        "failing_endpoint": first
        and {
            k: first.get(k)
            for k in (
                "service",
                "method",
                "path_template",
                "requests",
                "errors",
                "error_rate",
                "p99_ms",
            )
        },
        "worst_step": worst
        and {
            k: worst.get(k) for k in ("bucket_start", "requests", "error_rate", "p95_ms", "p99_ms")
        },
        "deploy": {
            "service": report.deploy["service"],
            "version": report.deploy["deploy"]["entity_id"],
            "started": report.deploy["deploy"]["started"],
            "completed": report.deploy["deploy"]["completed"],
            "error_rate_before": summary.get("before", {}).get("error_rate"),
            "error_rate_after": summary.get("after", {}).get("error_rate"),
            "p99_ms_before": summary.get("before", {}).get("p99_ms"),
            "p99_ms_after": summary.get("after", {}).get("p99_ms"),
            "most_changed_endpoint": changed
            and {
                "method": changed.get("method"),
                "path_template": changed.get("path_template"),
                "error_rate_before": changed.get("error_rate_before"),
                "error_rate_after": changed.get("error_rate_after"),
            },
        },
    }


def _next_commands(root: Path, since: datetime, until: datetime) -> list[str]:
    d = str(root)
    if any(c.isspace() for c in d):
        d = f"'{d}'"
    window = f"--since {_stamp(since)} --until {_stamp(until)}"
    return [
        f"gravix query --data-dir {d} --preset health --service {SERVICE} {window} --step 5",
        f"gravix query --data-dir {d} --preset top-endpoints {window}",
        f"gravix query --data-dir {d} --preset endpoint --service {SERVICE} "
        f"--endpoint {ENDPOINT} --method {METHOD} {window} --step 5",
        f"gravix query --data-dir {d} --preset deploy --service {SERVICE}",
        f"gravix query --data-dir {d} --preset apdex --threshold 300 --by-endpoint {window}",
        f'gravix query --data-dir {d} "SELECT status_code, count(*) AS n FROM request_facts '
        f"WHERE path_template = '{ENDPOINT}' GROUP BY status_code ORDER BY n DESC\"",
        f"gravix doctor --data-dir {d}",
        f"gravix query --data-dir {d} --ddl trino",
    ]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
