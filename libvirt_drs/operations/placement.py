"""Initial placement as an operation: the best host for a VM of this CPU and memory,
with these host labels (balancer.placement decides; this reads the cluster for it)."""

from __future__ import annotations

from libvirt_drs.balancer.placement import Placement, place
from libvirt_drs.db.snapshot import load_snapshot
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Invalid, NotFound


def best_host(cl: Cluster, caller: Caller, cpu_cores: float, mem_mib: float,
              labels: tuple[str, ...] = (), vcpus: int = 1, name: str = "new-vm") -> Placement:
    require(caller, Role.VIEWER, "ask for a placement")
    cl.require_hosts()
    if not cpu_cores >= 0:
        raise Invalid("cpu_cores must be >= 0", "cpu_cores")
    if not mem_mib > 0:
        raise Invalid("mem_mib must be > 0", "mem_mib")
    if vcpus < 1:
        raise Invalid("vcpus must be >= 1", "vcpus")
    hosts = None
    if labels:
        hosts = frozenset(h.name for h in cl.cfg.hosts if set(labels) <= set(h.labels))
        if not hosts:
            known = sorted({x for h in cl.cfg.hosts for x in h.labels})
            raise NotFound(f"no host has the labels {', '.join(labels)} (labels in use: "
                           f"{', '.join(known) or 'none'})")
    snapshot = load_snapshot(cl.engine, cl.cfg, cl.clock())
    return place(snapshot, cl.cfg.balancer.policy, name, cpu_cores, mem_mib, vcpus, hosts)
