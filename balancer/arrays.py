"""A ClusterSnapshot as index-aligned numpy arrays: what the masks and scores work on.

`Cluster` is the planner's working state; `vm_host`, `host_cpu_cores_used`,
`host_mem_mib_used` and `host_vcpus` change as moves are applied. Nothing else does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Policy, VmState

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

DEFAULT_BANDWIDTH_MIB_S = 1024.0


@dataclass
class Cluster:
    host_names: list[str]
    host_index: dict[str, int]
    host_cpu_cores: F64
    host_mem_mib: F64
    host_eligible: Bool
    host_stale: Bool
    host_max_out: I64
    host_max_in: I64
    host_storage_gid: I64
    host_cpu_set_id: I64
    vm_names: list[str]
    vm_host: I64
    vm_cpu_cores: F64
    vm_cpu_wait_cores: F64  # of vm_cpu_cores, what it waited for a CPU (contention)
    vm_cpu_var: F64  # squared spread, cores^2: variances add up per host
    vm_mem_mib: F64
    vm_mem_demand_mib: F64
    vm_vcpus: F64
    vm_cost_s: F64
    vm_storage_gid: I64
    vm_cpu_req_id: I64
    vm_cooling: Bool  # migrated within the cooldown
    vm_last_source: I64  # -1 = none
    cpu_compat: Bool  # (vm cpu requirement set, host cpu feature set) -> compatible
    host_cpu_cores_used: F64
    host_cpu_var: F64
    host_mem_mib_used: F64  # allocated memory, for the hard fit
    host_mem_demand_mib: F64  # memory demand, for the imbalance
    host_vcpus: F64
    # names behind the ids, for the reasons of VMs that cannot move (constraints.exclusions)
    storage_names: list[str]  # storage group id -> name
    host_cpu_sets: list[frozenset[str]]  # host_cpu_set_id -> CPU features offered
    vm_cpu_reqs: list[frozenset[str]]  # vm_cpu_req_id -> CPU features needed

    @property
    def n_hosts(self) -> int:
        return len(self.host_names)

    @property
    def n_vms(self) -> int:
        return len(self.vm_names)

    def apply_move(self, vm: int, dest: int) -> None:
        src = int(self.vm_host[vm])
        for used, amount in ((self.host_cpu_cores_used, self.vm_cpu_cores[vm]),
                             (self.host_cpu_var, self.vm_cpu_var[vm]),
                             (self.host_mem_mib_used, self.vm_mem_mib[vm]),
                             (self.host_mem_demand_mib, self.vm_mem_demand_mib[vm]),
                             (self.host_vcpus, self.vm_vcpus[vm])):
            used[src] -= amount
            used[dest] += amount
        self.vm_host[vm] = dest


def migration_cost_s(mem_mib: F64, dirty_mib_s: F64, bandwidth_mib_s: float) -> F64:
    """Pre-copy estimate: memory over the bandwidth left after re-sending dirtied pages.

    A VM dirtying memory nearly as fast as the link copies it barely converges; the
    effective rate is floored at a tenth of the bandwidth so the cost stays finite.
    """
    bw = bandwidth_mib_s if bandwidth_mib_s > 0 else DEFAULT_BANDWIDTH_MIB_S
    effective = np.maximum(bw - dirty_mib_s, 0.1 * bw)
    return np.asarray(mem_mib / effective, dtype=np.float64)


def _per_host(vm_host: I64, values: F64, n_hosts: int) -> F64:
    return np.bincount(vm_host, values, minlength=n_hosts).astype(np.float64)


def _ids(values: list[str]) -> tuple[I64, dict[str, int]]:
    table: dict[str, int] = {}
    ids = np.fromiter((table.setdefault(v, len(table)) for v in values), dtype=np.int64,
                      count=len(values))
    return ids, table


def _host_arrays(hosts: tuple[HostState, ...], policy: Policy) -> dict[str, object]:
    per_host = policy.max_moves_per_host
    return {
        "host_cpu_cores": np.array([h.cpu_cores for h in hosts], dtype=np.float64),
        "host_mem_mib": np.array([h.mem_mib for h in hosts], dtype=np.float64),
        "host_eligible": np.array([h.eligible for h in hosts], dtype=bool),
        "host_stale": np.array([h.stale for h in hosts], dtype=bool),
        "host_max_out": np.array([per_host if h.max_outgoing is None else h.max_outgoing
                                  for h in hosts], dtype=np.int64),
        "host_max_in": np.array([per_host if h.max_incoming is None else h.max_incoming
                                 for h in hosts], dtype=np.int64),
    }


def _features(key: str) -> frozenset[str]:
    return frozenset(filter(None, key.split(",")))


def _cpu_compat(hosts: tuple[HostState, ...], vms: tuple[VmState, ...],
                vm_host: I64) -> tuple[I64, I64, Bool, list[str], list[str]]:
    host_sets, host_table = _ids([",".join(sorted(h.cpu_features)) for h in hosts])
    vm_keys = [""] * len(vms)
    if any(h.cpu_features for h in hosts) or any(v.cpu_features for v in vms):
        vm_keys = [",".join(sorted(v.cpu_features)) if v.cpu_features is not None
                   else ",".join(sorted(hosts[int(vm_host[i])].cpu_features))
                   for i, v in enumerate(vms)]
    vm_sets, vm_table = _ids(vm_keys)
    compat = np.ones((len(vm_table), len(host_table)), dtype=bool)
    for vkey, vi in vm_table.items():
        need = _features(vkey)
        for hkey, hi in host_table.items():
            compat[vi, hi] = need <= _features(hkey)
    return host_sets, vm_sets, compat, list(host_table), list(vm_table)


def build_cluster(snapshot: ClusterSnapshot, vms: tuple[VmState, ...], policy: Policy,
                  vm_host: I64) -> Cluster:
    """Arrays for the hosts of `snapshot` and `vms` (the VMs rules.resolve kept), where
    `vm_host` holds each VM's host index."""
    hosts = snapshot.hosts
    host_index = {h.name: i for i, h in enumerate(hosts)}
    storage_ids, storage_table = _ids([h.storage_group for h in hosts])
    vm_storage = np.array([storage_table.setdefault(v.storage_group, len(storage_table))
                           if v.storage_group is not None else storage_ids[vm_host[i]]
                           for i, v in enumerate(vms)], dtype=np.int64)
    host_cpu_set, vm_cpu_req, compat, host_keys, vm_keys = _cpu_compat(hosts, vms, vm_host)
    n = len(vms)
    mem = np.fromiter((v.mem_mib for v in vms), dtype=np.float64, count=n)
    mem_demand = np.fromiter((v.mem_mib if v.mem_demand_mib is None else v.mem_demand_mib
                              for v in vms), dtype=np.float64, count=n)
    cpu = np.fromiter((v.cpu_cores for v in vms), dtype=np.float64, count=n)
    wait = np.fromiter((v.cpu_wait_cores for v in vms), dtype=np.float64, count=n)
    spread = np.fromiter((v.cpu_spread_cores for v in vms), dtype=np.float64, count=n)
    vcpus = np.fromiter((v.vcpus for v in vms), dtype=np.float64, count=n)
    dirty = np.fromiter((v.dirty_mib_s for v in vms), dtype=np.float64, count=n)
    now, cool = snapshot.now_s, policy.cooldown_s
    cooling = np.fromiter((v.last_migrated_s is not None and now - v.last_migrated_s < cool
                           for v in vms), dtype=bool, count=n)
    last_src = np.fromiter((host_index.get(v.last_source, -1) if v.last_source else -1
                            for v in vms), dtype=np.int64, count=n)
    h = len(hosts)
    arrays = _host_arrays(hosts, policy)
    return Cluster(
        host_names=[x.name for x in hosts], host_index=host_index,
        host_storage_gid=storage_ids, host_cpu_set_id=host_cpu_set,
        vm_names=[v.name for v in vms],
        vm_host=vm_host.copy(), vm_cpu_cores=cpu, vm_cpu_wait_cores=wait, vm_cpu_var=spread**2,
        vm_mem_mib=mem,
        vm_mem_demand_mib=mem_demand,
        vm_vcpus=vcpus, vm_cost_s=migration_cost_s(mem, dirty, policy.bandwidth_mib_s),
        vm_storage_gid=vm_storage, vm_cpu_req_id=vm_cpu_req, vm_cooling=cooling,
        vm_last_source=last_src, cpu_compat=compat,
        host_cpu_cores_used=_per_host(vm_host, cpu, h),
        host_cpu_var=_per_host(vm_host, spread**2, h),
        host_mem_mib_used=_per_host(vm_host, mem, h),
        host_mem_demand_mib=_per_host(vm_host, mem_demand, h),
        host_vcpus=_per_host(vm_host, vcpus, h),
        storage_names=list(storage_table),
        host_cpu_sets=[_features(k) for k in host_keys],
        vm_cpu_reqs=[_features(k) for k in vm_keys],
        **arrays,  # type: ignore[arg-type]
    )
