"""Small scenario builders for balancer tests: clusters as data, not as fixtures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Rules, VmState


def hosts(*specs: tuple[str, float, float], **kw: object) -> tuple[HostState, ...]:
    """hosts(("h1", cores, mem_mib), ...) with the same extra fields for all."""
    return tuple(HostState(name=n, cpu_cores=c, mem_mib=m, **kw) for n, c, m in specs)  # type: ignore[arg-type]


def vms(*specs: tuple[str, str, float, float]) -> tuple[VmState, ...]:
    """vms(("vm1", "h1", cpu_cores, mem_mib), ...)."""
    return tuple(VmState(name=n, host=h, cpu_cores=c, mem_mib=m) for n, h, c, m in specs)


def snapshot(host_states: Iterable[HostState], vm_states: Sequence[VmState],
             rules: Rules | None = None, now_s: float = 0.0) -> ClusterSnapshot:
    return ClusterSnapshot(hosts=tuple(host_states), vms=tuple(vm_states),
                           rules=rules or Rules(), now_s=now_s)


def skewed(n_hosts: int = 3, n_vms: int = 6, cpu: float = 1.0, mem: float = 1024.0,
           cores: float = 8.0, host_mem: float = 16384.0) -> ClusterSnapshot:
    """Every VM on the first host: the simplest unbalanced cluster."""
    hs = hosts(*((f"h{i}", cores, host_mem) for i in range(n_hosts)))
    return snapshot(hs, vms(*((f"vm{j}", "h0", cpu, mem) for j in range(n_vms))))
