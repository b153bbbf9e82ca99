from __future__ import annotations

import pytest

from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Policy, VmState
from libvirt_drs.balancer.planner import plan
from libvirt_drs.config import parse
from libvirt_drs.db import audit
from libvirt_drs.migrator.model import JobState
from libvirt_drs.operations import hosts, moves
from libvirt_drs.operations.errors import Conflict, Forbidden, NotFound
from libvirt_drs.operations.hosts import _with_rules
from libvirt_drs.operations.planning import evacuation_snapshot
from tests.support.fake_cluster import OPERATOR, VIEWER, Lab


def snapshot() -> ClusterSnapshot:
    hosts = tuple(HostState(n, 2.0, 4096.0, group=g) for n, g in
                  (("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")))
    vms = (VmState("v1", "a1", 0.1, 512.0), VmState("v2", "a2", 0.1, 512.0),
           VmState("v3", "b1", 0.1, 512.0))
    return ClusterSnapshot(hosts, vms)


def test_evacuation_snapshot_marks_leaving_and_fences_non_targets() -> None:
    snap = evacuation_snapshot(snapshot(), {"a1", "a2"}, {"b1"})
    state = {h.name: (h.state, h.stale) for h in snap.hosts}
    assert state == {"a1": ("maintenance", False), "a2": ("maintenance", False),
                     "b1": ("active", False), "c1": ("active", True)}
    result = plan(snap, Policy(max_moves_per_pass=0))
    assert {(m.vm, m.destination) for m in result.moves} == {("v1", "b1"), ("v2", "b1")}


def test_reasons_name_the_binding_host_rule() -> None:
    cfg = parse('[[hosts]]\nname = "h1"\nuri = "qemu:///system"\n'
                '[[rules.vm_host]]\nname = "stay"\nkind = "must"\nvms = ["v"]\nhosts = ["h1"]\n')
    assert "rule 'stay': v must run on h1" in _with_rules(cfg, "v", "no destination")
    assert _with_rules(cfg, "v", "rule 'stay' unsatisfiable") == "rule 'stay' unsatisfiable"


def test_maintenance_is_previewed_then_requested_and_audited(fake: Lab) -> None:
    preview = hosts.plan_maintenance(fake.cl, VIEWER, "h1")
    assert {m.vm for m in preview.moves} == {f"vm{i}" for i in range(1, 7)}
    assert fake.cl.migrator.store.in_maintenance("h1") is False  # a preview changes nothing
    with pytest.raises(Forbidden):
        hosts.request_maintenance(fake.cl, VIEWER, "h1")
    evac = hosts.request_maintenance(fake.cl, OPERATOR, "h1")
    done = moves.run_jobs(fake.cl, evac.jobs)
    assert all(j.state is JobState.SUCCEEDED for j in done) and fake.hv.hosts["h1"].domains == {}
    fake.sample()
    assert hosts.left_behind(fake.cl, {"h1"}, evac, done) == []
    actions = [e.action for e in audit.events(fake.cl.engine, actor="token:ops")]
    assert actions[0] == "host.maintenance" and "plan.manual" in actions
    hosts.exit_maintenance(fake.cl, OPERATOR, "h1")
    assert fake.cl.migrator.store.in_maintenance("h1") is False


def test_an_evacuation_with_nowhere_to_go_is_refused(fake: Lab) -> None:
    with pytest.raises(Conflict) as exc:
        hosts.plan_evacuation(fake.cl, VIEWER, "default")  # every host is in group default
    assert exc.value.reason == "no_destination"
    with pytest.raises(NotFound):
        hosts.plan_evacuation(fake.cl, VIEWER, "nope")
    assert not fake.cl.migrator.store.in_maintenance("h1")
