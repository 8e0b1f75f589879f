"""deploy/grafana: the dashboard is valid JSON that Grafana's provisioning loads, its panels
sit on the grid without overlapping and name the provisioned data source, and every
PromQL expression in it passes promtool's parser."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from watch_support import GRAFANA, dashboard, dashboard_expressions, run_promtool

DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "gravix.yml"
# Grafana's own variables in a query, with what it puts there when it runs it.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


def _panels() -> list[dict[str, object]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_is_complete_json_with_unique_panel_ids() -> None:
    doc = dashboard()
    assert doc["uid"] == "gravix-nodes" and doc["title"]
    assert isinstance(doc["schemaVersion"], int)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert len(_panels()) >= 10
    for panel in _panels():
        assert panel["title"] and panel["targets"], panel
        refs = [t["refId"] for t in panel["targets"]]  # type: ignore[attr-defined]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_panel_and_variable_uses_the_provisioned_data_source() -> None:
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uids = {s["uid"] for s in sources if s["type"] == "prometheus"}
    assert len(uids) == 1
    doc = dashboard()
    for item in [*_panels(), *doc["templating"]["list"]]:
        assert item["datasource"]["uid"] in uids, item  # type: ignore[index]
    for panel in _panels():
        for target in panel["targets"]:  # type: ignore[attr-defined]
            assert target["datasource"]["uid"] in uids


def test_every_variable_used_is_defined() -> None:
    doc = dashboard()
    defined = {v["name"] for v in doc["templating"]["list"]} | set(GRAFANA_VARIABLES)
    used = {name for expr in dashboard_expressions() for name in re.findall(r"\$\{?(\w+)", expr)}
    assert used and used <= defined


def test_every_expression_parses(tmp_path: Path) -> None:
    """Each panel query, with the variables as Grafana fills them, as a recording rule
    that `promtool check rules` parses."""
    variables = {v["name"]: ".*" for v in dashboard()["templating"]["list"]} | GRAFANA_VARIABLES
    rules = []
    for n, expr in enumerate(dashboard_expressions()):
        filled = re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], expr)
        rules.append({"record": f"dashboard:query_{n}", "expr": filled})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = run_promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
    # promtool refuses a broken query, so the check above can fail.
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (instance (rate(x[5m]))"}
    ]}]}))  # fmt: skip
    assert run_promtool("check", "rules", str(path)).returncode != 0


def test_provisioning_loads_dashboards_from_the_mounted_folder() -> None:
    providers = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == ["/var/lib/grafana/dashboards"]
    assert providers[0]["type"] == "file"
