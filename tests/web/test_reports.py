"""The HTML reports: self-contained (Chart.js and the console's chart code inlined, nothing
fetched), every value escaped, the charts' data complete; rendered in a real Chromium, the
charts draw with their axes and the lines at 100 % and at the target."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Policy, VmState
from libvirt_drs.balancer.planner import plan
from libvirt_drs.web.reports import plan_html
from tests.conftest import _skip_or_fail
from tests.support.browser import available as browser_available
from tests.support.browser import chromium


def _snapshot() -> ClusterSnapshot:
    hosts = (HostState("h1", 2.0, 4096.0), HostState("h2", 2.0, 4096.0),
             HostState("h3", 2.0, 4096.0, stale=True))
    vms = tuple(VmState(f"<b>vm{i}</b>", "h1", 0.4, 512.0) for i in range(4))
    return ClusterSnapshot(hosts, vms)


def _charts(page: str) -> list[dict]:
    block = re.search(r'<script type="application/json" id="drs-charts">(.*?)</script>', page, re.S)
    assert block is not None
    return json.loads(block.group(1))


def test_plan_report_is_self_contained_and_escaped() -> None:
    snap = _snapshot()
    page = plan_html(plan(snap, Policy(aggressiveness=5)), snap)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script src=" not in page and "<link" not in page and "@import" not in page
    assert "Chart.js v4" in page  # the library itself, inlined
    assert "<b>vm" not in page and "&lt;b&gt;vm" in page
    cpu, mem = _charts(page)
    assert cpu["kind"] == "load" and cpu["hosts"] == ["h1", "h2", "h3"]
    assert [s["label"] for s in cpu["series"]] == ["before", "after"]
    assert cpu["series"][0]["values"][:2] == [0.8, 0.0] and cpu["series"][0]["values"][2] is None
    assert mem["title"].startswith("Memory load per host")


def test_a_name_cannot_close_the_data_block() -> None:
    snap = replace(_snapshot(), hosts=(HostState("</script><script>alert(1)</script>", 2.0, 4096.0),
                                       HostState("h2", 2.0, 4096.0)))
    snap = replace(snap, vms=tuple(replace(v, host=snap.hosts[0].name) for v in snap.vms))
    page = plan_html(plan(snap, Policy(aggressiveness=5)), snap)
    assert "</script><script>alert(1)" not in page
    assert _charts(page)[0]["hosts"][0] == "</script><script>alert(1)</script>"


def test_report_charts_draw_in_chromium(tmp_path: Path) -> None:
    if not browser_available():
        _skip_or_fail("chromium and chromium-driver are not installed (deploy/setup.sh does)")
    snap = _snapshot()
    path = tmp_path / "plan.html"
    path.write_text(plan_html(plan(snap, Policy(aggressiveness=5)), snap))
    browser = chromium(tmp_path / "profile")
    try:
        browser.get(path.as_uri())
        drawn = browser.execute_script("""
            const c = Chart.getChart('chart-1');
            return c && {labels: c.data.labels, sets: c.data.datasets.map(d => d.label),
                         y: c.options.scales.y.title.text, title: c.options.plugins.title.text,
                         line: c.data.datasets[2].data};""")
    finally:
        browser.quit()
    assert drawn["labels"] == ["h1", "h2", "h3 (no data)"]
    assert drawn["sets"] == ["before", "after", "100 % of capacity"]
    assert drawn["y"] == "% of capacity" and drawn["title"].startswith("CPU load per host")
    assert drawn["line"] == [100, 100, 100]
