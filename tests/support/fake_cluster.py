"""A fake cluster for the operations and the web API: the fake hypervisor holds the
placement, a fake collector samples it into a SQLite database, and the real migrator (job
store, runner, executor) moves VMs on the fake. `fake` is the fixture (tests import it in
their conftest)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libvirt_drs.collect import CollectJob
from libvirt_drs.config import Config
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.migrator_builder import build
from libvirt_drs.operations.caller import Caller, Role
from libvirt_drs.operations.context import Cluster
from tests.migrator.fakes import FakeHypervisor
from tests.service.fakes import cluster_config, fake_collect_job, skewed_cluster

OPERATOR = Caller("token:ops", Role.OPERATOR)
VIEWER = Caller("token:ro", Role.VIEWER)


@dataclass
class Lab:
    cfg: Config
    hv: FakeHypervisor
    collect: CollectJob
    cl: Cluster
    clock_s: list[float]

    def sample(self) -> None:
        self.collect.run_cycle()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Lab]:
    url = f"sqlite:///{tmp_path / 'drs.sqlite'}"
    engine = make_engine(url)
    schema.upgrade(engine)
    cfg = cluster_config(url, balancer="cooldown_s = 0\ninterval_s = 300")
    hv, burn = skewed_cluster(cfg)
    job = fake_collect_job(cfg, engine, hv, burn)
    job.run_cycle(write=False)
    time.sleep(0.2)
    job.run_cycle()
    clock = [time.time()]
    migrator = build(cfg, engine, hv, actor="drs-test")
    cl = Cluster(cfg, engine, actor="drs-test", migrator=migrator, refresh=job.run_cycle,
                 clock=lambda: clock[0])
    yield Lab(cfg, hv, job, cl, clock)
    job.close()
    engine.dispose()
