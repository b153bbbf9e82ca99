"""The planner's search width and move budget scale with the cluster (issue 17, item 0),
and the destination shortlist of large clusters loses no move the full search finds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from libvirt_drs.balancer import planner
from libvirt_drs.balancer.arrays import build_cluster
from libvirt_drs.balancer.model import (
    ClusterSnapshot,
    HostState,
    Policy,
    VmState,
)
from libvirt_drs.balancer.planner import move_budget, plan, search_width
from tests.balancer.checks import violations


def cluster_of(n_hosts: int, vms_per_host: int, seed: int = 0,
               cores: float = 2.0) -> ClusterSnapshot:
    """Identical hosts; VM loads random, the first tenth of the hosts twice as busy."""
    rng = np.random.default_rng(seed)
    hosts = tuple(HostState(f"h{i:03d}", cores, 65536.0) for i in range(n_hosts))
    vms = []
    for h in range(n_hosts):
        scale = 2.0 if h < max(n_hosts // 10, 1) else 1.0
        for k in range(vms_per_host):
            vms.append(VmState(f"vm{h:03d}-{k}", hosts[h].name,
                               float(rng.uniform(0.02, 0.3)) * scale, 1024.0))
    return ClusterSnapshot(hosts=hosts, vms=tuple(vms))


def arrays(snap: ClusterSnapshot, policy: Policy):  # type: ignore[no-untyped-def]
    index = {h.name: i for i, h in enumerate(snap.hosts)}
    return build_cluster(snap, snap.vms, policy,
                         np.array([index[v.host] for v in snap.vms], dtype=np.int64))


@pytest.mark.parametrize(("vms_per_host", "width"), [(5, 32), (10, 16), (100, 8)])
def test_search_width_holds_about_160_vms(vms_per_host: int, width: int) -> None:
    c = arrays(cluster_of(40, vms_per_host), Policy())
    assert search_width(Policy(), c) == width


@pytest.mark.parametrize(("n_hosts", "budget"), [(20, 16), (106, 16), (211, 32), (1000, 150)])
def test_move_budget_grows_with_the_hosts(n_hosts: int, budget: int) -> None:
    c = arrays(cluster_of(n_hosts, 1), Policy())
    assert move_budget(Policy(), c) == budget


def test_move_budget_obeys_the_operators_ceiling_and_the_per_host_limits() -> None:
    c = arrays(cluster_of(1000, 1), Policy())
    assert move_budget(Policy(max_moves_per_pass=40), c) == 40
    assert move_budget(Policy(max_moves_per_pass=0), c) == 0
    small = arrays(cluster_of(3, 4), Policy(max_moves_per_host=1))
    assert move_budget(Policy(max_moves_per_host=1), small) == 3  # 3 hosts, 1 out / 1 in each


def test_a_large_lumpy_cluster_gets_more_moves_than_the_fixed_search() -> None:
    """211 hosts of 5 VMs: the fixed search (8 source hosts, 16 moves) stops early."""
    snap = cluster_of(211, 5, seed=3)
    fixed = replace(Policy(), search_vms_per_step=0, max_moves_per_pass=16)
    scaled = plan(snap, Policy())
    old = plan(snap, fixed)
    assert len(old.moves) == 16 and len(scaled.moves) > 16
    assert scaled.imbalance_after < old.imbalance_after
    assert not violations(snap, scaled, Policy())


def test_the_destination_shortlist_finds_what_the_full_search_finds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On identical hosts the best destination is among the least loaded: scoring only
    those gives the same plan as scoring every host."""
    snap = cluster_of(150, 6, seed=5)
    short = plan(snap, Policy())
    monkeypatch.setattr(planner, "DESTINATIONS_PER_STEP", 10_000)
    full = plan(snap, Policy())
    assert short.moves and short == full


def test_when_every_cold_host_refuses_the_search_looks_wider() -> None:
    """100 hosts: the 98 light ones are full (their VM takes all 8 vCPUs the overcommit
    ratio allows), only h050, busier than the 32 least loaded, has room. The shortlist of
    cold hosts allows nothing: the full row is scored."""
    hosts = [HostState(f"h{i:03d}", 2.0, 65536.0) for i in range(100)]
    vms = [VmState(f"hot{k}", "h000", 0.5, 1024.0) for k in range(4)]
    for i in range(1, 100):
        roomy = i == 50
        vms.append(VmState(f"vm{i:03d}", f"h{i:03d}", 0.6 if roomy else 0.1 + 0.001 * i,
                           1024.0, vcpus=1 if roomy else 8))
    snap = ClusterSnapshot(hosts=tuple(hosts), vms=tuple(vms))
    result = plan(snap, Policy())
    assert [m.destination for m in result.moves if m.source == "h000"] == ["h050"]
    assert not violations(snap, result, Policy())


def test_a_plan_stopped_by_the_scaled_budget_says_so() -> None:
    """40 VMs on one of 20 hosts, no per-host limit in the way: the pass stops at its budget
    of 16 moves (below the operator's ceiling) and the note names the budget, not the
    setting."""
    hosts = tuple(HostState(f"h{i:02d}", 8.0, 65536.0) for i in range(20))
    vms = tuple(VmState(f"v{i}", "h00", 0.4, 512.0) for i in range(40))
    result = plan(ClusterSnapshot(hosts, vms), Policy(max_moves_per_host=100))
    assert len(result.moves) == 16
    assert any("this pass's budget of 16 moves" in n for n in result.notes), result.notes
