"""Wiring of the migrator from the config: store, libvirt hypervisor, executor, runner.

The one place that knows both the config/database side and the migrator core; used by
the CLI (`drs migrate`, `drs rebalance`, `drs maintenance`, `drs evacuate`) and the service.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from drs.config import Config
from drs.db.engine import make_engine
from drs.db.jobs import SqlJobStore
from drs.db.schema import require_current
from drs.errors import UserError
from migrator.admission import Limits
from migrator.executor import Executor
from migrator.hypervisor import Hypervisor, HypervisorError
from migrator.libvirt_hv import LibvirtHypervisor
from migrator.model import MigrationOptions
from migrator.reconcile import Reconciled, Reconciler
from migrator.runner import Runner, process_owner


def limits_from_config(cfg: Config) -> Limits:
    m = cfg.migrator
    return Limits(
        max_outgoing_per_host=m.max_outgoing_per_host,
        max_incoming_per_host=m.max_incoming_per_host,
        max_cluster=m.max_cluster,
        outgoing_overrides={h.name: h.max_outgoing for h in cfg.hosts if h.max_outgoing},
        incoming_overrides={h.name: h.max_incoming for h in cfg.hosts if h.max_incoming},
    )


def options_from_config(cfg: Config) -> MigrationOptions:
    m = cfg.migrator
    return MigrationOptions(
        bandwidth_mib_s=m.bandwidth_mib_s, max_downtime_ms=m.max_downtime_ms,
        auto_converge=m.auto_converge, compression=m.compression,
        postcopy_after_iterations=m.postcopy_after_iterations, copy_storage=False,
        timeout_s=m.timeout_s, stall_timeout_s=m.stall_timeout_s,
    )


def needs_copy_storage(cfg: Config, source: str, destination: str, forced: bool = False) -> bool:
    """Copy the disks when asked, or when the hosts do not share a storage group."""
    src, dst = cfg.host(source), cfg.host(destination)
    if forced:
        return True
    if src is None or dst is None:
        return cfg.migrator.copy_storage
    return src.storage_group != dst.storage_group


@dataclass
class Migrator:
    cfg: Config
    engine: Engine
    store: SqlJobStore
    hv: Hypervisor
    executor: Executor
    runner: Runner
    owner: str

    def reconcile(self) -> list[Reconciled]:
        return Reconciler(self.store, self.hv, self.executor, self.owner).run()

    def locate(self, vm_name: str) -> tuple[list[str], list[str]]:
        """Hosts whose libvirt runs `vm_name` (normally one), and per-host errors."""
        found, errors = [], []
        for h in self.cfg.hosts:
            try:
                dom = self.hv.domain(h.name, vm_name)
            except HypervisorError as exc:
                errors.append(str(exc))
                continue
            if dom is not None and dom.state == "running":
                found.append(h.name)
        return found, errors


def build(cfg: Config, engine: Engine | None = None, hv: Hypervisor | None = None,
          actor: str = "cli") -> Migrator:
    if not cfg.hosts:
        raise UserError(f"{cfg.path}: no [[hosts]] configured")
    engine = engine or make_engine(cfg.database_url)
    require_current(engine)
    store = SqlJobStore(engine)
    if hv is None:
        hv = LibvirtHypervisor({h.name: h.uri for h in cfg.hosts},
                               {h.name: h.mem_mib for h in cfg.hosts if h.mem_mib})
    owner = process_owner()
    executor = Executor(hv, store, options_from_config(cfg), actor=actor,
                        mem_reserve_mib=cfg.balancer.mem_reserve_mib)
    limits = limits_from_config(cfg)
    runner = Runner(store, executor, limits, owner, actor=actor)
    return Migrator(cfg, engine, store, hv, executor, runner, owner)
