"""Exact re-planning of tiny clusters: every placement reachable with the same number of
balancing moves greedy made, scored at once as arrays; the best one whose moves can be
applied one by one under every hard constraint wins.

Used only when hosts ** movable VMs is at most MAX_PLACEMENTS, where one VM is a large
share of a host and greedy's myopia costs most.
"""

from __future__ import annotations

import itertools

import numpy as np

from libvirt_drs.balancer.arrays import F64, I64, Bool
from libvirt_drs.balancer.constraints import apply_in_order, soft_penalty
from libvirt_drs.balancer.scoring import load_imbalance
from libvirt_drs.balancer.state import PlanState

MAX_PLACEMENTS = 20000


def _placements(home: I64, n_hosts: int, max_moves: int) -> I64:
    """(P, movable) host indices of every placement moving at most max_moves VMs."""
    grid = np.array(list(itertools.product(range(n_hosts), repeat=home.size)), dtype=np.int64)
    return grid[(grid != home[None, :]).sum(axis=1) <= max_moves]


def _scores(state: PlanState, vms: I64, grid: I64, ceiling: float) -> F64:
    """Imbalance plus soft-rule penalties of every placement in `grid` (inf where the
    imbalance alone would exceed `ceiling`)."""
    c, p = state.cluster, state.policy
    one_hot = np.zeros((grid.shape[0], vms.size, c.n_hosts))
    np.put_along_axis(one_hot, grid[:, :, None], 1.0, axis=2)
    base_cpu = c.host_cpu_cores_used - np.bincount(c.vm_host[vms], c.vm_cpu_cores[vms],
                                                   minlength=c.n_hosts)
    base_mem = c.host_mem_demand_mib - np.bincount(c.vm_host[vms], c.vm_mem_demand_mib[vms],
                                                   minlength=c.n_hosts)
    cpu = (base_cpu[None, :] + np.einsum("pvh,v->ph", one_hot, c.vm_cpu_cores[vms])) \
        / np.maximum(c.host_cpu_cores, 1e-9)
    mem = (base_mem[None, :] + np.einsum("pvh,v->ph", one_hot, c.vm_mem_demand_mib[vms])) \
        / np.maximum(c.host_mem_mib, 1e-9)
    imb = load_imbalance(cpu, mem, c.host_eligible, p.cpu_weight, p.mem_weight)
    penalty = soft_penalty(state, vms)[np.arange(vms.size)[None, :], grid].sum(axis=1)
    return np.asarray(np.where(imb <= ceiling + 1e-12, imb + penalty, np.inf))


def exact(state: PlanState, moves: dict[int, int], candidates: Bool,
          ceiling: float) -> dict[int, int]:
    """Best placement with at most len(moves) balancing moves and an imbalance at most
    `ceiling`; `moves` (VM -> source, already applied) is kept when nothing better can be
    applied."""
    c = state.cluster
    vms = np.flatnonzero(candidates | np.isin(np.arange(c.n_vms), list(moves)))
    if not moves or vms.size == 0 or c.n_hosts ** vms.size > MAX_PLACEMENTS:
        return moves
    current = _scores(state, vms, c.vm_host[vms][None, :], np.inf)[0]
    dests = {vm: int(c.vm_host[vm]) for vm in moves}
    for vm, src in moves.items():
        state.revert(vm, src)
    grid = _placements(c.vm_host[vms], c.n_hosts, len(moves))
    scores = _scores(state, vms, grid, ceiling)
    for k in np.argsort(scores, kind="stable").tolist():
        if scores[k] >= current - 1e-12:
            break
        done = apply_in_order(state, {int(v): int(t) for v, t in zip(vms, grid[k], strict=True)})
        if done is not None:
            return done
    for vm in moves:  # the placement it was given (refine and greedy keep theirs orderable)
        state.apply(vm, dests[vm])
    return moves
