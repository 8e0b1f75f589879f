"""deploy/prometheus: the alert rules pass `promtool check rules`, their unit tests pass
`promtool test rules` on series shaped like a live node's /metrics, and every alert is
tested both firing and quiet."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from watch_support import (
    PROMETHEUS_CONFIG,
    RULES,
    RULES_TEST,
    rules,
    rules_test,
    run_promtool,
)

# What the issue asks the rules to watch, and the alerts that do.
WATCHED = {
    "ingestion down": {"GravixIngestDown", "GravixIngestAllDown", "GravixIngestNotReady"},
    "fsync latency": {"GravixFsyncSlow", "GravixFsyncStalling"},
    "upload backlog": {"GravixUploadBacklog", "GravixUploadBacklogFillsDisk"},
    "rollup behind": {"GravixRollupBehind"},
    "disk nearly full": {"GravixDiskNearlyFull", "GravixDiskBelowFloor"},
}


def test_promtool_checks_the_rules() -> None:
    proc = run_promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout


def test_promtool_checks_the_prometheus_config_with_its_rules() -> None:
    proc = run_promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 1 rule files found" in proc.stdout


def test_promtool_runs_the_rules_unit_tests() -> None:
    proc = run_promtool("test", "rules", str(RULES_TEST))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """The unit-test run is not vacuous: an alert expected where the series are healthy
    fails it."""
    (tmp_path / "gravix-alerts.yml").write_text(RULES.read_text())
    (tmp_path / "wrong.test.yml").write_text(
        textwrap.dedent(
            """\
            rule_files: [gravix-alerts.yml]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'gravix_ready{job="gravix-ingest", instance="node-1:8090"}'
                    values: '1x10'
                alert_rule_test:
                  - eval_time: 10m
                    alertname: GravixIngestNotReady
                    exp_alerts:
                      - exp_labels:
                          {severity: critical, job: gravix-ingest, instance: "node-1:8090"}
            """
        )
    )
    proc = run_promtool("test", "rules", str(tmp_path / "wrong.test.yml"))
    assert proc.returncode != 0
    assert "GravixIngestNotReady" in proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in rules_test()["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_the_rules_cover_what_the_issue_asks_to_watch() -> None:
    names = {rule["alert"] for rule in rules()}
    for concern, alerts in WATCHED.items():
        assert alerts <= names, concern


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_rule_has_a_severity_and_says_what_to_do(rule: dict[str, object]) -> None:
    labels = rule["labels"]
    annotations = rule["annotations"]
    assert isinstance(labels, dict) and labels["severity"] in ("warning", "critical")
    assert isinstance(annotations, dict) and set(annotations) == {"summary", "description"}
