"""High availability as operations: what is protected and what happened (`drs ha
status`), an operator's confirmation that a host is off (`drs ha fenced`, when its fence
command failed), and putting a repaired host back in service (`drs ha clear`)."""

from __future__ import annotations

from dataclasses import dataclass

from libvirt_drs.db import ha as store
from libvirt_drs.ha.job import record_fenced
from libvirt_drs.migrator.hypervisor import DomainRunState, Hypervisor, HypervisorError
from libvirt_drs.operations import reads
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Conflict, NotFound


@dataclass(frozen=True)
class Protected:
    vm: str
    group: str
    priority: str
    order: int
    host: str | None  # where the collector last saw it
    definition_saved_s: float | None  # None: it cannot be restarted elsewhere yet


@dataclass(frozen=True)
class HaStatus:
    enabled: bool
    protected: tuple[Protected, ...]
    hosts: tuple[store.HaHostRecord, ...]
    restarts: tuple[store.RestartRecord, ...]


def status(cl: Cluster, caller: Caller, restarts: int = 50) -> HaStatus:
    require(caller, Role.VIEWER, "read the HA status")
    where = {v.name: v.host for v in reads.vm_list(cl, caller)}
    defs = store.definitions(cl.engine)
    protected = tuple(Protected(vm, g.name, g.priority, g.order, where.get(vm),
                                defs[vm][2] if vm in defs else None)
                      for g in cl.cfg.ha.groups for vm in g.vms)
    return HaStatus(cl.cfg.ha.enabled, protected, tuple(store.hosts(cl.engine).values()),
                    tuple(store.restarts(cl.engine, limit=restarts)))


def confirm_fenced(cl: Cluster, caller: Caller, host: str) -> list[str]:
    """The operator says `host` is off (its fence command failed and they powered it off):
    its protected VMs are restarted elsewhere. Refused for a host that is not suspected."""
    require(caller, Role.OPERATOR, "confirm a host is fenced")
    cl.host(host)
    state = store.hosts(cl.engine).get(host)
    if state is None or state.state not in ("suspected", "fence_failed"):
        raise Conflict(f"{host} is not suspected by HA (state: "
                       f"{state.state if state else 'ok'}): nothing to confirm", "not_suspected")
    return record_fenced(cl.cfg, cl.engine, host, f"confirmed off by {caller.name}", cl.clock(),
                         caller.name)


def clear(cl: Cluster, caller: Caller, host: str) -> list[str]:
    """Put a repaired host back in service: it must answer; the definitions it still holds
    of protected VMs that now run elsewhere are removed (so that nobody starts them twice
    there); it leaves maintenance. Returns the removed definitions."""
    require(caller, Role.OPERATOR, "clear hosts after HA")
    cl.host(host)
    state = store.hosts(cl.engine).get(host)
    if state is None:
        raise NotFound(f"{host} has no HA state to clear")
    hv = cl.migrator.hv
    try:
        hv.host_facts(host)
    except HypervisorError as exc:
        raise Conflict(f"{host} does not answer ({exc}): repair it first", "host_unreachable") \
            from None
    removed = []
    for g in cl.cfg.ha.groups:
        for vm in g.vms:
            elsewhere = [h.name for h in cl.cfg.hosts if h.name != host
                         and _running(hv, h.name, vm)]
            if elsewhere and hv.remove_leftover(host, vm):  # never a running domain
                removed.append(vm)
    store.clear_host(cl.engine, host, cl.clock(), caller.name,
                     "back in service" + (f"; removed stale definitions of {', '.join(removed)}"
                                          if removed else ""))
    cl.migrator.store.set_host_state(host, "active", None)
    return removed


def _running(hv: Hypervisor, host: str, vm: str) -> bool:
    try:
        dom = hv.domain(host, vm)
    except HypervisorError:
        return False
    return dom is not None and dom.state is DomainRunState.RUNNING
