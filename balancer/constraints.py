"""Hard constraints, one function each: a boolean mask over (candidate VM, host).

True = the VM may move to that host. Registered explicitly in HARD_CONSTRAINTS (the
Nova filter idea, vectorised); `allowed()` ANDs them all. Soft rules are penalties.

When no host can take a VM, `exclusions()` replays the masks for that VM alone and keeps,
per host, the first constraint that excluded it with its numbers (Nova's filter handler
logs how many hosts each filter removed); `reasons.describe()` makes the operator's
sentence.
Only VMs that end up unmovable pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from libvirt_drs.balancer.arrays import F64, I64, Bool
from libvirt_drs.balancer.model import Exclusion
from libvirt_drs.balancer.reasons import ineligible, vm_host_rule
from libvirt_drs.balancer.state import PlanState

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


Explain = Callable[[PlanState, int, int], str]


def apply_in_order(state: PlanState, dests: dict[int, int]) -> dict[int, int] | None:
    """Apply the moves (VM -> destination) one by one, each only when every hard constraint
    and the per-host move limits allow it at that point (a move may wait for another to free
    room); returns VM -> source host, or undoes what it applied and returns None when no such
    order exists."""
    c = state.cluster
    pending = [(vm, dest) for vm, dest in dests.items() if int(c.vm_host[vm]) != dest]
    done: dict[int, int] = {}
    while pending:
        for i, (vm, dest) in enumerate(pending):
            src = int(c.vm_host[vm])
            if bool(allowed(state, np.array([vm]))[0, dest]) \
                    and state.in_count[dest] < c.host_max_in[dest] \
                    and state.out_count[src] < c.host_max_out[src]:
                done[vm] = src
                state.apply(vm, dest)
                pending.pop(i)
                break
        else:
            for vm, src in done.items():
                state.revert(vm, src)
            return None
    return done


def _why_ineligible(state: PlanState, _vm: int, host: int) -> str:
    return ineligible(bool(state.cluster.host_stale[host]))


def _why_memory(state: PlanState, vm: int, host: int) -> str:
    c, reserve = state.cluster, state.policy.mem_reserve_mib
    free = c.host_mem_mib[host] - reserve - c.host_mem_mib_used[host]
    kept = f" after the {reserve:.0f} MiB reserve" if reserve else ""
    return f"memory (needs {c.vm_mem_mib[vm]:.0f} MiB, {max(free, 0.0):.0f} free{kept})"


def _why_cpu(state: PlanState, vm: int, host: int) -> str:
    c, ratio = state.cluster, state.policy.cpu_overcommit_ratio
    limit = c.host_cpu_cores[host] * ratio
    return (f"cpu (needs {c.vm_vcpus[vm]:.0f} vCPU, {max(limit - c.host_vcpus[host], 0.0):.0f} "
            f"of {limit:.0f} free at overcommit {ratio:g})")


def _why_features(state: PlanState, vm: int, host: int) -> str:
    c = state.cluster
    missing = c.vm_cpu_reqs[c.vm_cpu_req_id[vm]] - c.host_cpu_sets[c.host_cpu_set_id[host]]
    return f"cpu features (lacks {', '.join(sorted(missing))})"


def _why_storage(state: PlanState, vm: int, host: int) -> str:
    c = state.cluster
    return (f"storage group {c.storage_names[c.host_storage_gid[host]]!r} (disks in "
            f"{c.storage_names[c.vm_storage_gid[vm]]!r}, copy_storage off)")


def _why_anti_affinity(state: PlanState, vm: int, host: int) -> str:
    c = state.cluster
    for g in state.vm_anti.get(vm, ()):
        group = state.rules.anti_affinity[g]
        there = [c.vm_names[o] for o in group.vms.tolist() if o != vm and c.vm_host[o] == host]
        if there:
            return f"anti-affinity {group.name!r} (with {', '.join(there)})"
    return "anti-affinity"


def _why_vm_host(state: PlanState, vm: int, host: int) -> str:
    c = state.cluster
    for rule in state.vm_rules.get(vm, ()):
        if (rule.kind == "must" and not rule.hosts[host]) or (
                rule.kind == "must_not" and rule.hosts[host]):
            named = [c.host_names[h] for h in np.flatnonzero(rule.hosts).tolist()]
            return vm_host_rule(rule.name, rule.kind, named)
    return "vm-host rule"


def _why_cooldown(state: PlanState, _vm: int, _host: int) -> str:
    return f"cooldown (left it less than {state.policy.cooldown_s:.0f} s ago)"


EXPLAIN: dict[str, Explain] = {
    "eligible_destination": _why_ineligible,
    "memory_fits": _why_memory,
    "cpu_overcommit": _why_cpu,
    "cpu_compatible": _why_features,
    "storage_reachable": _why_storage,
    "anti_affinity": _why_anti_affinity,
    "vm_host_rules": _why_vm_host,
    "not_back_within_cooldown": _why_cooldown,
}


def exclusions(state: PlanState, vm: int, only: int | None = None) -> list[Exclusion]:
    """Per host other than the VM's own (or only host `only`), the first hard constraint
    that excludes it, in HARD_CONSTRAINTS order; hosts that may take the VM are left out."""
    c = state.cluster
    vms = np.array([vm], dtype=np.int64)
    open_ = np.arange(c.n_hosts) != c.vm_host[vm]
    if only is not None:
        open_ &= np.arange(c.n_hosts) == only
    out: list[tuple[int, Exclusion]] = []
    for name, constraint in HARD_CONSTRAINTS.items():
        hit = open_ & ~constraint(state, vms)[0]
        for h in np.flatnonzero(hit).tolist():
            out.append((h, Exclusion(c.host_names[h], name, EXPLAIN[name](state, vm, h))))
        open_ &= ~hit
        if not open_.any():
            break
    return [e for _, e in sorted(out, key=lambda item: item[0])]


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
