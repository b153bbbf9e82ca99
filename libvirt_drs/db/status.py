"""Read side of the samples: current hosts and VMs, demand history, cluster imbalance.

This is the API the balancer snapshot, `drs status` and the metrics use:

- `load_hosts(engine, now_s, window_s, stale_after_s)` -> [HostView]: capacity, CPU
  model/features, staleness (flagged by the collector, or no poll within stale_after_s
  of now_s), maintenance state, and the mean load over the window_s before the host's
  last successful poll (so a stale host shows its last known load, flagged stale).
- `load_vms(engine, now_s, window_s)` -> [VmView]: current inventory with mean demand
  over the window before its host's last successful poll.
- `cluster_imbalance(hosts, cpu_weight, mem_weight)` and `target_imbalance(...)`: the
  balancer's own definitions (balancer.scoring) applied to the measured loads.

`now_s` bounds every read: samples after it are not counted, so the window ends at the
host's last successful poll or at `now_s`, whichever is earlier.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, case, func, select

from libvirt_drs.balancer.contention import wait_ratio
from libvirt_drs.balancer.model import host_eligible
from libvirt_drs.balancer.scoring import load_imbalance
from libvirt_drs.balancer.scoring import target_imbalance as core_target
from libvirt_drs.db.models import Host, HostSample, HostStateRow, Vm, VmSample
from libvirt_drs.db.snapshot import cpu_features, host_stale

__all__ = ["HostView", "VmView", "cluster_imbalance", "cpu_features", "load_hosts", "load_vms",
           "target_imbalance"]


@dataclass(frozen=True)
class HostView:
    name: str
    uri: str
    cpu_cores: float | None  # capacity in use (config override, else libvirt)
    mem_mib: int | None
    cpu_model: str | None
    cpu_features: frozenset[str]
    group: str
    storage_group: str
    state: str  # active | maintenance (host_states)
    stale: bool  # collector flagged it, or no poll within stale_after_s
    last_error: str | None
    last_seen_s: float | None
    cpu_load: float | None  # mean over the window ending at last_seen_s, fraction of capacity
    mem_load: float | None
    cpu_cores_used: float | None
    mem_used_mib: float | None
    vms: int

    @property
    def eligible(self) -> bool:
        return host_eligible(self.state, self.stale)


@dataclass(frozen=True)
class VmView:
    uuid: str
    name: str
    host: str | None
    state: str
    vcpus: int
    mem_mib: int  # configured memory
    cpu_cores: float | None  # mean over the window
    mem_used_mib: float | None
    last_migrated_s: float | None
    cpu_wait_cores: float | None = None  # mean cores waited for a CPU; None: unreported
    swap_in_kib_s: float | None = None  # mean guest swap-in; None: the guest reports none

    @property
    def cpu_wait(self) -> float | None:
        """Share of its vCPU time spent waiting for a host CPU (balancer.contention)."""
        return None if self.cpu_wait_cores is None else wait_ratio(self.cpu_wait_cores,
                                                                   self.vcpus)


def _window_end(now_s: float) -> Any:
    """The end of a host's sample window: its last successful poll, bounded by now_s."""
    return case((Host.last_seen_s > now_s, now_s), else_=Host.last_seen_s)


def load_hosts(engine: Engine, now_s: float, window_s: float,
               stale_after_s: float) -> list[HostView]:
    with engine.connect() as conn:
        loads = {hid: row for hid, *row in conn.execute(
            select(HostSample.host_id, func.avg(HostSample.cpu_load), func.avg(HostSample.mem_load),
                   func.avg(HostSample.cpu_cores_used), func.avg(HostSample.mem_used_mib))
            .join(Host, Host.id == HostSample.host_id)
            .where(HostSample.ts_s >= _window_end(now_s) - window_s, HostSample.ts_s <= now_s)
            .group_by(HostSample.host_id))}
        counts = dict(conn.execute(select(Vm.host_id, func.count()).where(
            Vm.gone_s.is_(None), Vm.host_id.is_not(None)).group_by(Vm.host_id)).all())
        states = dict(conn.execute(select(HostStateRow.host_name, HostStateRow.state)).all())
        hosts = conn.execute(select(Host.__table__).order_by(Host.name)).all()
    out = []
    for h in hosts:
        cpu, mem, cores, mib = loads.get(h.id, (None, None, None, None))
        out.append(HostView(
            name=h.name, uri=h.uri, cpu_cores=h.cpu_cores, mem_mib=h.mem_mib,
            cpu_model=h.cpu_model, cpu_features=cpu_features(h.cpu_xml), group=h.host_group,
            storage_group=h.storage_group, state=states.get(h.name, "active"),
            stale=host_stale(bool(h.stale), h.last_seen_s, now_s, stale_after_s),
            last_error=h.last_error,
            last_seen_s=h.last_seen_s, cpu_load=_f(cpu), mem_load=_f(mem),
            cpu_cores_used=_f(cores), mem_used_mib=_f(mib), vms=int(counts.get(h.id, 0))))
    return out


def load_vms(engine: Engine, now_s: float, window_s: float) -> list[VmView]:
    """VMs not gone, with their mean demand over the window ending at their host's last
    successful poll (None without samples). One query: 10,000 VMs in about 50 ms."""
    means = (
        select(VmSample.vm_id.label("vm_id"), func.avg(VmSample.cpu_cores).label("cpu"),
               func.avg(VmSample.mem_used_mib).label("mem"),
               func.avg(VmSample.cpu_wait_cores).label("wait"),
               func.avg(VmSample.swap_in_kib_s).label("swap_in"))
        .join(Vm, Vm.id == VmSample.vm_id).join(Host, Host.id == Vm.host_id)
        .where(Vm.gone_s.is_(None), VmSample.ts_s >= _window_end(now_s) - window_s,
               VmSample.ts_s <= now_s)
        .group_by(VmSample.vm_id).subquery())
    query = (select(Vm.uuid, Vm.name, Host.name, Vm.state, Vm.vcpus, Vm.mem_mib, means.c.cpu,
                    means.c.mem, Vm.last_migrated_s, means.c.wait, means.c.swap_in)
             .join(Host, Vm.host_id == Host.id, isouter=True)
             .join(means, means.c.vm_id == Vm.id, isouter=True)
             .where(Vm.gone_s.is_(None)).order_by(Vm.name))
    with engine.connect() as conn:
        return [VmView(u, n, h, st, vc, mm, _f(c), _f(m), lm, _f(w), _f(si))
                for u, n, h, st, vc, mm, c, m, lm, w, si in conn.execute(query)]


def cluster_imbalance(hosts: Iterable[HostView], cpu_weight: float,
                      mem_weight: float) -> float | None:
    """balancer.scoring.load_imbalance over the measured loads of the eligible hosts;
    None when no eligible host has loads."""
    loads = [(h.cpu_load, h.mem_load) for h in hosts
             if h.eligible and h.cpu_load is not None and h.mem_load is not None]
    if not loads:
        return None
    cpu, mem = zip(*loads, strict=True)
    return float(load_imbalance(cpu, mem, [True] * len(loads), cpu_weight, mem_weight))


def target_imbalance(aggressiveness: int, n_hosts: int) -> float | None:
    """balancer.scoring.target_imbalance (docs/balancer.md, Scoring); None for level 1
    (never balances)."""
    value = core_target(aggressiveness, n_hosts)
    return value if math.isfinite(value) else None


def _f(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
