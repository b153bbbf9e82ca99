"""Initial placement: the best host for a VM that is not running yet (DRS at power-on,
ProxLB's "best node" as Terraform and Ansible ask for it).

The new VM is put on a pseudo host that is entering maintenance, so the planner's own
evacuation decides: every hard constraint (memory, vCPU overcommit, rules, the hosts the
caller allows) filters the hosts, and the host whose load after placement gives the
smallest imbalance (soft rules as penalties) wins. Hosts that cannot take it say why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from libvirt_drs.balancer.arrays import build_cluster
from libvirt_drs.balancer.constraints import allowed, exclusions, soft_penalty
from libvirt_drs.balancer.model import ClusterSnapshot, Exclusion, HostState, Policy, VmHostRule, VmState
from libvirt_drs.balancer.rules import resolve
from libvirt_drs.balancer.scoring import imbalance, moved_imbalance
from libvirt_drs.balancer.state import build_state

PSEUDO_HOST = "\x00incoming"  # no configured host can have this name (names are printable)


@dataclass(frozen=True)
class Candidate:
    host: str
    imbalance_after: float  # with the new VM there (soft-rule penalties included)
    cpu_load_after: float
    mem_load_after: float


@dataclass(frozen=True)
class Placement:
    vm: str
    best: Candidate | None  # None: no host can take it (see `excluded`)
    ranked: tuple[Candidate, ...]  # every host that can take it, best first
    excluded: tuple[Exclusion, ...]  # every host that cannot, with the first constraint
    imbalance_before: float


def place(snapshot: ClusterSnapshot, policy: Policy, name: str, cpu_cores: float, mem_mib: float,
          vcpus: int = 1, hosts: frozenset[str] | None = None) -> Placement:
    """Where a new VM `name` of `cpu_cores` demand and `mem_mib` memory would go now;
    `hosts`, if given, are the only hosts allowed (e.g. those with the wanted labels)."""
    pseudo = HostState(PSEUDO_HOST, cpu_cores=max(cpu_cores, 1.0), mem_mib=max(mem_mib, 1.0),
                       state="maintenance")
    vm = VmState(name, PSEUDO_HOST, cpu_cores=cpu_cores, mem_mib=mem_mib, vcpus=vcpus)
    rules = snapshot.rules
    if hosts is not None:
        allowed_hosts = tuple(sorted(h.name for h in snapshot.hosts if h.name in hosts))
        rules = replace(rules, vm_host=(*rules.vm_host, VmHostRule(
            "requested labels", "must", (name,), allowed_hosts or ("\x00none",))))
    # a VM of that name already in the snapshot (one being restarted after its host
    # failed) is the one placed here, not a second one
    others = tuple(v for v in snapshot.vms if v.name != name)
    snap = replace(snapshot, hosts=(*snapshot.hosts, pseudo), vms=(*others, vm), rules=rules)
    policy = replace(policy, copy_storage=True)  # its disks are created where it lands
    resolved = resolve(snap)
    vms = tuple(snap.vms[i] for i in resolved.vm_keep)
    cluster = build_cluster(snap, vms, policy, resolved.vm_host)
    state = build_state(cluster, resolved, policy)
    index = cluster.vm_names.index(name)
    one = np.array([index], dtype=np.int64)
    before = imbalance(cluster, policy)
    ok = allowed(state, one)[0]
    score = moved_imbalance(cluster, policy, one)[0] + soft_penalty(state, one)[0]
    cpu_cap = np.maximum(cluster.host_cpu_cores, 1e-9)
    mem_cap = np.maximum(cluster.host_mem_mib, 1e-9)
    ranked = sorted(
        (Candidate(cluster.host_names[h], float(score[h]),
                   float((cluster.host_cpu_cores_used[h] + cpu_cores) / cpu_cap[h]),
                   float((cluster.host_mem_demand_mib[h] + mem_mib) / mem_cap[h]))
         for h in np.flatnonzero(ok).tolist() if cluster.host_names[h] != PSEUDO_HOST),
        key=lambda c: (c.imbalance_after, c.host))
    excluded = tuple(e for e in exclusions(state, index)
                     if e.host != PSEUDO_HOST and e.host not in {c.host for c in ranked})
    return Placement(name, ranked[0] if ranked else None, tuple(ranked), excluded, before)
