"""Renderers: JSON keys, Markdown table, text (the HTML report: tests/web/test_reports.py)."""

from __future__ import annotations

import json
from dataclasses import replace

from libvirt_drs.balancer.model import Policy
from libvirt_drs.balancer.planner import plan
from libvirt_drs.balancer.report import host_loads, render_json, render_markdown, render_text
from tests.balancer.builders import skewed

POLICY = Policy(aggressiveness=5, min_gain=0.0, cost_weight=0.0)


def test_json_has_the_documented_keys() -> None:
    result = plan(skewed(), POLICY)
    data = json.loads(render_json(result))
    assert {"imbalance_before", "imbalance_after", "target", "moves"} <= set(data)
    assert data["moves"] and set(data["moves"][0]) >= {
        "vm", "source", "destination", "reason", "imbalance_before", "imbalance_after", "cost_s"}


def test_json_target_is_null_when_never_balancing() -> None:
    data = json.loads(render_json(plan(skewed(), replace(POLICY, aggressiveness=1))))
    assert data["target"] is None and data["moves"] == []


def test_host_loads_replay_the_moves() -> None:
    snap = skewed(n_hosts=3, n_vms=6)
    rows = host_loads(snap, plan(snap, POLICY))
    assert rows[0].cpu_before == 6 / 8 and rows[0].cpu_after < rows[0].cpu_before
    assert sum(r.cpu_after for r in rows) == sum(r.cpu_before for r in rows)


def test_markdown_and_text() -> None:
    snap = skewed()
    result = plan(snap, POLICY)
    md = render_markdown(result, snap)
    assert "| VM | From | To |" in md and "## Host load" in md
    text = render_text(result)
    assert text.splitlines()[0].startswith("imbalance ") and "REASON" in text


