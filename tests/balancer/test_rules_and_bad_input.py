"""Bad input: unknown names, contradictions, empty clusters. Each gives a clear message
naming the rule, never a traceback (broken traces: tests/libvirt_drs/test_traces.py)."""

from __future__ import annotations

import pytest

from libvirt_drs.balancer.model import GroupRule, HostState, Policy, Rules, VmHostRule
from libvirt_drs.balancer.planner import plan
from tests.balancer.builders import hosts, skewed, snapshot, vms


def test_unknown_vm_and_host_in_a_rule_are_notes() -> None:
    rules = Rules(vm_host=(VmHostRule("r1", "must", ("vm0", "gone"), ("h1", "h9")),))
    result = plan(snapshot(skewed().hosts, skewed().vms, rules), Policy())
    assert any("'r1'" in n and "'gone'" in n for n in result.notes)
    assert any("'r1'" in n and "'h9'" in n for n in result.notes)
    assert any(m.vm == "vm0" and m.destination == "h1" for m in result.moves)


def test_must_run_on_a_host_in_maintenance_is_unsatisfiable() -> None:
    hs = (HostState("h0", 8, 16384), HostState("h1", 8, 16384, state="maintenance"))
    rules = Rules(vm_host=(VmHostRule("db-on-h1", "must", ("x",), ("h1",)),))
    result = plan(snapshot(hs, vms(("x", "h0", 1, 1024)), rules), Policy())
    assert result.moves == ()
    [u] = result.unmovable
    assert u.vm == "x" and u.rule == "db-on-h1" and "unsatisfiable" in u.reason


def test_anti_affinity_larger_than_the_cluster_is_unsatisfiable() -> None:
    rules = Rules(anti_affinity=(GroupRule("spread", ("vm0", "vm1", "vm2", "vm3")),))
    result = plan(snapshot(skewed().hosts, skewed().vms, rules), Policy())
    assert {u.vm for u in result.unmovable} == {"vm0", "vm1", "vm2", "vm3"}
    assert all(u.rule == "spread" and "4 VMs" in u.reason for u in result.unmovable)
    assert not {m.vm for m in result.moves} & {"vm0", "vm1", "vm2", "vm3"}


def test_evacuation_with_no_room_reports_the_vm() -> None:
    hs = (HostState("a", 8, 4096, state="maintenance"), HostState("b", 8, 1024))
    result = plan(snapshot(hs, vms(("big", "a", 1, 2048))), Policy())
    [u] = result.unmovable
    assert (u.vm, u.rule) == ("big", "maintenance") and "no host" in u.reason


def test_pinned_vm_on_a_host_in_maintenance_is_reported() -> None:
    hs = (HostState("a", 8, 4096, state="maintenance"), HostState("b", 8, 4096))
    result = plan(snapshot(hs, vms(("p", "a", 1, 1024)), Rules(pinned=("p",))), Policy())
    assert result.moves == () and result.unmovable[0].rule == "pinned"


@pytest.mark.parametrize("snap", [snapshot((), ()), snapshot(hosts(("a", 4, 4096)), ())])
def test_empty_clusters_plan_nothing(snap) -> None:  # type: ignore[no-untyped-def]
    result = plan(snap, Policy())
    assert result.moves == () and result.imbalance_before == 0.0


def test_vm_on_unknown_host_is_a_note() -> None:
    result = plan(snapshot(hosts(("a", 4, 4096)), vms(("x", "zz", 1, 512))), Policy())
    assert result.moves == () and "unknown host 'zz'" in result.notes[0]

