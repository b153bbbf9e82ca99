"""A synthetic cluster for `drs bench plan`: heterogeneous hosts, skewed placement,
lognormal VM demand and memory. Seeded, so a benchmark is repeatable."""

from __future__ import annotations

import numpy as np

from libvirt_drs.balancer.model import ClusterSnapshot, HostState, VmState

HOST_CORES = (32.0, 48.0, 64.0, 96.0)
HOST_MEM_MIB = (262144.0, 524288.0, 786432.0, 1048576.0)
VCPUS = (1, 2, 2, 4, 8)


def synthetic_cluster(n_hosts: int, n_vms: int, seed: int) -> ClusterSnapshot:
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(HOST_CORES), n_hosts)
    cores = np.array(HOST_CORES)[kind]
    mem = np.array(HOST_MEM_MIB)[kind]
    hosts = tuple(HostState(name=f"host{i:04d}", cpu_cores=float(cores[i]), mem_mib=float(mem[i]),
                            storage_group=f"sg{i % 4}" if n_hosts >= 8 else "default")
                  for i in range(n_hosts))
    # skew: a few hosts attract many more VMs than their size alone would give them
    weight = cores * rng.pareto(2.0, n_hosts).clip(0.05, 20.0)
    vm_mem = np.exp(rng.normal(np.log(2048.0), 0.7, n_vms)).clip(512.0, 65536.0).round()
    vcpus = np.array(VCPUS)[rng.integers(0, len(VCPUS), n_vms)]
    util = np.exp(rng.normal(np.log(0.2), 0.9, n_vms)).clip(0.0, 1.0)
    place = _place(rng, weight / weight.sum(), vm_mem, mem)
    vms = tuple(VmState(name=f"vm{j:06d}", host=hosts[int(place[j])].name,
                        cpu_cores=float(vcpus[j] * util[j]), mem_mib=float(vm_mem[j]),
                        vcpus=int(vcpus[j]), cpu_spread_cores=float(0.3 * vcpus[j] * util[j]),
                        dirty_mib_s=float(rng.exponential(20.0)))
                for j in range(n_vms))
    return ClusterSnapshot(hosts=hosts, vms=vms, now_s=0.0)


def _place(rng: np.random.Generator, prob: np.ndarray, vm_mem: np.ndarray,
           host_mem: np.ndarray) -> np.ndarray:
    """Skewed random placement; a VM that does not fit goes to the host with most free memory."""
    if prob.size == 0:
        return np.zeros(0, dtype=np.int64)
    place = rng.choice(prob.size, size=vm_mem.size, p=prob)
    used = np.bincount(place, vm_mem, minlength=prob.size)
    for j in np.flatnonzero(used[place] > host_mem[place]).tolist():
        h = int(place[j])
        if used[h] <= host_mem[h]:
            continue
        alt = int(np.argmax(host_mem - used))
        used[h] -= vm_mem[j]
        used[alt] += vm_mem[j]
        place[j] = alt
    return place
