"""A real Prometheus (Debian's package) on a loopback port scrapes a live node with the
shipped alert rules: the target is up, every rule evaluates without error, and every
dashboard query runs, with data wherever the node exports what it reads."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from watch_support import (
    RULES,
    STORE_METRICS,
    Exported,
    dashboard,
    dashboard_expressions,
    metric_names,
    prometheus_tool,
    rules,
)

from serverutil import RunningServer, free_port

DEADLINE = 60.0


def _get(base: str, path: str, **params: str) -> Any:
    answer = httpx.get(f"{base}{path}", params=params, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    return body["data"]


def _wait(what: str, check: Any) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"Prometheus did not {what} within {DEADLINE:.0f} s")


@pytest.fixture(scope="module")
def prometheus(live_node: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = prometheus_tool("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "gravix-ingest",
                "static_configs": [{"targets": [f"127.0.0.1:{live_node.port}"]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("start", lambda: httpx.get(f"{base}/-/ready", timeout=2).status_code == 200)
        # A few scrapes, so that rates over a window have points.
        query = 'count_over_time(gravix_ready{job="gravix-ingest"}[1m])'
        _wait("scrape the node", lambda: _value(_get(base, "/api/v1/query", query=query)) >= 4)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _value(data: dict[str, Any]) -> float:
    result = data["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_the_node_is_an_up_target(prometheus: str) -> None:
    targets = _get(prometheus, "/api/v1/targets")["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [("gravix-ingest", "up")]


def test_every_rule_evaluates_without_error(prometheus: str) -> None:
    def evaluated() -> list[dict[str, Any]]:
        groups = _get(prometheus, "/api/v1/rules")["groups"]
        found = [rule for group in groups for rule in group["rules"]]
        return found if all(r["health"] != "unknown" for r in found) else []

    _wait("evaluate every rule", evaluated)
    found = evaluated()
    assert {r["name"] for r in found} == {r["alert"] for r in rules()}
    assert {g["file"] for g in _get(prometheus, "/api/v1/rules")["groups"]} == {str(RULES)}
    assert [(r["name"], r.get("lastError")) for r in found if r["health"] != "ok"] == []
    # A healthy node that just started: nothing fires.
    firing = [r["name"] for r in found if r["state"] == "firing"]
    assert firing == []


def _filled(expr: str) -> str:
    values = {v["name"]: ".*" for v in dashboard()["templating"]["list"]}
    values["__rate_interval"] = "1m"
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def test_every_dashboard_query_runs_and_has_data_where_the_node_has_it(
    prometheus: str, live: Exported
) -> None:
    empty = []
    checked = 0
    for expr in dashboard_expressions():
        names = metric_names(expr)
        data = _get(prometheus, "/api/v1/query", query=_filled(expr))
        sampled = all(n in live.labels or n == "up" for n in names)
        checked += sampled
        if sampled and not data["result"]:
            empty.append(expr)
        if names & STORE_METRICS and not names <= set(live.labels):
            assert data["result"] == []  # the store's metrics are not there yet
    assert empty == [], "queries without data although the node exports their metrics"
    assert checked >= len(dashboard_expressions()) - len(STORE_METRICS)
