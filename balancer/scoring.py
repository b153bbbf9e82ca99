"""Host load, imbalance and the DRS target, plus the vectorised what-if of a move.

Terms (docs/balancer.md, Scoring): host load per resource = demand on the host / capacity;
imbalance = population standard deviation of host load over eligible hosts, combined over
CPU and memory as the weighted root of the variances.

`load_imbalance()` is the one definition of the imbalance: the planner, the service's
metrics (`snapshot_loads()`) and `drs status` (the store's measured loads) all call it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from libvirt_drs.balancer.arrays import F64, I64, Cluster, build_cluster
from libvirt_drs.balancer.model import ClusterSnapshot, Policy


def target_imbalance(aggressiveness: int, n_hosts: int) -> float:
    """DRS's published rule: 0.1 * (5 - L) / sqrt(N); level 1 never balances."""
    if aggressiveness <= 1:
        return math.inf
    return 0.1 * (5 - aggressiveness) / math.sqrt(max(n_hosts, 1))


def host_loads(cluster: Cluster) -> tuple[F64, F64]:
    """(cpu load, memory load) per host, 0..1+ of capacity."""
    cpu = cluster.host_cpu_cores_used / np.maximum(cluster.host_cpu_cores, 1e-9)
    mem = cluster.host_mem_demand_mib / np.maximum(cluster.host_mem_mib, 1e-9)
    return cpu, mem


def _weights(cpu_weight: float, mem_weight: float) -> tuple[float, float]:
    total = cpu_weight + mem_weight
    if total <= 0:
        return 1.0, 0.0
    return cpu_weight / total, mem_weight / total


def load_imbalance(cpu_load: npt.ArrayLike, mem_load: npt.ArrayLike, eligible: npt.ArrayLike,
                   cpu_weight: float, mem_weight: float) -> F64:
    """The cluster imbalance: sqrt(w_cpu * var(cpu load) + w_mem * var(mem load)) over the
    eligible hosts (last axis; leading axes are alternative placements), weights normalised
    to sum 1, population variance; 0 without any eligible host."""
    ok = np.asarray(eligible, dtype=bool)
    cpu = np.asarray(cpu_load, dtype=np.float64)
    if not ok.any():
        return np.zeros(cpu.shape[:-1])
    w_cpu, w_mem = _weights(cpu_weight, mem_weight)
    var = (w_cpu * np.var(cpu[..., ok], axis=-1)
           + w_mem * np.var(np.asarray(mem_load, dtype=np.float64)[..., ok], axis=-1))
    return np.sqrt(np.maximum(var, 0.0))


def imbalance(cluster: Cluster, policy: Policy) -> float:
    cpu, mem = host_loads(cluster)
    return float(load_imbalance(cpu, mem, cluster.host_eligible, policy.cpu_weight,
                                policy.mem_weight))


@dataclass(frozen=True)
class SnapshotLoads:
    """Per-host loads of a snapshot as the planner scores them (index-aligned with
    `hosts`), the VMs per host and the imbalance (combined and per resource)."""

    hosts: Sequence[str]
    cpu: F64
    mem: F64
    vms: I64
    eligible: npt.NDArray[np.bool_]
    imbalance: float
    imbalance_cpu: float
    imbalance_mem: float
    target: float


def snapshot_loads(snapshot: ClusterSnapshot, policy: Policy) -> SnapshotLoads:
    """The loads and imbalance the planner would start from (VMs on unknown hosts left out)."""
    index = {h.name: i for i, h in enumerate(snapshot.hosts)}
    vms = tuple(v for v in snapshot.vms if v.host in index)
    vm_host = np.array([index[v.host] for v in vms], dtype=np.int64)
    cluster = build_cluster(snapshot, vms, policy, vm_host)
    cpu, mem = host_loads(cluster)
    eligible = cluster.host_eligible
    return SnapshotLoads(
        hosts=cluster.host_names, cpu=cpu, mem=mem,
        vms=np.bincount(vm_host, minlength=cluster.n_hosts).astype(np.int64),
        eligible=eligible, imbalance=imbalance(cluster, policy),
        imbalance_cpu=float(load_imbalance(cpu, mem, eligible, 1.0, 0.0)),
        imbalance_mem=float(load_imbalance(cpu, mem, eligible, 0.0, 1.0)),
        target=target_imbalance(policy.aggressiveness, int(eligible.sum())))


def _moved_variance(load: F64, cap: F64, eligible: F64, amount: F64, src: I64,
                    dst: I64) -> F64:
    """Variance of `load` over eligible hosts after moving amount[k] from src[k] to each dst.

    `dst` is (j,): returns (k, j), column j is "VM k moved to host dst[j]"; or (k, 1): one
    destination per VM, returns (k, 1). dst == src: no change.
    """
    dst = dst[None, :] if dst.ndim == 1 else dst
    n = max(float(eligible.sum()), 1.0)
    l_e = load * eligible
    s1, s2 = float(l_e.sum()), float((l_e * load).sum())
    d_src = amount / cap[src]  # (k,)
    d_dst = amount[:, None] / cap[dst]
    l_src = load[src]
    e_src = eligible[src]
    s1_k = s1 - e_src * d_src
    s2_k = s2 + e_src * ((l_src - d_src) ** 2 - l_src**2)
    e_dst = eligible[dst]
    l_dst = load[dst]
    s1_new = s1_k[:, None] + e_dst * d_dst
    s2_new = s2_k[:, None] + e_dst * ((l_dst + d_dst) ** 2 - l_dst**2)
    var = s2_new / n - (s1_new / n) ** 2
    same = dst == src[:, None]
    base = s2 / n - (s1 / n) ** 2
    return np.where(same, base, np.maximum(var, 0.0))


def moved_imbalance(cluster: Cluster, policy: Policy, vms: I64, dst: I64 | None = None) -> F64:
    """Imbalance after moving each of `vms` to each host (or each of `dst`): (len(vms), hosts).
    A (len(vms), 1) `dst` gives one destination per VM: (len(vms), 1)."""
    if dst is None:
        dst = np.arange(cluster.n_hosts)
    cpu, mem = host_loads(cluster)
    eligible = cluster.host_eligible.astype(np.float64)
    src = cluster.vm_host[vms]
    w_cpu, w_mem = _weights(policy.cpu_weight, policy.mem_weight)
    var = np.zeros((vms.size, dst.shape[-1]))
    if w_cpu > 0:
        var += w_cpu * _moved_variance(cpu, cluster.host_cpu_cores, eligible,
                                       cluster.vm_cpu_cores[vms], src, dst)
    if w_mem > 0:
        var += w_mem * _moved_variance(mem, cluster.host_mem_mib, eligible,
                                       cluster.vm_mem_demand_mib[vms], src, dst)
    return np.sqrt(np.maximum(var, 0.0))  # the incremental form can round below 0


def host_risk(load: F64, var: F64, policy: Policy) -> F64:
    """Per host: squared excess of load + risk_z * spread over hot_load (0 when below)."""
    excess = load + policy.risk_z * np.sqrt(np.maximum(var, 0.0)) - policy.hot_load
    return np.asarray(np.maximum(excess, 0.0) ** 2)


def overload_probability(load: F64, var: F64) -> F64:
    """Per host: P(load > 1) if its demand is normal with mean `load` and variance `var`
    (both as fractions of capacity; the VMs' spreads taken as independent). A host with no
    spread is 1 above capacity and 0 at or below it."""
    load, var = np.asarray(load, dtype=np.float64), np.asarray(var, dtype=np.float64)
    sd = np.sqrt(np.maximum(var, 0.0))
    z = np.divide(1.0 - load, sd * math.sqrt(2.0), out=np.zeros_like(load), where=sd > 0)
    p = 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(z)
    return np.asarray(np.where(sd > 0, p, (load > 1.0).astype(np.float64)))


def risk_delta(cluster: Cluster, policy: Policy, vms: I64) -> F64:
    """Change in the summed host risk when each of `vms` moves to each host: (k, hosts)."""
    c = cluster
    cap = np.maximum(c.host_cpu_cores, 1e-9)
    load, var = c.host_cpu_cores_used / cap, c.host_cpu_var / cap**2
    src = c.vm_host[vms]
    d_load, d_var = c.vm_cpu_cores[vms], c.vm_cpu_var[vms]
    risk = host_risk(load, var, policy)
    src_after = host_risk(load[src] - d_load / cap[src], var[src] - d_var / cap[src] ** 2, policy)
    dst_after = host_risk(load[None, :] + d_load[:, None] / cap[None, :],
                          var[None, :] + d_var[:, None] / cap[None, :] ** 2, policy)
    delta = (src_after - risk[src])[:, None] + dst_after - risk[None, :]
    same = np.arange(c.n_hosts)[None, :] == src[:, None]
    return np.asarray(np.where(same, 0.0, delta))
