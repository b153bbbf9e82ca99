"""Builds the migrator from the config: job store, libvirt hypervisor, executor, runner.

The one place that knows both the config/database side and the migrator core, and the
one builder of a migrator: the CLI (`drs migrate`, `drs rebalance`, `drs maintenance`,
`drs evacuate`) and the service (`drs serve`, which injects its shutdown control and its
own actor) both call `build`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from libvirt_drs.config import Config
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.jobs import SqlJobStore
from libvirt_drs.db.schema import require_current
from libvirt_drs.errors import UserError
from libvirt_drs.migrator.control import UNRESTRICTED, JobControl
from libvirt_drs.migrator.executor import Executor
from libvirt_drs.migrator.hypervisor import DomainRunState, Hypervisor, HypervisorError
from libvirt_drs.migrator.libvirt_hv import LibvirtHypervisor
from libvirt_drs.migrator.reconcile import Reconciled, Reconciler
from libvirt_drs.migrator.runner import Runner, process_owner


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
    actor: str

    def reconcile(self) -> list[Reconciled]:
        """Settle jobs a dead process left running, from where libvirt says each VM runs."""
        return Reconciler(self.store, self.hv, self.executor, self.owner, actor=self.actor).run()

    def locate(self, vm_name: str) -> tuple[list[str], list[str]]:
        """Hosts whose libvirt runs `vm_name` (normally one), and per-host errors."""
        found, errors = [], []
        for h in self.cfg.hosts:
            try:
                dom = self.hv.domain(h.name, vm_name)
            except HypervisorError as exc:
                errors.append(str(exc))
                continue
            if dom is not None and dom.state == DomainRunState.RUNNING:
                found.append(h.name)
        return found, errors


def build(cfg: Config, engine: Engine | None = None, hv: Hypervisor | None = None,
          actor: str = "cli", *, owner: str | None = None, store: SqlJobStore | None = None,
          control: JobControl = UNRESTRICTED) -> Migrator:
    """The migrator for `cfg`: checks hosts and the schema version, opens what is not given.

    `owner` names this process in job rows (default `hostname:pid`); `control` may refuse
    starts and abort migrations (the service's shutdown)."""
    if not cfg.hosts:
        raise UserError(f"{cfg.path}: no [[hosts]] configured")
    engine = engine or make_engine(cfg.database_url)
    require_current(engine)
    store = store or SqlJobStore(engine)
    if hv is None:
        hv = LibvirtHypervisor({h.name: h.uri for h in cfg.hosts},
                               {h.name: h.mem_mib for h in cfg.hosts if h.mem_mib})
    owner = owner or process_owner()
    executor = Executor(hv, store, cfg.migrator.options, actor=actor,
                        mem_reserve_mib=int(cfg.balancer.policy.mem_reserve_mib), control=control)
    runner = Runner(store, executor, cfg.migrator.limits, owner, actor=actor)
    return Migrator(cfg, engine, store, hv, executor, runner, owner, actor)
