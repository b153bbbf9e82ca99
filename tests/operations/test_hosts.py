from __future__ import annotations

from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Policy, VmState
from libvirt_drs.balancer.planner import plan
from libvirt_drs.config import parse
from libvirt_drs.operations.hosts import _with_rules
from libvirt_drs.operations.planning import evacuation_snapshot


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
