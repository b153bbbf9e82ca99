"""Hard constraints, one function each: a boolean mask over (candidate VM, host).

True = the VM may move to that host. Registered explicitly in HARD_CONSTRAINTS (the
Nova filter idea, vectorised); `allowed()` ANDs them all. Soft rules are penalties.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from balancer.arrays import F64, I64, Bool
from balancer.state import PlanState

Constraint = Callable[[PlanState, I64], Bool]
T = TypeVar("T")


def eligible_destination(state: PlanState, vms: I64) -> Bool:
    """Not in maintenance, not stale."""
    return np.broadcast_to(state.cluster.host_eligible[None, :], (vms.size, state.cluster.n_hosts))


def memory_fits(state: PlanState, vms: I64) -> Bool:
    c = state.cluster
    free_mib = c.host_mem_mib - state.policy.mem_reserve_mib - c.host_mem_mib_used
    return c.vm_mem_mib[vms][:, None] <= free_mib[None, :]


def cpu_overcommit(state: PlanState, vms: I64) -> Bool:
    c = state.cluster
    limit = c.host_cpu_cores * state.policy.cpu_overcommit_ratio
    return (c.host_vcpus[None, :] + c.vm_vcpus[vms][:, None]) <= limit[None, :] + 1e-9


def cpu_compatible(state: PlanState, vms: I64) -> Bool:
    c = state.cluster
    return c.cpu_compat[c.vm_cpu_req_id[vms]][:, c.host_cpu_set_id]


def storage_reachable(state: PlanState, vms: I64) -> Bool:
    c = state.cluster
    if state.policy.copy_storage:
        return np.ones((vms.size, c.n_hosts), dtype=bool)
    return c.vm_storage_gid[vms][:, None] == c.host_storage_gid[None, :]


def _ruled(vms: I64, table: dict[int, list[T]]) -> list[tuple[int, list[T]]]:
    """(row, entries) for the candidate VMs that appear in `table`."""
    if not table:
        return []
    return [(k, table[v]) for k, v in enumerate(vms.tolist()) if v in table]


def anti_affinity(state: PlanState, vms: I64) -> Bool:
    mask = np.ones((vms.size, state.cluster.n_hosts), dtype=bool)
    for k, groups in _ruled(vms, state.vm_anti):
        v = int(vms[k])
        for g in groups:
            others = state.anti_counts[g].copy()
            others[state.cluster.vm_host[v]] -= 1
            mask[k] &= others == 0
    return mask


def vm_host_rules(state: PlanState, vms: I64) -> Bool:
    mask = np.ones((vms.size, state.cluster.n_hosts), dtype=bool)
    for k, rules in _ruled(vms, state.vm_rules):
        for rule in rules:
            if rule.kind == "must":
                mask[k] &= rule.hosts
            elif rule.kind == "must_not":
                mask[k] &= ~rule.hosts
    return mask


def not_back_within_cooldown(state: PlanState, vms: I64) -> Bool:
    """Anti ping-pong: a VM migrated within the cooldown never returns to where it came from."""
    c = state.cluster
    back = c.vm_cooling[vms][:, None] & (c.vm_last_source[vms][:, None]
                                         == np.arange(c.n_hosts)[None, :])
    return ~back


HARD_CONSTRAINTS: dict[str, Constraint] = {
    "eligible_destination": eligible_destination,
    "memory_fits": memory_fits,
    "cpu_overcommit": cpu_overcommit,
    "cpu_compatible": cpu_compatible,
    "storage_reachable": storage_reachable,
    "anti_affinity": anti_affinity,
    "vm_host_rules": vm_host_rules,
    "not_back_within_cooldown": not_back_within_cooldown,
}


def allowed(state: PlanState, vms: I64) -> Bool:
    """All hard constraints; moving to the current host is never a move."""
    c = state.cluster
    mask = c.vm_host[vms][:, None] != np.arange(c.n_hosts)[None, :]
    for constraint in HARD_CONSTRAINTS.values():
        mask = mask & constraint(state, vms)
    return mask


def soft_penalty(state: PlanState, vms: I64) -> F64:
    """Per (VM, host): soft_rule_penalty for each should / should-not rule broken there."""
    penalty = np.zeros((vms.size, state.cluster.n_hosts))
    unit = state.policy.soft_rule_penalty
    for k, rules in _ruled(vms, state.vm_rules):
        for rule in rules:
            if rule.kind == "should":
                penalty[k] += unit * ~rule.hosts
            elif rule.kind == "should_not":
                penalty[k] += unit * rule.hosts
    return penalty
