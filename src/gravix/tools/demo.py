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
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from gravix import dashboard, schema
from gravix.dashboard.server import url_of
from gravix.errors import GravixError, LockHeld, UnsafePath
from gravix.ops.doctor import DoctorReport, run_doctor
from gravix.query import deploy_compare, endpoint_drilldown, service_health, top_endpoints
from gravix.report import to_json
from gravix.rollup import RollupSummary, run_rollup
from gravix.settings import load_settings
from gravix.storage import durable, layout, links
from gravix.storage.guard import check_root
from gravix.tools.loadgen import LoadgenSummary, run_loadgen
from gravix.tools.serverproc import ServerProcess, running_server
from gravix.tools.traffic import Incident

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
DRAIN_TIMEOUT = 20.0
STEPS = 7
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

    JSON_EXTRA: ClassVar[tuple[str, ...]] = ("window",)

    data_dir: Path
    data_dir_mode: str  # new | replaced | added (with --force)
    window_start: datetime = field(metadata={"json": False})
    window_end: datetime = field(metadata={"json": False})
    incident: dict[str, Any]
    elapsed_s: float = 0.0
    findings: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    loadgen: LoadgenSummary | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    rollup: RollupSummary | None = None
    doctor: DoctorReport | None = None
    server_exit_code: int | None = None
    # The query presets' JSON documents (times as RFC 3339 strings).
    health: dict[str, Any] = field(default_factory=dict)
    endpoint: dict[str, Any] = field(default_factory=dict)
    top_endpoints: dict[str, Any] = field(default_factory=dict)
    deploy: dict[str, Any] = field(default_factory=dict)
    next_commands: list[str] = field(default_factory=list)
    # The dashboard on the demo's data: the command that starts it, and its page.
    dashboard_command: str = ""
    dashboard_url: str = ""

    @property
    def window(self) -> dict[str, datetime]:
        return {"since": self.window_start, "until": self.window_end}


# --- the data root --------------------------------------------------------------------------------


def prepare_data_dir(root: Path, *, force: bool = False) -> str:
    """Make ``root`` ready for a demo; returns ``new``, ``replaced`` or ``added``."""
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise UnsafePath(f"{root} is not a directory", hint="choose another --data-dir")
    check_root(root, create=True)
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
    links.ensure_inside(root, top)
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


class _Steps:
    """The report's step list, timed, and the progress callback told of each."""

    def __init__(self, report: DemoReport, progress: ProgressCallback | None) -> None:
        self.report = report
        self.progress = progress
        self.started = time.perf_counter()

    def done(self, name: str, **details: Any) -> None:
        elapsed = time.perf_counter() - self.started
        self.report.steps.append({"step": name, "seconds": round(elapsed, 2), **details})
        self.started = time.perf_counter()
        self.tell(name)

    def tell(self, label: str) -> None:
        if self.progress is not None:
            self.progress(label, len(self.report.steps), STEPS)


def run_demo(
    *,
    data_dir: Path,
    force: bool = False,
    facts: int = FACTS,
    seed: int = 7,
    progress: ProgressCallback | None = None,
) -> DemoReport:
    """Run the whole demo against ``data_dir`` and return the incident report."""
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
    steps = _Steps(report, progress)
    rotated = _serve_and_roll_up(report, steps, facts=facts, seed=seed)
    if not rotated:
        # The graceful stop sealed what the timer had not; roll those hours up too.
        report.rollup = run_rollup(root=root)
        steps.done("rolled up after the stop", hours=report.rollup.hours_built)
    lines, files, hours = _raw_lines(root, schema.REQUEST_FACTS)
    report.raw = {"facts": lines, "files": files, "hours": hours}
    steps.tell("answering the incident questions")
    _answer(report, root, now)
    steps.done("built the incident report")
    report.next_commands = _next_commands(root, start, end)
    report.dashboard_command = f"{gravix_command()} dashboard --data-dir {shlex.quote(str(root))}"
    report.dashboard_url = _dashboard_url(root, start, end)
    report.elapsed_s = time.perf_counter() - started
    return report


def _serve_and_roll_up(report: DemoReport, steps: _Steps, *, facts: int, seed: int) -> bool:
    """Start a server, send the traffic, roll up and run the doctor while it runs, then
    stop it gracefully. True if the buffer rotated into raw before the stop."""
    root = report.data_dir
    api_key = secrets.token_urlsafe(24)
    steps.tell("starting the ingest server")
    with running_server(root, "--rotate-seconds", "1", api_key=api_key) as server:
        steps.done("started the ingest server", url=server.url)
        summary = _send_traffic(server, report.window_start, facts=facts, seed=seed, steps=steps)
        report.loadgen = summary
        steps.done(
            "sent traffic",
            facts=summary.acknowledged,
            events=summary.events_acknowledged,
            rate=round(summary.achieved_rate),
        )
        steps.tell("rotating the buffer into raw")
        rotated = _wait_for_rotation(root)
        steps.done("rotated the buffer into raw", complete=rotated)
        steps.tell("rolling up")
        report.rollup = run_rollup(root=root)
        steps.done("rolled up", hours=report.rollup.hours_built, rows=report.rollup.rows)
        steps.tell("running the doctor")
        settings = load_settings(data_dir=root, url=server.url, api_keys=[api_key])
        report.doctor = run_doctor(settings=settings)
        steps.done("ran the doctor", ok=not report.doctor.failed)
        steps.tell("stopping the ingest server")
        report.server_exit_code = server.stop()
    steps.done("stopped the ingest server", exit_code=report.server_exit_code)
    return rotated


def _send_traffic(
    server: ServerProcess, start: datetime, *, facts: int, seed: int, steps: _Steps
) -> LoadgenSummary:
    def sending(label: str, done: int, total: int) -> None:
        steps.tell(f"sending {HOURS:g} hours of traffic ({done:,}/{total:,} facts)")

    incident = Incident(
        SERVICE, ENDPOINT, INCIDENT_START.total_seconds(), INCIDENT_LENGTH.total_seconds()
    )
    summary = run_loadgen(
        url=server.url,
        api_key=server.api_key,
        rate=0,
        total=facts,
        batch_size=1000,
        services=SERVICES,
        start_time=start,
        time_span=HOURS * 3600,
        seed=seed,
        incidents=[incident],
        concurrency=4,
        progress=sending,
    )
    if summary.acknowledged != summary.sent:
        raise GravixError(
            f"the demo's server acknowledged {summary.acknowledged:,} of {summary.sent:,} facts",
            hint="; ".join(summary.errors[:3]) or None,
        )
    return summary


def _answer(report: DemoReport, root: Path, now: datetime) -> None:
    since, until = report.window_start, report.window_end
    window: dict[str, Any] = {"root": root, "since": since, "until": until, "now": now}
    health = service_health(service=SERVICE, step_minutes=STEP_MINUTES, **window)
    endpoint = endpoint_drilldown(
        service=SERVICE,
        path_template=ENDPOINT,
        method=METHOD,
        step_minutes=STEP_MINUTES,
        **window,
    )
    top = top_endpoints(limit=5, **window)
    deploy = deploy_compare(service=SERVICE, window_minutes=DEPLOY_WINDOW_MINUTES, **window)
    report.health = to_json(health)
    report.endpoint = to_json(endpoint)
    report.top_endpoints = to_json(top)
    report.deploy = to_json(deploy)
    report.findings = _findings(report)


def _pick(row: dict[str, Any] | None, *keys: str) -> dict[str, Any] | None:
    return {k: row.get(k) for k in keys} if row else None


def _findings(report: DemoReport) -> dict[str, Any]:
    """The incident questions answered from the query documents."""
    rows = report.health["rows"]
    worst = max(rows, key=lambda r: r.get("error_rate") or 0.0) if rows else None
    summary = {row["window"]: row for row in report.deploy["summary"]}
    before, after = summary.get("before", {}), summary.get("after", {})
    changed = report.deploy["endpoints"][0] if report.deploy["endpoints"] else None
    first = report.top_endpoints["rows"][0] if report.top_endpoints["rows"] else None
    deploy = report.deploy["deploy"]
    return {
        "failing_endpoint": _pick(
            first,
            "service",
            "method",
            "path_template",
            "requests",
            "errors",
            "error_rate",
            "p99_ms",
        ),
        "worst_step": _pick(worst, "bucket_start", "requests", "error_rate", "p95_ms", "p99_ms"),
        "deploy": {
            "service": report.deploy["service"],
            "version": deploy["entity_id"],
            "started": deploy["started"],
            "completed": deploy["completed"],
            "error_rate_before": before.get("error_rate"),
            "error_rate_after": after.get("error_rate"),
            "p99_ms_before": before.get("p99_ms"),
            "p99_ms_after": after.get("p99_ms"),
            "most_changed_endpoint": _pick(
                changed, "method", "path_template", "error_rate_before", "error_rate_after"
            ),
        },
    }


def gravix_command() -> str:
    """``gravix`` as a user can type it here: the bare name when it is on PATH, else this
    interpreter's ``gravix`` script (relative to the current directory when shorter), else
    ``python -m gravix`` — after ``make demo`` the script sits in .venv/bin, not on PATH."""
    if shutil.which("gravix"):
        return "gravix"
    script = Path(sys.executable).with_name("gravix")
    if not (script.is_file() and os.access(script, os.X_OK)):
        return f"{shlex.quote(sys.executable)} -m gravix"
    relative = os.path.relpath(script)
    shorter = relative if len(relative) < len(str(script)) else str(script)
    return shlex.quote(shorter if "/" in shorter else f"./{shorter}")


def _next_commands(root: Path, since: datetime, until: datetime) -> list[str]:
    """Commands that work as printed; not doctor, whose ingestion check fails once the
    demo's server has stopped."""
    g, d = gravix_command(), shlex.quote(str(root))
    window = f"--since {_stamp(since)} --until {_stamp(until)}"
    return [
        f"{g} query --data-dir {d} --preset health --service {SERVICE} {window} --step 5",
        f"{g} query --data-dir {d} --preset top-endpoints {window}",
        f"{g} query --data-dir {d} --preset endpoint --service {SERVICE} "
        f"--endpoint {ENDPOINT} --method {METHOD} {window} --step 5",
        f"{g} query --data-dir {d} --preset deploy --service {SERVICE}",
        f"{g} query --data-dir {d} --preset apdex --threshold 300 --by-endpoint {window}",
        f'{g} query --data-dir {d} "SELECT status_code, count(*) AS n FROM request_facts '
        f"WHERE path_template = '{ENDPOINT}' GROUP BY status_code ORDER BY n DESC\"",
        f"{g} recover --data-dir {d} --dry-run",
        f"{g} query --data-dir {d} --ddl trino",
    ]


def _dashboard_url(root: Path, since: datetime, until: datetime) -> str:
    settings = load_settings(data_dir=root)
    base = url_of(settings.dashboard_host, settings.dashboard_port)
    return f"{base}?service={SERVICE}&from={_stamp(since)}&to={_stamp(until)}"


def serve_dashboard(report: DemoReport, *, on_ready: Callable[[str], None]) -> int:
    """``gravix demo --serve``: the dashboard on the demo's data until Ctrl-C."""
    settings = load_settings(data_dir=report.data_dir)
    return dashboard.serve(settings=settings, on_ready=on_ready)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
