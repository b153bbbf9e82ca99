"""deploy/: Grafana dashboards and provisioning, Prometheus config, systemd unit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from libvirt_drs.service.metrics import DrsMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
RUNBOOK = ROOT / "deploy" / "runbook.md"
RUNBOOK_URL = "file:///opt/libvirt-drs/deploy/runbook.md#"
DS_VARIABLE = "${datasource}"


def _panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_panels(p.get("panels", [])))
    return out


def provisioned_uids() -> set[str]:
    text = (DEPLOY / "grafana" / "provisioning" / "datasources" / "drs.yaml").read_text()
    return set(re.findall(r"^\s*uid:\s*(\S+)\s*$", text, re.M))


def _variables(board: dict) -> list[dict]:
    return board.get("templating", {}).get("list", [])


def _prometheus_annotations(board: dict) -> list[dict]:
    return [a for a in board.get("annotations", {}).get("list", [])
            if not a.get("builtIn") and (a.get("datasource") or {}).get("type") == "prometheus"]


def _annotation_expr(annotation: dict) -> str:
    return annotation.get("expr") or (annotation.get("target") or {}).get("expr", "")


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel or annotation title, expr) of every PromQL expression of
    every dashboard: panel targets and Prometheus annotation queries."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in _panels(board["panels"]):
            for t in panel.get("targets", []):
                found.append((path.name, panel["title"], t["expr"]))
        for a in _prometheus_annotations(board):
            found.append((path.name, f"annotation {a['name']}", _annotation_expr(a)))
    return found


def datasource_ok(ds: dict, board: dict) -> bool:
    """A Prometheus datasource given by a provisioned uid, or by the dashboard's datasource
    variable when that variable defaults to a provisioned uid."""
    if ds.get("type") != "prometheus":
        return False
    uids = provisioned_uids()
    if ds.get("uid") in uids:
        return True
    if ds.get("uid") not in (DS_VARIABLE, "$datasource"):
        return False
    return any(v["name"] == "datasource" and v["type"] == "datasource"
               and v.get("query") == "prometheus" and v["current"]["value"] in uids
               for v in _variables(board))


def exported_names() -> set[str]:
    names = set()
    for fam in DrsMetrics().registry.collect():
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
        if fam.type == "histogram":
            names.update(fam.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        if fam.type == "counter":  # also a labelled counter without children yet
            names.add(fam.name + "_total")
    return names


def test_there_are_dashboards() -> None:
    assert {p.name for p in DASHBOARDS} >= {"cluster-balance.json", "service.json"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    board = json.loads(path.read_text())
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["uid"] and len(board["uid"]) <= 40 and board["title"]
    assert "id" not in board or board["id"] is None  # provisioned boards must not pin an id
    panels = _panels(board["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        grid = p["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid) and grid["x"] + grid["w"] <= 24
        if p["type"] == "row":
            continue
        assert datasource_ok(p["datasource"], board), p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert datasource_ok(t["datasource"], board) and t["expr"].strip(), p["title"]
    for var in _variables(board):
        if var.get("datasource"):
            assert datasource_ok(var["datasource"], board), var["name"]
    for a in _prometheus_annotations(board):
        assert datasource_ok(a["datasource"], board) and _annotation_expr(a).strip(), a["name"]


def _overlaps(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_do_not_overlap(path: Path) -> None:
    panels = _panels(json.loads(path.read_text())["panels"])
    for i, a in enumerate(panels):
        for b in panels[i + 1:]:
            assert not _overlaps(a["gridPos"], b["gridPos"]), (a["title"], b["title"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_has_datasource_and_instance_variables(path: Path) -> None:
    board = json.loads(path.read_text())
    variables = {v["name"]: v for v in _variables(board)}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert ds["current"]["value"] in provisioned_uids()
    inst = variables["instance"]
    assert inst["type"] == "query" and inst["includeAll"] and inst["multi"]
    assert inst.get("allValue") == ".*"
    assert inst["datasource"] == {"type": "prometheus", "uid": DS_VARIABLE}
    assert "label_values(drs_build_info, instance)" in json.dumps(inst["query"])
    # every panel and target goes through the variable, none is pinned to a uid
    for p in _panels(board["panels"]):
        if p["type"] != "row":
            assert p["datasource"]["uid"] == DS_VARIABLE, p["title"]
            assert all(t["datasource"]["uid"] == DS_VARIABLE for t in p["targets"]), p["title"]


def test_every_dashboard_selector_filters_by_instance() -> None:
    for file, title, expr in dashboard_exprs():
        for name, matchers in re.findall(r"\b(drs_[a-z0-9_]+)(\{[^}]*\})?", expr):
            assert 'instance=~"$instance"' in matchers, f"{file}: {title}: {name}"


def test_variable_queries_use_exported_metrics() -> None:
    names = exported_names()
    for path in DASHBOARDS:
        for var in _variables(json.loads(path.read_text())):
            for token in re.findall(r"\b(drs_[a-z0-9_]+)\b", json.dumps(var.get("query", ""))):
                assert token in names, f"{path.name}: ${var['name']}: unknown metric {token}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_annotates_finished_migrations(path: Path) -> None:
    board = json.loads(path.read_text())
    marks = [a for a in _prometheus_annotations(board)
             if "drs_migrations_finished_total" in _annotation_expr(a)]
    assert marks, "no annotation for finished migrations"
    for a in marks:
        assert a["enable"] and a["name"] and a.get("titleFormat")
        assert 'instance=~"$instance"' in _annotation_expr(a)


def test_imbalance_is_not_shown_as_a_percentage() -> None:
    """Imbalance and target are standard deviations of load ratios, not percentages."""
    seen = 0
    for path in DASHBOARDS:
        for p in _panels(json.loads(path.read_text())["panels"]):
            exprs = " ".join(t["expr"] for t in p.get("targets", []))
            if "drs_cluster_imbalance" not in exprs or " bool " in exprs:
                continue
            seen += 1
            defaults = p["fieldConfig"]["defaults"]
            assert defaults.get("unit") not in ("percentunit", "percent"), p["title"]
            assert 3 <= defaults.get("decimals", 0) <= 4, p["title"]
    assert seen >= 3  # the two stat panels and the time series


def test_cluster_dashboard_has_the_host_and_migration_panels() -> None:
    board = json.loads((DEPLOY / "grafana" / "dashboards" / "cluster-balance.json").read_text())
    by_title = {p["title"]: p for p in _panels(board["panels"])}
    exprs = " ".join(t["expr"] for p in by_title.values() for t in p.get("targets", []))
    assert by_title["Memory load now"]["type"] == by_title["CPU load now"]["type"] == "bargauge"
    for metric in ("drs_host_memory_load_ratio", "drs_host_cpu_capacity_cores",
                   "drs_host_memory_capacity_bytes", "drs_host_maintenance", "drs_host_stale",
                   "drs_migration_transferred_bytes_total", "drs_host_migrations_total",
                   "drs_recommendations_pending", "drs_balancing_window_open"):
        assert metric in exprs, metric
    assert "host" in {v["name"] for v in _variables(board)}


def test_dashboards_use_only_exported_metrics() -> None:
    names = exported_names()
    for file, title, expr in dashboard_exprs():
        for token in re.findall(r"\b(drs_[a-z0-9_]+)\b", expr):
            assert token in names, f"{file}: {title}: unknown metric {token}"


def test_uids_are_unique_across_dashboards() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_dashboard_provider_points_at_a_directory() -> None:
    text = (DEPLOY / "grafana" / "provisioning" / "dashboards" / "drs.yaml").read_text()
    assert "apiVersion: 1" in text and re.search(r"^\s*path:\s*/\S+", text, re.M)
    assert provisioned_uids() == {"drs-prometheus"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_prometheus_config_and_rules_are_valid() -> None:
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "drs-rules.yml"]):
        res = subprocess.run(["promtool", *args], cwd=DEPLOY, capture_output=True, text=True,
                             timeout=60, check=False)
        assert res.returncode == 0, res.stdout + res.stderr
    assert "127.0.0.1:9177" in (DEPLOY / "prometheus.yml").read_text()


def _rules() -> list[tuple[str, str]]:
    """(alert name, the rule's text) of every rule of deploy/drs-rules.yml."""
    text = (DEPLOY / "drs-rules.yml").read_text()
    blocks = re.split(r"^\s*- (?=alert:|record:)", text, flags=re.M)[1:]
    return [(re.match(r"(?:alert|record):\s*(\S+)", b).group(1), b) for b in blocks]


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lowercase, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", RUNBOOK.read_text(), re.M)
    return {github_anchor(h) for h in headings}


def test_github_anchor() -> None:
    assert github_anchor("DrsNoLeader") == "drsnoleader"
    assert github_anchor("Host in maintenance: too long!") == "host-in-maintenance-too-long"


def test_every_alert_links_its_runbook_section() -> None:
    rules = _rules()
    assert len(rules) >= 8
    anchors = runbook_anchors()
    for name, block in rules:
        urls = re.findall(r"^\s*runbook_url:\s*(\S+)\s*$", block, re.M)
        assert len(urls) == 1, f"{name}: no runbook_url"
        assert urls[0].startswith(RUNBOOK_URL), urls[0]
        anchor = urls[0][len(RUNBOOK_URL):]
        assert anchor in anchors, f"{name}: deploy/runbook.md has no heading for #{anchor}"


def test_runbook_sections_say_what_to_check_and_do() -> None:
    text = RUNBOOK.read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    alerts = {name for name, _ in _rules()}
    assert {s.splitlines()[0].strip() for s in sections} >= alerts
    for section in sections:
        assert "**Meaning.**" in section and "**Check.**" in section and "**Do.**" in section


def test_recommendations_pending_alert() -> None:
    rules = dict(_rules())
    block = rules["DrsRecommendationsPending"]
    assert "drs_recommendations_pending" in block and 'mode="manual"' in block
    assert re.search(r"^\s*for:\s*1h\s*$", block, re.M)
    assert "severity: info" in block


UNIT_MUST = ("User=drs", "NoNewPrivileges=yes", "ProtectSystem=strict",
             "ReadWritePaths=/var/lib/drs", "PrivateTmp=yes", "ProtectHome=yes",
             "CapabilityBoundingSet=\n", "ExecStart=/opt/libvirt-drs/.venv/bin/drs serve",
             "KillSignal=SIGTERM", "TimeoutStopSec=")


def test_systemd_unit_has_the_sandboxing_options() -> None:
    text = (DEPLOY / "drs.service").read_text()
    for option in UNIT_MUST:
        assert option in text, option
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", text, re.M).group(1))
    assert stop > 60  # longer than the default shutdown grace period


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_unit_verifies_and_is_well_confined(tmp_path: Path) -> None:
    unit = tmp_path / "drs.service"
    unit.write_text((DEPLOY / "drs.service").read_text())
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                         capture_output=True, text=True, timeout=60, check=False)
    problems = [line for line in (res.stdout + res.stderr).splitlines()
                if line.strip() and "is not executable" not in line]
    assert not problems, problems
    res = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                         capture_output=True, text=True, timeout=60, check=False)
    level = re.search(r"Overall exposure level for drs.service: ([\d.]+)", res.stdout)
    assert level and float(level.group(1)) <= 2.0, res.stdout[-500:]
