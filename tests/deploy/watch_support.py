"""What the watching tests share: the files under deploy/, promtool (Debian's `prometheus`
package), the metric names a PromQL expression reads, and the names and label sets a live
node's /metrics exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "gravix-alerts.yml"
RULES_TEST = PROMETHEUS / "gravix-alerts.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "gravix-nodes.json"

# Series Prometheus makes itself for every target, not read from /metrics.
PROMETHEUS_MADE = {"up"}
# The object store's upload metrics (issue 19, item 2): the rules and the dashboard watch
# them; a node exports them once the store is built.
STORE_METRICS = {
    "gravix_upload_backlog_files",
    "gravix_upload_backlog_bytes",
    "gravix_upload_seconds_bucket",
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}

PROMTOOL_HINT = "promtool not found: apt-get install -y prometheus"


def prometheus_tool(name: str = "promtool") -> str:
    """A binary of Debian's prometheus package (promtool, prometheus); a skip with the
    install hint where it is missing, a failure when GRAVIX_REQUIRE_PROMTOOL=1 (CI sets it,
    and installs the package)."""
    found = shutil.which(name)
    if found is not None:
        return found
    hint = PROMTOOL_HINT.replace("promtool", name, 1)
    if os.environ.get("GRAVIX_REQUIRE_PROMTOOL") == "1":
        pytest.fail(f"{hint} (GRAVIX_REQUIRE_PROMTOOL=1 makes this a failure)")
    pytest.skip(hint)


def promtool() -> str:
    return prometheus_tool("promtool")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=PROMETHEUS,
    )


# --- the metric names in a PromQL expression -------------------------------------------------

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expression: str) -> set[str]:
    """Every metric name a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in matchers and groupings), durations or Grafana variables."""
    text = _STRING.sub('""', expression)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def series_name_and_labels(selector: str) -> tuple[str, dict[str, str]]:
    """``name{a="x", b="y"}`` as promtool's input series spell it."""
    m = re.fullmatch(r"\s*([A-Za-z_:][\w:]*)\s*(?:\{(.*)\})?\s*", selector)
    assert m, selector
    labels = dict(re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', m.group(2) or ""))
    return m.group(1), labels


# --- the files ----------------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def rules_test() -> dict[str, Any]:
    doc = yaml.safe_load(RULES_TEST.read_text())
    assert isinstance(doc, dict)
    return doc


def dashboard() -> dict[str, Any]:
    doc = json.loads(DASHBOARD.read_text())
    assert isinstance(doc, dict)
    return doc


def dashboard_expressions() -> list[str]:
    """The PromQL of every panel target, and the metric of every label_values variable."""
    doc = dashboard()
    out = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    for variable in doc["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
        assert m, variable["definition"]
        out.append(m.group(1))
    return out


def used_names() -> dict[str, set[str]]:
    """Per metric name, where it is used (an alert, a panel, a unit test's input series)."""
    where: dict[str, set[str]] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            where.setdefault(name, set()).add(f"alert {rule['alert']}")
    for expr in dashboard_expressions():
        for name in metric_names(expr):
            where.setdefault(name, set()).add("dashboard")
    for case in rules_test()["tests"]:
        for series in case["input_series"]:
            name, _ = series_name_and_labels(series["series"])
            where.setdefault(name, set()).add(f"test {case['name']!r}")
    return where


# --- a live node's /metrics --------------------------------------------------------------------


@dataclass
class Exported:
    """The names a node's /metrics declares, and the label names of the samples it shows."""

    names: set[str] = field(default_factory=set)
    labels: dict[str, set[frozenset[str]]] = field(default_factory=dict)


_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}


def parse_exposition(text: str) -> Exported:
    """Read the text format line by line (independently of prometheus_client): each
    ``# TYPE`` line declares the sample names of its family, each sample its label names."""
    out = Exported()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            suffixes = _SUFFIXES.get(kind, ("",))
            if kind == "counter" and not name.endswith("_total"):
                suffixes = ("_total",)
            out.names |= {name + suffix for suffix in suffixes}
        elif line and not line.startswith("#"):
            m = re.match(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s", line)
            assert m, line
            keys = frozenset(re.findall(r'(\w+)="', m.group(2) or ""))
            out.labels.setdefault(m.group(1), set()).add(keys)
    return out


def selector_labels(expression: str) -> dict[str, set[str]]:
    """Per metric name, the label names its selectors match on (``name{label="v"}``)."""
    text = _STRING.sub(lambda m: '"' + "x" * (len(m.group(0)) - 2) + '"', expression)
    out: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}", text):
        out.setdefault(name, set()).update(re.findall(r"(\w+)\s*[=!]~?", matchers))
    return out
