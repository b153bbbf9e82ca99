"""deploy/: Grafana dashboards and provisioning, Prometheus config, systemd unit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from libvirt_drs.service.metrics import DrsMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def _panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_panels(p.get("panels", [])))
    return out


def provisioned_uids() -> set[str]:
    text = (DEPLOY / "grafana" / "provisioning" / "datasources" / "drs.yaml").read_text()
    return set(re.findall(r"^\s*uid:\s*(\S+)\s*$", text, re.M))


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every PromQL expression of every dashboard."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in _panels(board["panels"]):
            for t in panel.get("targets", []):
                found.append((path.name, panel["title"], t["expr"]))
    return found


def exported_names() -> set[str]:
    names = set()
    for fam in DrsMetrics().registry.collect():
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
        if fam.type == "histogram":
            names.update(fam.name + suffix for suffix in ("_bucket", "_sum", "_count"))
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
    uids = provisioned_uids()
    for p in panels:
        grid = p["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid) and grid["x"] + grid["w"] <= 24
        if p["type"] == "row":
            continue
        ds = p["datasource"]
        assert ds["type"] == "prometheus" and ds["uid"] in uids, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["datasource"]["uid"] in uids and t["expr"].strip()
    for var in board.get("templating", {}).get("list", []):
        if var.get("datasource"):
            assert var["datasource"]["uid"] in uids


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
