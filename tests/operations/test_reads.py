"""Read models: a host without data is "no data" everywhere, never 0 % and never "within
target" without saying so."""

from __future__ import annotations

from sqlalchemy import delete, select

from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Policy, VmState
from libvirt_drs.balancer.planner import plan
from libvirt_drs.balancer.report import render_markdown
from libvirt_drs.db.models import Host, HostSample
from libvirt_drs.operations import reads, views
from libvirt_drs.service.metrics import DrsMetrics
from tests.support.fake_cluster import VIEWER, Lab


def test_a_host_that_stopped_answering_has_no_load_and_the_verdict_says_so(fake: Lab) -> None:
    fake.hv.hosts["h3"].reachable = False
    fake.sample()
    status = reads.cluster_status(fake.cl, VIEWER)
    h3 = next(h for h in status.hosts if h.view.name == "h3")
    assert h3.view.stale and "Connection refused" in (h3.why_stale or "")
    assert "not counted (stale): h3" in status.verdict
    data = views.status(status)
    row = next(h for h in data["hosts"] if h["name"] == "h3")
    assert row["stale"] and row["eligible"] is False
    assert data["verdict"] == status.verdict


def test_an_eligible_host_without_samples_makes_the_figure_unknown(fake: Lab) -> None:
    # h2 answers (fresh, eligible) but none of its samples is in the window
    with fake.cl.engine.begin() as conn:
        conn.execute(delete(HostSample).where(HostSample.host_id == select(Host.id).where(
            Host.name == "h2").scalar_subquery()))
    status = reads.cluster_status(fake.cl, VIEWER)
    assert status.eligible_without_data == ("h2",)
    assert status.verdict.startswith("unknown, no load data for h2")
    assert views.status(status)["hosts_without_data"] == ["h2"]
    h2 = next(h for h in views.status(status)["hosts"] if h["name"] == "h2")
    assert h2["cpu_load"] is None and h2["has_data"] is False


def test_markdown_says_no_data_for_a_stale_host_and_escapes_names() -> None:
    hosts = (HostState("h1", 2.0, 4096.0), HostState("h2", 2.0, 4096.0),
             HostState("h3", 2.0, 4096.0, stale=True))
    vms = (VmState("web*1|<b>", "h1", 1.0, 512.0), VmState("b", "h1", 1.0, 512.0))
    snap = ClusterSnapshot(hosts, vms)
    text = render_markdown(plan(snap, Policy(aggressiveness=5)), snap)
    h3 = next(line for line in text.splitlines() if line.startswith("| h3 |"))
    assert h3 == "| h3 | no data | no data | no data | no data |"
    assert "web\\*1\\|\\<b\\>" in text and "| web*1" not in text


def test_a_stale_host_has_no_load_series() -> None:
    m = DrsMetrics()
    m.set_host_gauges({"h1": 0.5, "h2": 0.0}, {"h1": 0.25, "h2": 0.0}, {"h1": 3, "h2": 0},
                      stale=("h2",), maintenance=("h1",), capacity={"h1": (4.0, 8192.0)})
    value = m.registry.get_sample_value
    assert value("drs_host_cpu_load_ratio", {"host": "h1"}) == 0.5
    assert value("drs_host_cpu_load_ratio", {"host": "h2"}) is None  # unknown, not 0
    assert value("drs_host_memory_load_ratio", {"host": "h2"}) is None
    assert value("drs_host_stale", {"host": "h2"}) == 1
    assert value("drs_host_maintenance", {"host": "h1"}) == 1
    assert value("drs_host_memory_capacity_bytes", {"host": "h1"}) == 8192.0 * 1024 * 1024
    names = {s.name for fam in m.registry.collect() for s in fam.samples}
    assert not any(n.endswith("_created") for n in names)
