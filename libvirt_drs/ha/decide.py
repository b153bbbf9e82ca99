"""The pure decisions of HA: which hosts failed, in what order their VMs restart, and
where each goes (balancer.placement, with every VM placed before counted)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from libvirt_drs.balancer.model import ClusterSnapshot, Exclusion, Policy, VmState
from libvirt_drs.balancer.placement import place
from libvirt_drs.balancer.reasons import describe

PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class HostSeen:
    name: str
    last_seen_s: float | None  # the last successful poll; None: never polled


def failed(hosts: Iterable[HostSeen], now_s: float, grace_s: float) -> list[str]:
    """Hosts polled before but not for longer than `grace_s` (never-polled hosts are
    unknown, not failed)."""
    return [h.name for h in hosts
            if h.last_seen_s is not None and now_s - h.last_seen_s > grace_s]


@dataclass(frozen=True)
class Candidate:
    vm: str
    priority: str
    order: int
    cpu_cores: float  # the demand it had on its failed host
    mem_mib: float
    vcpus: int = 1


def restart_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (PRIORITY_RANK[c.priority], c.order, c.vm))


@dataclass(frozen=True)
class Placed:
    vm: str
    host: str | None  # None: waits (no allowed host can take it now)
    reason: str  # where and why, or why not
    excluded: tuple[Exclusion, ...] = ()


def with_running(snapshot: ClusterSnapshot, runs: Mapping[str, str],
                 mem_mib: Callable[[str], float]) -> ClusterSnapshot:
    """The snapshot with every VM where the hosts say it runs now (`runs`: VM -> host). The
    collected placement lags: a VM restarted in an earlier round may still be recorded on its
    failed host, or not at all, and its destination would look emptier than it is. A VM not
    in the snapshot counts with `mem_mib(vm)` and no CPU demand yet."""
    known = {v.name for v in snapshot.vms}
    vms = [replace(v, host=runs[v.name]) if v.name in runs and runs[v.name] != v.host else v
           for v in snapshot.vms]
    vms += [VmState(vm, host, 0.0, mem_mib(vm)) for vm, host in sorted(runs.items())
            if vm not in known]
    return replace(snapshot, vms=tuple(vms))


def place_restarts(snapshot: ClusterSnapshot, policy: Policy, candidates: Sequence[Candidate],
                   allowed_hosts: frozenset[str]) -> list[Placed]:
    """Each candidate in restart order on the host the placement prefers among
    `allowed_hosts`, the ones placed before it counted on their hosts."""
    # the candidates run nowhere now (their host is off): only where they are placed counts
    names = {c.vm for c in candidates}
    snap = replace(snapshot, vms=tuple(v for v in snapshot.vms if v.name not in names))
    out: list[Placed] = []
    for c in restart_order(candidates):
        p = place(snap, policy, c.vm, c.cpu_cores, c.mem_mib, c.vcpus, allowed_hosts)
        if p.best is None:
            out.append(Placed(c.vm, None, f"waits: no host can take it now: "
                                          f"{describe(list(p.excluded))}", p.excluded))
            continue
        host = p.best.host
        out.append(Placed(c.vm, host, f"{c.priority} priority: {host} (imbalance after "
                                      f"{p.best.imbalance_after:.3f})"))
        snap = replace(snap, vms=(*snap.vms, VmState(c.vm, host, c.cpu_cores, c.mem_mib,
                                                     vcpus=c.vcpus)))
    return out
