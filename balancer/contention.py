"""Contention figures: how long VMs wait for a host CPU (run-queue delay, steal time).

A VM's vCPUs wait when its host runs more runnable vCPUs than it has CPUs; libvirt reports
the wait per vCPU (`vcpu.<n>.delay`) and the collectors store it as cores waited. Two
figures come from it, the same for `drs status`, the metrics and the console:

- a VM's CPU wait ratio: cores waited / its vCPUs, the share of its vCPUs' time spent
  runnable but not running (vSphere calls it CPU ready; the guest sees it as steal);
- the cluster's CPU served ratio: CPU the VMs got / CPU they asked for (used + waited),
  1.0 when no VM waits (vSphere's DRS score grows from the same signal).
"""

from __future__ import annotations

from collections.abc import Iterable


def wait_ratio(wait_cores: float, vcpus: int) -> float:
    """Share of the VM's vCPU time spent waiting for a host CPU (0..1)."""
    return min(1.0, max(0.0, wait_cores) / max(vcpus, 1))


def host_wait_cores(vms: Iterable[tuple[str, float]]) -> dict[str, float]:
    """(host, cores waited) per VM -> host: the cores its VMs waited."""
    waits: dict[str, float] = {}
    for host, cores in vms:
        waits[host] = waits.get(host, 0.0) + cores
    return waits


def host_worst_wait(vms: Iterable[tuple[str, float, int]]) -> dict[str, float]:
    """(host, cores waited, vCPUs) per VM -> host: the highest wait ratio of its VMs."""
    worst: dict[str, float] = {}
    for host, cores, vcpus in vms:
        worst[host] = max(worst.get(host, 0.0), wait_ratio(cores, vcpus))
    return worst


def served_ratio(used_and_wait_cores: Iterable[tuple[float, float]]) -> float | None:
    """CPU served / CPU demanded over (used cores, waited cores) pairs; None with no
    demand at all."""
    used = waited = 0.0
    for u, w in used_and_wait_cores:
        used += max(0.0, u)
        waited += max(0.0, w)
    return used / (used + waited) if used + waited > 0 else None
