"""loadgen: the traffic it makes obeys the contract, incidents show where they should, and
its summary matches what a real server stored."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from gravix import schema
from gravix.errors import ConfigError, GravixError
from gravix.schema import Validator
from gravix.storage import layout
from gravix.tools.loadgen import run_loadgen
from gravix.tools.traffic import Incident, Traffic, service_names, uuid7
from gravix.units import parse_duration
from serverutil import free_port, running_server


def _stored(root: Path, topic: str) -> tuple[int, int]:
    """(lines, distinct event ids) of a topic's raw files, read by DuckDB."""
    files = [
        str(f) for hour in layout.raw_hours(root, topic).values() for f in layout.raw_files(hour)
    ]
    if not files:
        return 0, 0
    row = duckdb.sql(
        "select count(*), count(distinct event_id) from read_json("
        f"{files!r}, format='newline_delimited', columns={{'event_id': 'VARCHAR'}})"
    ).fetchall()[0]
    return int(row[0]), int(row[1])


# --- the model, without a server ------------------------------------------------------------------


def test_uuid7_carries_version_variant_and_the_millisecond_time() -> None:
    rand = random.Random(1)
    ms = int(datetime(2026, 2, 16, 10, 0, tzinfo=UTC).timestamp() * 1000) + 123
    ids = [uuid7(ms, rand) for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:50]:
        value = uuid.UUID(text)
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert value.int >> 80 == ms
        assert text == text.lower()


def test_incident_spec_parses_units_and_paths() -> None:
    incident = Incident.parse("frontend:/checkout:75m:20m")
    assert (incident.service, incident.path) == ("frontend", "/checkout")
    assert (incident.start, incident.duration) == (4500.0, 1200.0)
    assert Incident.parse("svc:/a/b:90:1h").duration == 3600.0
    for bad in ("frontend", "frontend:/x:5m", "frontend:checkout:1m:1m", "f:/x:1m:0", "f:/x:a:1m"):
        with pytest.raises(ConfigError):
            Incident.parse(bad)
    assert parse_duration("250ms") == pytest.approx(0.25)


def test_generated_facts_and_events_pass_the_servers_validation() -> None:
    traffic = Traffic(
        service_names(10), [Incident.parse("frontend:/checkout:10m:5m")], seed=3, span=3600
    )
    facts = Validator("request_facts")
    events = Validator("service_events")
    now_ms = int(time.time() * 1000)
    for i in range(3000):
        fact = traffic.fact(now_ms - 3_600_000 + i * 1000, offset=float(i))
        facts.one(json.dumps(fact).encode())
    assert traffic.events, "one deploy per service was planned"
    for planned in traffic.events:
        events.one(json.dumps(traffic.event(planned, now_ms)).encode())


def test_incident_raises_errors_and_latency_only_on_its_endpoint_during_its_window() -> None:
    incident = Incident("frontend", "/checkout", start=600.0, duration=600.0)
    traffic = Traffic(["frontend", "checkout"], [incident], seed=7, span=1800)
    buckets: dict[tuple[bool, bool], list[dict[str, object]]] = {}
    for i in range(60_000):
        offset = 1800.0 * i / 60_000
        fact = traffic.fact(1_700_000_000_000 + int(offset * 1000), offset)
        on_endpoint = fact["service"] == "frontend" and fact["path_template"] == "/checkout"
        buckets.setdefault((on_endpoint, incident.active(offset)), []).append(fact)

    def error_rate(rows: list[dict[str, object]]) -> float:
        return sum(1 for r in rows if int(r["status_code"]) >= 500) / len(rows)  # type: ignore[call-overload]

    def median(rows: list[dict[str, object]]) -> float:
        values = sorted(float(r["latency_ms"]) for r in rows)  # type: ignore[arg-type]
        return values[len(values) // 2]

    hit = buckets[(True, True)]
    assert error_rate(hit) > 0.25
    assert error_rate(buckets[(True, False)]) < 0.03
    assert error_rate(buckets[(False, True)]) < 0.03
    assert median(hit) > 3 * median(buckets[(True, False)])


def test_deploy_is_planned_before_the_incident_it_explains() -> None:
    incident = Incident("checkout", "/api/payments", start=3000.0, duration=600.0)
    traffic = Traffic(service_names(3), [incident], seed=1, span=7200)
    deploys = [e for e in traffic.events if e.service == "checkout"]
    completed = [e for e in deploys if e.event_type == "deploy_completed"]
    assert len(completed) == 1
    assert incident.start - 600 <= completed[0].offset < incident.start
    others = {e.service for e in traffic.events} - {"checkout"}
    assert others == {"frontend", "catalog"}


def test_incident_on_a_service_that_is_not_generated_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="not among the generated services"):
        Traffic(service_names(2), [Incident.parse("payments:/v1/charges:1m:1m")])


def test_unreachable_server_is_an_error_with_a_hint() -> None:
    with pytest.raises(GravixError) as info:
        run_loadgen(url=f"http://127.0.0.1:{free_port()}", api_key="k", total=10)
    assert info.value.hint and "ingest-server" in info.value.hint


def test_back_dating_into_the_future_is_refused() -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    with pytest.raises(ConfigError, match="future"):
        run_loadgen(url="http://127.0.0.1:1", api_key="k", total=10, start_time=soon, time_span=60)


# --- against a real server ------------------------------------------------------------------------


def test_summary_counts_match_the_lines_the_server_stored(data_root: Path) -> None:
    with running_server(data_root) as server:
        summary = run_loadgen(
            url=server.url,
            api_key=server.api_key,
            rate=0,
            total=4321,
            batch_size=250,
            services=4,
            time_span=3 * 3600.0,
            seed=5,
            incidents=[Incident.parse("catalog:/api/products:1h:30m")],
        )
        assert server.stop() == 0
    assert summary.sent == 4321
    assert summary.acknowledged + summary.rejected + summary.failed == summary.sent
    assert (summary.rejected, summary.failed) == (0, 0)
    assert _stored(data_root, schema.REQUEST_FACTS) == (summary.acknowledged, summary.acknowledged)
    assert summary.events_acknowledged == summary.events_sent > 0
    assert _stored(data_root, schema.SERVICE_EVENTS) == (summary.events_sent, summary.events_sent)
    # Back-dated facts land in the hours they claim: three hours of event time.
    assert len(layout.raw_hours(data_root, schema.REQUEST_FACTS)) >= 3


def test_paced_run_sends_rate_times_duration_and_never_runs_ahead(data_root: Path) -> None:
    with running_server(data_root) as server:
        summary = run_loadgen(
            url=server.url,
            api_key=server.api_key,
            rate=400,
            duration=1.5,
            batch_size=50,
            services=2,
            deploys=False,
        )
    assert summary.sent == 600
    assert summary.acknowledged == 600
    # Pacing is an upper bound on the rate: the schedule cannot finish early.
    assert summary.wall_seconds >= 1.5 * 0.98
    assert summary.achieved_rate <= 400 * 1.03


def test_wrong_api_key_stops_the_run_with_an_error(data_root: Path) -> None:
    with running_server(data_root) as server, pytest.raises(GravixError, match="401"):
        run_loadgen(url=server.url, api_key="not-the-key", total=1000, rate=0)


def test_cli_json_summary_and_exit_code(data_root: Path) -> None:
    with running_server(data_root) as server:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gravix",
                "loadgen",
                "--url",
                server.url,
                "--api-key",
                str(server.api_key),
                "--total",
                "500",
                "--rate",
                "0",
                "--json",
                "--incident",
                "frontend:/checkout:0s:1m",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert server.stop() == 0
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["sent"] == report["acknowledged"] == 500
    assert report["incidents"][0]["path"] == "/checkout"
    assert _stored(data_root, schema.REQUEST_FACTS)[0] == 500


def test_cli_bad_incident_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gravix", "loadgen", "--incident", "nonsense", "--total", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "SERVICE:PATH:START:DURATION" in proc.stderr


def test_a_rate_limited_server_slows_loadgen_down_without_losing_facts(data_root: Path) -> None:
    with running_server(data_root, "--rate-limit", "10") as server:
        summary = run_loadgen(
            url=server.url,
            api_key=server.api_key,
            rate=0,
            total=1500,
            batch_size=50,
            services=2,
            deploys=False,
            concurrency=4,
        )
        assert server.stop() == 0
    # 30 batches against 10 requests/s (burst 20): some were told to wait, then got in.
    assert summary.retries > 0
    assert (summary.acknowledged, summary.failed) == (1500, 0)
    assert _stored(data_root, schema.REQUEST_FACTS) == (1500, 1500)
