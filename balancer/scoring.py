"""Host load, imbalance and the DRS target, plus the vectorised what-if of a move.

Terms (DESIGN.md): host load per resource = demand on the host / capacity; imbalance =
population standard deviation of host load over eligible hosts, combined over CPU and
memory as the weighted root of the variances.
"""

from __future__ import annotations

import math

import numpy as np

from balancer.arrays import F64, I64, Cluster
from balancer.model import Policy


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


def _weights(policy: Policy) -> tuple[float, float]:
    total = policy.cpu_weight + policy.mem_weight
    if total <= 0:
        return 1.0, 0.0
    return policy.cpu_weight / total, policy.mem_weight / total


def imbalance(cluster: Cluster, policy: Policy) -> float:
    eligible = cluster.host_eligible
    if not eligible.any():
        return 0.0
    cpu, mem = host_loads(cluster)
    w_cpu, w_mem = _weights(policy)
    var = w_cpu * float(np.var(cpu[eligible])) + w_mem * float(np.var(mem[eligible]))
    return math.sqrt(max(var, 0.0))


def _moved_variance(load: F64, cap: F64, eligible: F64, amount: F64, src: I64,
                    dst: I64) -> F64:
    """Variance of `load` over eligible hosts after moving amount[k] from src[k] to each dst.

    Returns a (k, len(dst)) array; column j is "VM k moved to host dst[j]" (dst == src: no
    change).
    """
    n = max(float(eligible.sum()), 1.0)
    l_e = load * eligible
    s1, s2 = float(l_e.sum()), float((l_e * load).sum())
    d_src = amount / cap[src]  # (k,)
    d_dst = amount[:, None] / cap[dst][None, :]  # (k, len(dst))
    l_src = load[src]
    e_src = eligible[src]
    s1_k = s1 - e_src * d_src
    s2_k = s2 + e_src * ((l_src - d_src) ** 2 - l_src**2)
    e_dst = eligible[dst][None, :]
    l_dst = load[dst][None, :]
    s1_new = s1_k[:, None] + e_dst * d_dst
    s2_new = s2_k[:, None] + e_dst * ((l_dst + d_dst) ** 2 - l_dst**2)
    var = s2_new / n - (s1_new / n) ** 2
    same = dst[None, :] == src[:, None]
    base = s2 / n - (s1 / n) ** 2
    return np.where(same, base, np.maximum(var, 0.0))


def moved_imbalance(cluster: Cluster, policy: Policy, vms: I64, dst: I64 | None = None) -> F64:
    """Imbalance after moving each of `vms` to each host (or each of `dst`): (len(vms), hosts)."""
    if dst is None:
        dst = np.arange(cluster.n_hosts)
    cpu, mem = host_loads(cluster)
    eligible = cluster.host_eligible.astype(np.float64)
    src = cluster.vm_host[vms]
    w_cpu, w_mem = _weights(policy)
    var = np.zeros((vms.size, dst.size))
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
