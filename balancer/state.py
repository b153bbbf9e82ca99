"""The planner's working state for one pass: the cluster arrays plus rule lookups and
per-host move counters. Built once per plan() call, mutated only through apply()."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libvirt_drs.balancer.arrays import I64, Bool, Cluster
from libvirt_drs.balancer.model import Policy
from libvirt_drs.balancer.rules import HostRule, Resolved


@dataclass
class PlanState:
    cluster: Cluster
    rules: Resolved
    policy: Policy
    out_count: I64  # moves per host as source this pass
    in_count: I64  # moves per host as destination this pass
    anti_counts: I64  # (anti-affinity groups, hosts) members per host
    vm_anti: dict[int, list[int]]  # VM -> anti-affinity group indices
    vm_rules: dict[int, list[HostRule]]  # VM -> its vm-host rules (all kinds)
    in_affinity: Bool  # member of an affinity group: moved only to restore it

    def apply(self, vm: int, dest: int) -> None:
        src = int(self.cluster.vm_host[vm])
        for g in self.vm_anti.get(vm, ()):
            self.anti_counts[g, src] -= 1
            self.anti_counts[g, dest] += 1
        self.cluster.apply_move(vm, dest)
        self.out_count[src] += 1
        self.in_count[dest] += 1

    def revert(self, vm: int, source: int) -> None:
        """Undo a move of `vm` from `source`: counts as if it had never been planned."""
        dest = int(self.cluster.vm_host[vm])
        for g in self.vm_anti.get(vm, ()):
            self.anti_counts[g, dest] -= 1
            self.anti_counts[g, source] += 1
        self.cluster.apply_move(vm, source)
        self.out_count[source] -= 1
        self.in_count[dest] -= 1


def build_state(cluster: Cluster, rules: Resolved, policy: Policy) -> PlanState:
    n_hosts = cluster.n_hosts
    anti = np.zeros((len(rules.anti_affinity), n_hosts), dtype=np.int64)
    vm_anti: dict[int, list[int]] = {}
    for g, group in enumerate(rules.anti_affinity):
        np.add.at(anti[g], cluster.vm_host[group.vms], 1)
        for v in group.vms.tolist():
            vm_anti.setdefault(v, []).append(g)
    vm_rules: dict[int, list[HostRule]] = {}
    for rule in rules.host_rules:
        for v in rule.vms.tolist():
            vm_rules.setdefault(v, []).append(rule)
    in_affinity = np.zeros(cluster.n_vms, dtype=bool)
    for group in rules.affinity:
        in_affinity[group.vms] = True
    return PlanState(cluster=cluster, rules=rules, policy=policy,
                     out_count=np.zeros(n_hosts, dtype=np.int64),
                     in_count=np.zeros(n_hosts, dtype=np.int64),
                     anti_counts=anti, vm_anti=vm_anti, vm_rules=vm_rules,
                     in_affinity=in_affinity)
