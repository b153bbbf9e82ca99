"""Disaster recovery under faults, on a lab of two sites with separate storage (h1 = site
A, where the guest writes its disk; h2 = site B): the recovery host dies mid-transfer and
the previous recovery point stays intact and is the one a failover uses; a failover with
the primary still running is refused; a failover run twice starts nothing twice.

The cases run in order on one lab and one database: each builds on the one before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libvirt_drs import config as config_mod
from libvirt_drs.db import replication as store
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.operations import replication as ops
from libvirt_drs.operations.caller import cli_caller
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Conflict
from tests.replication.test_replication_lab import (
    _wait_boot,
    cluster_domain,
    disk_counter,
    point_as_raw,
    write_config,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def sites(make_lab: Any) -> Iterator[Any]:
    from libvirt_drs.lab import state  # noqa: PLC0415

    lab = make_lab(n_hosts=2, n_vms=1, storage="per-host", disk_mib=32, burn="5")
    yield lab
    if state.load(lab.name) is not None:
        lab.down()


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dr-faults")


def _cluster(lab: Any, db_dir: Path, name: str = "drs.toml", bandwidth_mib_s: float = 0.0
             ) -> Cluster:
    cfg = config_mod.load(str(write_config(lab, db_dir / name, bandwidth_mib_s)))
    engine = make_engine(cfg.database_url)
    schema.upgrade(engine)
    return Cluster(cfg, engine, actor="test")


GOOD: dict[str, Any] = {}  # the point taken before the fault, for the cases after it


def test_recovery_host_lost_mid_transfer_keeps_the_previous_point(
        sites: Any, db_dir: Path) -> None:
    """The recovery host's libvirtd dies while a slow full copy streams: no point is
    recorded, the earlier one and its checkpoint stay as they were."""
    vm = sites.vms[0].name
    fast = _cluster(sites, db_dir)
    good, = ops.replicate(fast, cli_caller())
    assert good.point is not None, good.error
    GOOD["point"] = good.point
    GOOD["counter"] = disk_counter(point_as_raw(sites, good.point.volumes["vda"],
                                                db_dir / "good.raw"))
    time.sleep(1.5)
    slow = _cluster(sites, db_dir, "slow.toml", bandwidth_mib_s=0.05)
    outcome: list[ops.Outcome] = []
    worker = threading.Thread(target=lambda: outcome.extend(ops.replicate(slow, cli_caller())))
    worker.start()
    time.sleep(2.0)  # the upload has begun: at 0.05 MiB/s a point takes several seconds
    sites.stop_host("h2")
    worker.join(timeout=120)
    assert not worker.is_alive()
    failed, = outcome
    assert failed.point is None and "h2" in failed.error
    assert store.latest(fast.engine)[vm].seq == good.point.seq  # nothing half-written recorded
    assert [c.getName() for c in cluster_domain(sites, vm).listAllCheckpoints(0)] == \
        [good.point.checkpoint]
    sites.start_host("h2")
    status, = ops.status(fast, cli_caller())
    assert status.attempts is not None and status.attempts.failures == 1
    assert status.point is not None and status.point.seq == good.point.seq
    # the point itself still reads back whole on h2: the same counter as before the fault
    again = disk_counter(point_as_raw(sites, good.point.volumes["vda"], db_dir / "again.raw"))
    assert again == GOOD["counter"]
    fast.close()
    slow.close()


def test_failover_with_the_primary_still_running_is_refused(sites: Any, db_dir: Path) -> None:
    cl = _cluster(sites, db_dir)
    vm = sites.vms[0].name
    for confirmed in (False, True):
        alive = ops.failover(cl, cli_caller(), "site-a", hosts_off_confirmed=confirmed)
        assert alive.started == () and [v for v, _ in alive.refused] == [vm]
        assert "still runs on h1" in alive.refused[0][1]
    assert cluster_domain(sites, vm).isActive()
    cl.close()


def test_failover_uses_the_point_before_the_fault_and_twice_starts_nothing_twice(
        sites: Any, db_dir: Path) -> None:
    """h1 (site A) killed without warning: refused until confirmed off, then the guest
    boots on h2 from the point taken before the interrupted transfer; a second failover
    starts nothing."""
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415

    assert GOOD, "needs the first case of this module"
    cl = _cluster(sites, db_dir)
    vm = sites.vms[0]
    sites.kill_host("h1")
    with pytest.raises(Conflict, match="primary hosts h1 do not answer"):
        ops.failover(cl, cli_caller(), "site-a", hosts_off_confirmed=False)
    boots = len(heartbeat.disk_starts(vm.serial_log))
    result = ops.failover(cl, cli_caller(), "site-a", hosts_off_confirmed=True)
    assert result.failed == () and result.refused == (), result
    started, = result.started
    assert (started.host, started.point.seq) == ("h2", GOOD["point"].seq)
    assert _wait_boot(vm.serial_log, boots) == [GOOD["counter"]]
    for _ in range(2):
        again = ops.failover(cl, cli_caller(), "site-a", hosts_off_confirmed=True)
        assert again.started == () and [v for v, _ in again.skipped] == [vm.name]
    import libvirt  # noqa: PLC0415

    running = [d.name() for d in libvirt.open(sites.hosts[1].uri).listAllDomains(
        libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
    assert running == [vm.name]  # one copy, on h2
    cl.close()
