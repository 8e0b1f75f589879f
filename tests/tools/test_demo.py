"""gravix demo: one command ends in a report that names the failing endpoint and the deploy,
checked against the data it left behind; and it never clobbers a directory it did not make."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer.main

from gravix import schema
from gravix.cli import app
from gravix.errors import GravixError, LockHeld, UnsafePath
from gravix.storage import layout
from gravix.tools.demo import prepare_data_dir


def _raw_glob(root: Path, topic: str) -> str:
    return str(layout.raw_topic_dir(root, topic) / "**" / "*.jsonl")


DEMO_CWD = Path(__file__).resolve().parents[2]  # where `make demo` runs


def demo_env() -> dict[str, str]:
    """The environment without Gravix settings, and without any directory on PATH that
    holds a ``gravix`` (this venv's bin, or another checkout's): as after `make demo`,
    `gravix` is not a command the shell knows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVIX_")}
    env.pop("API_KEY", None)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if p and p != venv_bin and not (Path(p) / "gravix").exists()
    )
    return env


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("demo") / "demo-data"
    proc = subprocess.run(
        [sys.executable, "-m", "gravix", "demo", "--data-dir", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=demo_env(),
        cwd=DEMO_CWD,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return root, json.loads(proc.stdout)


def test_demo_report_names_the_failing_endpoint_as_the_data_shows(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    root, report = demo
    failing = report["findings"]["failing_endpoint"]
    assert (failing["service"], failing["method"], failing["path_template"]) == (
        "frontend",
        "POST",
        "/checkout",
    )
    # DuckDB over the warehouse files, independently: the endpoint with most server errors.
    parquet = str(
        layout.warehouse_table_dir(root, schema.REQUEST_METRICS_MINUTE) / "**" / "*.parquet"
    )
    service, method, path, errors = duckdb.sql(
        f"select service, method, path_template, sum(error_count) as e from read_parquet("
        f"'{parquet}', hive_partitioning = true) group by all order by e desc limit 1"
    ).fetchall()[0]
    assert (service, method, path) == ("frontend", "POST", "/checkout")
    assert failing["errors"] == errors


def test_demo_report_names_the_deploy_that_preceded_the_spike(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    root, report = demo
    deploy = report["findings"]["deploy"]
    rows = duckdb.sql(
        f"select entity_id, event_time from read_json('{_raw_glob(root, 'service_events')}', "
        "format = 'newline_delimited') where service = 'frontend' and "
        "event_type = 'deploy_completed'"
    ).fetchall()
    assert len(rows) == 1
    version, completed = rows[0]
    assert deploy["service"] == "frontend"
    assert deploy["version"] == version
    incident_from = datetime.fromisoformat(report["incident"]["from"])
    assert datetime.fromisoformat(deploy["completed"]) < incident_from
    assert deploy["error_rate_after"] > 5 * max(deploy["error_rate_before"], 0.001)
    assert deploy["most_changed_endpoint"]["path_template"] == "/checkout"
    # The spike sits in the raw facts too: /checkout fails far more inside the incident.
    inside, before = duckdb.sql(
        f"select avg((status_code >= 500)::int) filter (where event_time >= '{incident_from}'"
        f" and event_time < '{report['incident']['until']}'), avg((status_code >= 500)::int) "
        f"filter (where event_time < '{completed}') from read_json('"
        f"{_raw_glob(root, 'request_facts')}', format = 'newline_delimited') "
        "where path_template = '/checkout'"
    ).fetchall()[0]
    assert inside > 0.2 > 0.05 > before


def test_demo_health_over_time_shows_the_spike_only_in_the_incident(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    _, report = demo
    incident_from = datetime.fromisoformat(report["incident"]["from"])
    incident_until = datetime.fromisoformat(report["incident"]["until"])
    rows = report["endpoint"]["rows"]
    assert len(rows) >= 10
    inside = [
        r
        for r in rows
        if datetime.fromisoformat(r["bucket_start"]) >= incident_from
        and datetime.fromisoformat(r["bucket_end"]) <= incident_until
    ]
    outside = [
        r
        for r in rows
        if datetime.fromisoformat(r["bucket_end"]) <= incident_from
        or datetime.fromisoformat(r["bucket_start"]) >= incident_until
    ]
    assert inside and outside
    assert min(r["error_rate"] for r in inside) > 5 * max(r["error_rate"] for r in outside)
    assert min(r["p99_ms"] for r in inside) > max(r["p99_ms"] for r in outside)


def test_demo_stores_every_fact_it_sent_and_stops_cleanly(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    root, report = demo
    stored = duckdb.sql(
        f"select count(*), count(distinct event_id) from read_json("
        f"'{_raw_glob(root, 'request_facts')}', format = 'newline_delimited')"
    ).fetchall()[0]
    assert stored == (report["loadgen"]["acknowledged"], report["loadgen"]["acknowledged"])
    assert report["loadgen"]["sent"] == report["loadgen"]["acknowledged"] > 10_000
    rolled = sum(
        h["facts"] for h in report["rollup"]["hours"] if h["table"] == schema.REQUEST_METRICS_MINUTE
    )
    assert rolled == report["loadgen"]["acknowledged"]
    assert report["server_exit_code"] == 0
    assert report["doctor"]["ok"], report["doctor"]
    for topic in schema.TOPICS:
        buffer = layout.buffer_dir(root, topic)
        leftovers = [p for p in buffer.iterdir() if p.stat().st_size] if buffer.is_dir() else []
        assert not leftovers, f"buffer not drained: {leftovers}"
    assert layout.demo_marker_path(root).is_file()


def test_next_commands_work_as_printed(demo: tuple[Path, dict[str, Any]]) -> None:
    _, report = demo
    assert len(report["next_commands"]) >= 5
    for line in report["next_commands"]:
        assert not line.startswith("gravix "), "gravix is not on PATH after make demo"
        proc = subprocess.run(
            line,
            shell=True,
            cwd=DEMO_CWD,
            env=demo_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
        assert proc.stdout.strip(), line


def test_next_commands_are_accepted_by_the_cli(demo: tuple[Path, dict[str, Any]]) -> None:
    _, report = demo
    group: Any = typer.main.get_command(app)
    for line in report["next_commands"]:
        words = shlex.split(line)
        at = words.index("--data-dir") - 1
        group.commands[words[at]].make_context(f"gravix {words[at]}", words[at + 1 :])


def test_a_second_demo_replaces_only_the_first_demos_data(tmp_path: Path) -> None:
    root = tmp_path / "demo-data"
    assert prepare_data_dir(root) == "new"
    old = layout.raw_file_path(root, schema.REQUEST_FACTS, layout.Hour.of(datetime.now()), "x1")
    old.parent.mkdir(parents=True)
    old.write_text("{}\n")
    mine = root / "notes.txt"
    mine.write_text("keep me")
    assert prepare_data_dir(root) == "replaced"
    assert not old.exists()
    assert not layout.raw_root(root).exists()
    assert mine.read_text() == "keep me"
    assert layout.demo_marker_path(root).is_file()


def test_a_directory_the_demo_did_not_make_is_refused_unless_forced(tmp_path: Path) -> None:
    root = tmp_path / "data"
    raw = layout.raw_file_path(root, schema.REQUEST_FACTS, layout.Hour.of(datetime.now()), "r1")
    raw.parent.mkdir(parents=True)
    raw.write_text('{"precious": true}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gravix", "demo", "--data-dir", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "--force" in proc.stderr
    assert raw.read_text() == '{"precious": true}\n'
    assert prepare_data_dir(root, force=True) == "added"
    assert raw.read_text() == '{"precious": true}\n'
    assert not layout.demo_marker_path(root).exists(), "forced use must not mark it as ours"


def test_a_demo_directory_in_use_by_a_server_is_not_replaced(tmp_path: Path) -> None:
    root = tmp_path / "demo-data"
    prepare_data_dir(root)
    active = layout.active_path(root, schema.REQUEST_FACTS, "live1")
    active.parent.mkdir(parents=True)
    active.write_text('{"x": 1}\n')
    with active.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(LockHeld):
            prepare_data_dir(root)
    assert active.exists()


def test_a_file_or_symlink_as_data_dir_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(UnsafePath):
        prepare_data_dir(link)
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(GravixError):
        prepare_data_dir(plain)
