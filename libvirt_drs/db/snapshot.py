"""Build the balancer's ClusterSnapshot from the database (the store's read side).

Hosts come from the config joined with what the collector last saw (capacity, CPU,
staleness) and the operator's host state (maintenance). VM demand is estimated from
the samples of the configured window (balancer.demand), not from one sample. The
time of each VM's last successful migration and the host it left come from the job
rows, so the planner's cooldown and anti-ping-pong survive restarts.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import numpy as np
from sqlalchemy import Engine, Integer, cast, func, select
from sqlalchemy.orm import Session

from libvirt_drs.balancer.demand import DemandEstimator, estimate_demand
from libvirt_drs.balancer.model import ClusterSnapshot, HostState, VmState
from libvirt_drs.config import Config
from libvirt_drs.db.models import Host, HostStateRow, MigrationJob, Vm, VmSample
from libvirt_drs.migrator.model import JobState


def cpu_features(cpu_xml: str | None) -> frozenset[str]:
    """Feature names of a host <cpu> definition (required/optional, not disabled ones)."""
    if not cpu_xml:
        return frozenset()
    try:
        root = ET.fromstring(cpu_xml)
    except ET.ParseError:
        return frozenset()
    cpu = root if root.tag == "cpu" else root.find(".//cpu")
    if cpu is None:
        return frozenset()
    return frozenset(
        f.get("name", "") for f in cpu.findall("feature")
        if f.get("policy", "require") not in ("disable", "forbid") and f.get("name")
    )


def stale_after_s(cfg: Config) -> float:
    """A host not polled successfully for this long is stale even if its row says fresh
    (the collector itself may have stopped)."""
    return 2 * cfg.collector.interval_s + cfg.collector.timeout_s


def host_stale(flagged: bool, last_seen_s: float | None, now_s: float | None,
               stale_after_s: float) -> bool:
    """The one staleness rule of the database edge: the collector flagged the host, or it
    was not polled successfully within `stale_after_s` of `now_s` (None skips that check)."""
    if flagged:
        return True
    if now_s is None:
        return False
    return last_seen_s is None or now_s - last_seen_s > stale_after_s


def configured_hosts(session: Session, cfg: Config, now_s: float | None = None
                     ) -> tuple[HostState, ...]:
    """The configured hosts as the planner sees them; `now_s` None skips the age check."""
    rows = {h.name: h for h in session.scalars(select(Host))}
    states = {s.host_name: s.state for s in session.scalars(select(HostStateRow))}
    hosts = []
    for hc in cfg.hosts:
        row = rows.get(hc.name)
        cpu_cores = hc.cpu_cores or (row.cpu_cores if row else None) or 0.0
        mem_mib = hc.mem_mib or (row.mem_mib if row else None) or 0
        hosts.append(HostState(
            name=hc.name,
            cpu_cores=float(cpu_cores),
            mem_mib=float(mem_mib),
            state=states.get(hc.name, "active"),
            # no row or no capacity: the planner cannot place anything there
            stale=(row is None or not cpu_cores or not mem_mib
                   or host_stale(bool(row.stale), row.last_seen_s, now_s, stale_after_s(cfg))),
            group=hc.group,
            storage_group=hc.storage_group,
            cpu_model=(row.cpu_model or "") if row else "",
            cpu_features=cpu_features(row.cpu_xml if row else None),
            # hc.max_outgoing / max_incoming limit concurrent migrations (the migrator's
            # business), not moves per plan: the planner keeps balancer.max_moves_per_host.
        ))
    return tuple(hosts)


BUCKET_S = 300.0  # demand history is read as 5-minute means (the DB aggregates)


def _sample_matrix(session: Session, vm_ids: list[int], since_s: float, until_s: float,
                   bucket_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean CPU cores used, CPU cores waited (0 where unreported) and memory in use per VM
    and bucket, (vms, buckets), NaN where there is no sample.

    The database averages the raw samples per bucket, so a 4-hour window over 10,000 VMs
    reads 48 rows per VM instead of 720.
    """
    slots = max(1, int(np.ceil((until_s - since_s) / bucket_s)))
    cpu = np.full((len(vm_ids), slots), np.nan)
    wait = np.full((len(vm_ids), slots), np.nan)
    mem = np.full((len(vm_ids), slots), np.nan)
    if not vm_ids:
        return cpu, wait, mem
    index = {vm_id: i for i, vm_id in enumerate(vm_ids)}
    # Buckets are counted back from until_s so the newest bucket is always a full one.
    slot = cast(func.floor((until_s - VmSample.ts_s) / bucket_s), Integer).label("slot")
    rows = session.execute(
        select(VmSample.vm_id, slot, func.avg(VmSample.cpu_cores), func.avg(VmSample.mem_used_mib),
               func.coalesce(func.avg(VmSample.cpu_wait_cores), 0.0))
        .where(VmSample.ts_s > since_s, VmSample.ts_s <= until_s)
        .group_by(VmSample.vm_id, slot)
    ).all()
    if rows:
        data = np.array([(index.get(r[0], -1), r[1], r[2], r[3], r[4]) for r in rows],
                        dtype=np.float64)
        data = data[data[:, 0] >= 0]
        row_idx = data[:, 0].astype(np.int64)
        col = np.clip(slots - 1 - data[:, 1].astype(np.int64), 0, slots - 1)
        cpu[row_idx, col] = data[:, 2]
        mem[row_idx, col] = data[:, 3]
        wait[row_idx, col] = data[:, 4]
    return cpu, wait, mem


def _last_migrations(session: Session) -> dict[str, tuple[float, str]]:
    """VM name -> (finished_s, source) of its latest successful migration."""
    latest = (
        select(MigrationJob.vm_name, func.max(MigrationJob.finished_s).label("finished_s"))
        .where(MigrationJob.state == JobState.SUCCEEDED.value)
        .group_by(MigrationJob.vm_name)
        .subquery()
    )
    rows = session.execute(
        select(MigrationJob.vm_name, MigrationJob.finished_s, MigrationJob.source)
        .join(latest, (MigrationJob.vm_name == latest.c.vm_name)
              & (MigrationJob.finished_s == latest.c.finished_s))
    ).all()
    return {r[0]: (float(r[1]), r[2]) for r in rows if r[1] is not None}


def load_snapshot(engine: Engine, cfg: Config, now_s: float | None = None,
                  estimator: DemandEstimator | None = None) -> ClusterSnapshot:
    """The cluster as the balancer should see it at `now_s` (default: now)."""
    now_s = time.time() if now_s is None else now_s
    estimator = estimator or DemandEstimator()
    bucket_s = max(BUCKET_S, cfg.collector.interval_s)
    with Session(engine) as session:
        hosts = configured_hosts(session, cfg, now_s)
        host_names = {h.id: h.name for h in session.scalars(select(Host))}
        configured = {h.name for h in hosts}
        vms = [v for v in session.scalars(
            select(Vm).where(Vm.gone_s.is_(None), Vm.host_id.is_not(None)).order_by(Vm.name))
            if v.host_id is not None and host_names.get(v.host_id) in configured]
        cpu, wait, mem = _sample_matrix(session, [v.id for v in vms],
                                        now_s - cfg.balancer.window_s, now_s, bucket_s)
        migrations = _last_migrations(session)
    # CPU demand is what the VM used plus what it waited for (vSphere's demand counts ready
    # time the same way): on a contended host the usage alone hides the load.
    cpu_cores = estimate_demand(cpu + wait, bucket_s, estimator)
    wait_cores = np.minimum(estimate_demand(wait, bucket_s, estimator), cpu_cores)
    mem_used = estimate_demand(mem, bucket_s, DemandEstimator(method="mean"))
    has_mem = ~np.isnan(mem).all(axis=1)
    vm_states = []
    for i, v in enumerate(vms):
        last = migrations.get(v.name)
        vm_states.append(VmState(
            name=v.name,
            host=host_names[v.host_id],  # type: ignore[index]
            cpu_cores=float(cpu_cores[i]),
            cpu_wait_cores=max(0.0, float(wait_cores[i])),
            mem_mib=float(v.mem_mib),
            vcpus=v.vcpus,
            mem_demand_mib=float(mem_used[i]) if has_mem[i] else None,
            last_migrated_s=last[0] if last else v.last_migrated_s,
            last_source=last[1] if last else None,
        ))
    return ClusterSnapshot(hosts=hosts, vms=tuple(vm_states), rules=cfg.rules,
                           now_s=now_s)
