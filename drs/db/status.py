"""Read side of the samples: current hosts and VMs, demand history, cluster imbalance.

This is the API the balancer snapshot, `drs status` and the metrics use:

- `load_hosts(engine, now_s, window_s, stale_after_s)` -> [HostView]: capacity, CPU
  model/features, staleness (flagged by the collector, or no poll within stale_after_s
  of now_s), maintenance state, and the mean load over the window_s before the host's
  last successful poll (so a stale host shows its last known load, flagged stale).
- `load_vms(engine, now_s, window_s)` -> [VmView]: current inventory with mean demand
  over the window before its host's last successful poll.
- `load_vm_demand(engine, since_s, until_s)` -> {uuid: DemandSeries}: raw samples per VM,
  oldest first (`rollups=True`: the 5-minute averages instead, for long windows).
- `cluster_imbalance(hosts, cpu_weight, mem_weight)` and `target_imbalance(...)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from drs.db.models import Host, HostSample, HostState, Vm, VmSample, VmSampleRollup
from drs.db.snapshot import cpu_features


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
        return self.state == "active" and not self.stale


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


@dataclass(frozen=True)
class DemandSeries:
    uuid: str
    ts_s: list[float] = field(default_factory=list)
    cpu_cores: list[float] = field(default_factory=list)
    mem_used_mib: list[float] = field(default_factory=list)
    host_ids: list[int] = field(default_factory=list)


def load_hosts(engine: Engine, now_s: float, window_s: float,
               stale_after_s: float) -> list[HostView]:
    with engine.connect() as conn:
        loads = {hid: row for hid, *row in conn.execute(
            select(HostSample.host_id, func.avg(HostSample.cpu_load), func.avg(HostSample.mem_load),
                   func.avg(HostSample.cpu_cores_used), func.avg(HostSample.mem_used_mib))
            .join(Host, Host.id == HostSample.host_id)
            .where(HostSample.ts_s >= Host.last_seen_s - window_s)
            .group_by(HostSample.host_id))}
        counts = dict(conn.execute(select(Vm.host_id, func.count()).where(
            Vm.gone_s.is_(None), Vm.host_id.is_not(None)).group_by(Vm.host_id)).all())
        states = dict(conn.execute(select(HostState.host_name, HostState.state)).all())
        hosts = conn.execute(select(Host.__table__).order_by(Host.name)).all()
    out = []
    for h in hosts:
        cpu, mem, cores, mib = loads.get(h.id, (None, None, None, None))
        recent = h.last_seen_s is not None and now_s - h.last_seen_s <= stale_after_s
        out.append(HostView(
            name=h.name, uri=h.uri, cpu_cores=h.cpu_cores, mem_mib=h.mem_mib,
            cpu_model=h.cpu_model, cpu_features=cpu_features(h.cpu_xml), group=h.host_group,
            storage_group=h.storage_group, state=states.get(h.name, "active"),
            stale=bool(h.stale) or not recent, last_error=h.last_error,
            last_seen_s=h.last_seen_s, cpu_load=_f(cpu), mem_load=_f(mem),
            cpu_cores_used=_f(cores), mem_used_mib=_f(mib), vms=int(counts.get(h.id, 0))))
    return out


def load_vms(engine: Engine, now_s: float, window_s: float) -> list[VmView]:
    """VMs not gone, with their mean demand over the window ending at their host's last
    successful poll (None without samples)."""
    with engine.connect() as conn:
        means = {vid: (c, m) for vid, c, m in conn.execute(
            select(VmSample.vm_id, func.avg(VmSample.cpu_cores), func.avg(VmSample.mem_used_mib))
            .join(Vm, Vm.id == VmSample.vm_id).join(Host, Host.id == Vm.host_id)
            .where(Vm.gone_s.is_(None), VmSample.ts_s >= Host.last_seen_s - window_s)
            .group_by(VmSample.vm_id))}
        rows = conn.execute(
            select(Vm.__table__, Host.name.label("host_name"))
            .join(Host, Vm.host_id == Host.id, isouter=True)
            .where(Vm.gone_s.is_(None)).order_by(Vm.name)).all()
    out = []
    for vm in rows:
        host_name = vm.host_name
        cpu, mem = means.get(vm.id, (None, None))
        out.append(VmView(vm.uuid, vm.name, host_name, vm.state, vm.vcpus, vm.mem_mib, _f(cpu),
                          _f(mem), vm.last_migrated_s))
    return out


def load_vm_demand(engine: Engine, since_s: float, until_s: float | None = None,
                   rollups: bool = False) -> dict[str, DemandSeries]:
    """Per VM UUID, its samples in [since_s, until_s), oldest first (for the balancer)."""
    table: Any = VmSampleRollup if rollups else VmSample
    ts = table.bucket_s if rollups else table.ts_s
    stmt = (select(Vm.uuid, ts, table.cpu_cores, table.mem_used_mib, table.host_id)
            .join(Vm, Vm.id == table.vm_id).where(ts >= since_s).order_by(table.vm_id, ts))
    if until_s is not None:
        stmt = stmt.where(ts < until_s)
    out: dict[str, DemandSeries] = {}
    with engine.connect() as conn:
        for uuid, t, cpu, mem, hid in conn.execute(stmt):
            series = out.get(uuid)
            if series is None:
                series = out[uuid] = DemandSeries(uuid)
            series.ts_s.append(t)
            series.cpu_cores.append(cpu)
            series.mem_used_mib.append(mem)
            series.host_ids.append(hid)
    return out


def cluster_imbalance(hosts: Iterable[HostView], cpu_weight: float,
                      mem_weight: float) -> float | None:
    """Weighted root of the per-resource variances of host load over eligible hosts.

    Same formula as balancer.scoring.imbalance (which works on the planner's arrays);
    None when no eligible host has loads.
    """
    eligible = [h for h in hosts if h.eligible and h.cpu_load is not None
                and h.mem_load is not None]
    if not eligible:
        return None
    total = cpu_weight + mem_weight
    w_cpu, w_mem = (cpu_weight / total, mem_weight / total) if total > 0 else (1.0, 0.0)
    var = (w_cpu * _pvariance([h.cpu_load or 0.0 for h in eligible])
           + w_mem * _pvariance([h.mem_load or 0.0 for h in eligible]))
    return math.sqrt(max(var, 0.0))


def target_imbalance(aggressiveness: int, n_hosts: int) -> float | None:
    """0.1 * (5 - L) / sqrt(N) (DESIGN.md); None for level 1 (never balances)."""
    from balancer.scoring import target_imbalance as core  # noqa: PLC0415

    value = core(aggressiveness, n_hosts)
    return value if math.isfinite(value) else None


def _pvariance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def _f(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
