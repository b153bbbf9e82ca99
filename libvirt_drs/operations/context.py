"""What every operation works on: the config, the database, and (for actions) the migrator.

The CLI builds one per command (`Cluster.open`); `drs serve` builds one at start with its
own migrator (shutdown control, leader) and hands it to the API. The migrator is built on
first use, so reading the cluster never connects to libvirt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine

from libvirt_drs.config import Config
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.schema import require_current
from libvirt_drs.errors import UserError
from libvirt_drs.migrator_builder import Migrator, build
from libvirt_drs.operations.errors import NotFound

log = logging.getLogger(__name__)


class Cluster:
    """The cluster as operations see it. `refresh()` polls every host once (one collector
    cycle) so that a plan starts from where libvirt says the VMs run now."""

    def __init__(self, cfg: Config, engine: Engine, *, actor: str,
                 migrator: Migrator | None = None,
                 refresh: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.engine = engine
        self.actor = actor  # names the process in the migrator's own audit events
        self._migrator = migrator
        self._refresh = refresh
        self.clock = clock

    @classmethod
    def open(cls, cfg: Config, actor: str) -> Cluster:
        """For one CLI command: checks the schema version before anything else."""
        engine = make_engine(cfg.database_url)
        require_current(engine)
        return cls(cfg, engine, actor=actor)

    @property
    def migrator(self) -> Migrator:
        if self._migrator is None:
            self._migrator = build(self.cfg, self.engine, actor=self.actor)
        return self._migrator

    def refresh(self) -> None:
        if self._refresh is not None:
            self._refresh()
            return
        from libvirt_drs.collect import CollectJob, summary_line  # noqa: PLC0415

        job = CollectJob(self.cfg, self.engine)
        try:
            log.info("%s", summary_line(job.run_cycle()))
        finally:
            job.close()

    def require_hosts(self) -> None:
        if not self.cfg.hosts:
            raise UserError(f"{self.cfg.path}: no [[hosts]] configured")

    def host(self, name: str) -> str:
        """`name` if it is a configured host, else NotFound naming the configured ones."""
        if self.cfg.host(name) is None:
            known = ", ".join(h.name for h in self.cfg.hosts) or "none"
            raise NotFound(f"unknown host {name!r} (configured: {known})")
        return name

    def group(self, group: str) -> list[str]:
        hosts = [h.name for h in self.cfg.hosts if h.group == group]
        if not hosts:
            groups = ", ".join(sorted({h.group for h in self.cfg.hosts})) or "none"
            raise NotFound(f"no host in group {group!r} (groups: {groups})")
        return hosts

    def close(self) -> None:
        self.engine.dispose()
