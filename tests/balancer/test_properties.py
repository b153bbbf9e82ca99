"""Hypothesis properties: hard constraints always hold, balancing never makes things worse,
planning is deterministic, and greedy is near-optimal on tiny clusters (brute force)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libvirt_drs.balancer.model import (
    ClusterSnapshot,
    GroupRule,
    HostState,
    Policy,
    Rules,
    VmHostRule,
    VmState,
)
from libvirt_drs.balancer.planner import plan
from tests.balancer.checks import violations

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEATURES = ("avx2", "aes")


@st.composite
def clusters(draw: st.DrawFn) -> ClusterSnapshot:
    n_hosts = draw(st.integers(0, 5))
    hosts = tuple(HostState(
        name=f"h{i}", cpu_cores=draw(st.sampled_from([1.0, 2.0, 4.0, 8.0])),
        mem_mib=draw(st.sampled_from([2048.0, 4096.0, 8192.0])),
        state=draw(st.sampled_from(["active"] * 4 + ["maintenance"])),
        stale=draw(st.booleans()) and draw(st.booleans()),
        storage_group=draw(st.sampled_from(["s1", "s1", "s2"])),
        cpu_features=frozenset(draw(st.sets(st.sampled_from(FEATURES)))),
        max_outgoing=draw(st.sampled_from([None, None, 1, 3])),
    ) for i in range(n_hosts))
    n_vms = draw(st.integers(0, 10)) if hosts else 0
    vms = tuple(VmState(
        name=f"v{j}", host=f"h{draw(st.integers(0, n_hosts - 1))}",
        cpu_cores=draw(st.floats(0.0, 4.0)), mem_mib=draw(st.sampled_from([256.0, 1024.0, 2048.0])),
        vcpus=draw(st.integers(1, 4)), cpu_spread_cores=draw(st.floats(0.0, 1.0)),
        last_migrated_s=draw(st.sampled_from([None, None, 50.0, -5000.0])),
        last_source=draw(st.sampled_from([None, "h0", "h1"])),
    ) for j in range(n_vms))
    names = [v.name for v in vms] + ["ghost"]
    host_names = [h.name for h in hosts] + ["nohost"]
    pick_vms = st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True).map(tuple)
    pick_hosts = st.lists(st.sampled_from(host_names), min_size=1, max_size=2,
                          unique=True).map(tuple)
    rules = Rules(
        anti_affinity=tuple(GroupRule(f"anti{k}", draw(pick_vms))
                            for k in range(draw(st.integers(0, 2)))),
        affinity=tuple(GroupRule(f"aff{k}", draw(pick_vms))
                       for k in range(draw(st.integers(0, 1)))),
        vm_host=tuple(VmHostRule(f"vh{k}", draw(st.sampled_from(["must", "must_not", "should",
                                                                 "should_not"])),
                                 draw(pick_vms), draw(pick_hosts))
                      for k in range(draw(st.integers(0, 3)))),
        pinned=tuple(draw(st.lists(st.sampled_from(names), max_size=2, unique=True))),
    )
    return ClusterSnapshot(hosts=hosts, vms=vms, rules=rules, now_s=100.0)


policies = st.builds(
    Policy, aggressiveness=st.integers(1, 5), cpu_overcommit_ratio=st.sampled_from([1.0, 2.0, 4.0]),
    max_moves_per_pass=st.integers(0, 6), max_moves_per_host=st.integers(1, 3),
    copy_storage=st.booleans(), min_gain=st.sampled_from([0.0, 0.002]),
    mem_weight=st.sampled_from([0.0, 1.0]), risk_weight=st.sampled_from([0.0, 1.0]),
    mem_reserve_mib=st.sampled_from([0.0, 512.0]), cooldown_s=st.sampled_from([0.0, 3600.0]))


@FAST
@given(clusters(), policies)
def test_no_plan_breaks_a_hard_constraint(snap: ClusterSnapshot, policy: Policy) -> None:
    result = plan(snap, policy)
    assert violations(snap, result, policy) == []


@FAST
@given(clusters(), policies)
def test_balancing_never_raises_the_imbalance(snap: ClusterSnapshot, policy: Policy) -> None:
    result = plan(snap, policy)
    balancing = [m for m in result.moves if m.kind == "balancing"]
    start = balancing[0].imbalance_before if balancing else result.imbalance_after
    for m in balancing:
        assert m.imbalance_after <= start + 1e-12
    if all(m.kind == "balancing" for m in result.moves):
        assert result.imbalance_after <= result.imbalance_before + 1e-12


@FAST
@given(clusters(), policies)
def test_planning_is_deterministic(snap: ClusterSnapshot, policy: Policy) -> None:
    rebuilt = replace(snap, hosts=tuple(replace(h) for h in snap.hosts),
                      vms=tuple(replace(v) for v in snap.vms))
    assert plan(snap, policy) == plan(rebuilt, policy)


def _imbalance(cpu: np.ndarray, mem: np.ndarray, where: tuple[int, ...], cores: np.ndarray,
               host_mem: np.ndarray) -> float:
    idx = np.array(where)
    cpu_load = np.bincount(idx, cpu, minlength=3) / cores
    mem_load = np.bincount(idx, mem, minlength=3) / host_mem
    return float(np.sqrt((np.var(cpu_load) + np.var(mem_load)) / 2))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.floats(0.05, 3.0),
                          st.sampled_from([512.0, 1024.0, 2048.0])), min_size=1, max_size=8),
       st.lists(st.sampled_from([2.0, 4.0, 8.0]), min_size=3, max_size=3))
def test_greedy_is_within_5_percent_of_brute_force(vm_specs: list[tuple[int, float, float]],
                                                   cores: list[float]) -> None:
    hosts = tuple(HostState(f"h{i}", c, 8192.0) for i, c in enumerate(cores))
    vms = tuple(VmState(f"v{j}", f"h{h}", cpu, mem) for j, (h, cpu, mem) in enumerate(vm_specs))
    policy = Policy(aggressiveness=5, min_gain=0.0, cost_weight=0.0, max_moves_per_host=8,
                    max_moves_per_pass=8)
    result = plan(ClusterSnapshot(hosts=hosts, vms=vms), policy)
    k = len(result.moves)
    start = tuple(h for h, _, _ in vm_specs)
    cpu = np.array([c for _, c, _ in vm_specs])
    mem = np.array([m for _, _, m in vm_specs])
    caps, host_mem = np.array(cores), np.full(3, 8192.0)
    best = min(
        _imbalance(cpu, mem, where, caps, host_mem)
        for where in itertools.product(range(3), repeat=len(vm_specs))
        if sum(a != b for a, b in zip(where, start, strict=True)) <= k
        and (np.bincount(np.array(where), mem, minlength=3) <= host_mem).all())
    assert result.imbalance_after <= best * 1.05 + 1e-9
