"""Replication on the lab: real libvirt incremental backups of a guest writing its disk,
streamed into the recovery host's pool, and the recovery point read back byte for byte.

Site A = h1 (the guest runs there), site B = h2, per-host storage (nothing shared). The
fault cases (the recovery host lost mid-transfer, failover refused, failover twice) are in
tests/faults/test_replication_faults.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from libvirt_drs import config as config_mod
from libvirt_drs.cli import cli
from libvirt_drs.db import replication as store
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.operations import replication as ops
from libvirt_drs.operations.caller import cli_caller
from libvirt_drs.operations.context import Cluster

pytestmark = pytest.mark.lab
RECOVERY_DIR = "/var/lib/libvirt/drs-replicas"


@pytest.fixture(scope="module")
def sites(make_lab: Any) -> Any:
    from libvirt_drs.lab import state  # noqa: PLC0415

    lab = make_lab(n_hosts=2, n_vms=1, storage="per-host", disk_mib=32, burn="5")
    yield lab
    if state.load(lab.name) is not None:
        lab.down()


def write_config(lab: Any, path: Path, bandwidth_mib_s: float = 0.0) -> Path:
    h1, h2 = lab.hosts
    path.write_text(
        f'[database]\nurl = "sqlite:///{path.parent}/drs.sqlite"\n'
        f'[[hosts]]\nname = "h1"\nuri = "{h1.uri}"\ngroup = "site-a"\n'
        f'[[hosts]]\nname = "h2"\nuri = "{h2.uri}"\ngroup = "site-b"\n'
        f"[replication]\nbandwidth_mib_s = {bandwidth_mib_s}\n"
        f'[[replication.policies]]\nname = "dr"\nvms = ["{lab.vms[0].name}"]\n'
        f'primary = "site-a"\nrecovery = "site-b"\nrecovery_dir = "{RECOVERY_DIR}"\n'
        "rpo_s = 30\n")
    return path


@pytest.fixture
def cluster(sites: Any, tmp_path: Path) -> Any:
    cfg = config_mod.load(str(write_config(sites, tmp_path / "drs.toml")))
    engine = make_engine(cfg.database_url)
    schema.upgrade(engine)
    cl = Cluster(cfg, engine, actor="test")
    yield cl
    cl.close()


def point_as_raw(lab: Any, point_file: str, out: Path) -> bytes:
    """The recovery point's chain, flattened by qemu-img inside the recovery host's mount
    namespace (where the backing file names resolve)."""
    h2 = lab.hosts[1]
    subprocess.run(["nsenter", f"--mount=/proc/{h2.pid}/ns/mnt", "qemu-img", "convert", "-U",
                    "-O", "raw", point_file, str(out)], check=True, timeout=60)
    return out.read_bytes()


def disk_as_raw(lab: Any, out: Path) -> bytes:
    vm = lab.vms[0]
    src = lab.state.host(vm.host).outside(vm.disk_path)
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(src), str(out)], check=True,
                   timeout=60)
    return out.read_bytes()


def disk_counter(raw: bytes) -> int:
    """The guest's write counter in block 0: "DRS-DISK <counter> <unix time>"."""
    assert raw.startswith(b"DRS-DISK "), raw[:32]
    return int(raw.split()[1])


def test_full_then_incremental_points_equal_the_disk_and_only_changes_travel(
        sites: Any, cluster: Any, tmp_path: Path) -> None:
    vm = sites.vms[0].name
    first, = ops.replicate(cluster, cli_caller())
    assert first.point is not None, first.error
    assert first.point.kind == "full" and first.point.recovery_host == "h2"
    time.sleep(2.5)  # the guest writes its counter every heartbeat
    second, = ops.replicate(cluster, cli_caller())
    assert second.point is not None and second.point.kind == "incremental", second.error
    assert second.point.bytes_sent < 1 << 20  # the counter block, not the 32 MiB disk
    dom = cluster_domain(sites, vm)
    assert [c.getName() for c in dom.listAllCheckpoints(0)] == [second.point.checkpoint]

    dom.suspend()  # no write between the point and the comparison
    try:
        time.sleep(0.5)
        third, = ops.replicate(cluster, cli_caller())
        assert third.point is not None, third.error
        replica = point_as_raw(sites, third.point.volumes["vda"], tmp_path / "point.raw")
        disk = disk_as_raw(sites, tmp_path / "disk.raw")
    finally:
        dom.resume()
    assert replica == disk
    assert disk_counter(replica) > 0
    assert len(store.chain(cluster.engine, vm)) == 3

    shown = CliRunner().invoke(cli, ["--config", cluster.cfg.path, "replication", "status",
                                     "--json"])
    assert shown.exit_code == 0, shown.output
    row, = json.loads(shown.output)["vms"]
    assert row["vm"] == vm and row["within_rpo"] and row["chain_length"] == 3
    assert row["recovery_point_age_s"] < 30 and row["failures"] == 0


def cluster_domain(lab: Any, vm: str) -> Any:
    import libvirt  # noqa: PLC0415

    return libvirt.open(lab.hosts[0].uri).lookupByName(vm)


def _alert_expr(name: str) -> str:
    from tests.service.test_deploy import DEPLOY  # noqa: PLC0415

    text = (DEPLOY / "drs-rules.yml").read_text()
    block = text.split(f"- alert: {name}\n", 1)[1]
    return block.split("expr:", 1)[1].split("\n", 1)[0].strip()


def test_serve_replicates_on_its_schedule_and_prometheus_sees_the_lag(
        sites: Any, tmp_path: Path) -> None:
    """`drs serve` with [replication] enabled keeps the point younger than the RPO; the lag
    reaches a real Prometheus, where the DrsReplicationBehindRpo expression stays empty."""
    from tests.e2e.prometheus_proc import Prometheus  # noqa: PLC0415
    from tests.e2e.test_serve_lab import REPLICATION_METRIC, _finite, _promql  # noqa: PLC0415
    from tests.service.serve_proc import ServeProcess, free_port, wait_for  # noqa: PLC0415
    from tests.service.test_deploy import dashboard_exprs  # noqa: PLC0415

    config = write_config(sites, tmp_path / "drs.toml")
    config.write_text(config.read_text().replace("[replication]\n",
                                                 "[replication]\nenabled = true\n")
                      .replace("rpo_s = 30", "rpo_s = 8"))
    engine = make_engine(config_mod.load(str(config)).database_url)
    schema.upgrade(engine)
    port = free_port()
    prom = Prometheus(tmp_path / "prometheus", free_port(), [f"127.0.0.1:{port}"])
    serve = ServeProcess(config, port, ["--collect-interval", "2", "--observe-interval", "1",
                                        "--grace", "10", "--lease", "6"], tmp_path / "serve.log")
    try:
        prom.wait_ready()
        serve.wait_healthy()
        vm = sites.vms[0].name
        assert wait_for(lambda: len(store.chain(engine, vm)) >= 3, 60), serve.output()
        chain = store.chain(engine, vm)
        gaps = [b.taken_s - a.taken_s for a, b in zip(chain, chain[1:], strict=False)]
        assert all(g < 8 for g in gaps), gaps  # a point every half RPO, give or take a poll
        assert wait_for(prom.targets_up, 30)
        lag = f'drs_replication_lag_seconds{{vm="{vm}"}}'
        assert wait_for(lambda: prom.api("query", query=f"{lag} < 8")["data"]["result"], 30)
        behind = prom.api("query", query=_alert_expr("DrsReplicationBehindRpo"))
        assert behind["status"] == "success" and behind["data"]["result"] == []
        assert prom.api("query", query="drs_replication_points_total")["data"]["result"]
        # the dashboard's disaster recovery row: every query answers with data
        assert wait_for(lambda: prom.api("query", query="drs_replication_sent_bytes_total"
                                         )["data"]["result"], 30)
        time.sleep(12)  # rate() and increase() need two scrapes in their window
        end = time.time()
        empty = [f"{title}: {expr}" for _file, title, expr in dashboard_exprs()
                 if REPLICATION_METRIC in expr
                 and not _finite(prom.query_range(_promql(expr, 120), end - 60, end))]
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
        assert len([e for _f, _t, e in dashboard_exprs() if REPLICATION_METRIC in e]) == 5
    finally:
        serve.stop()
        prom.stop()


def point_counter(lab: Any, point: store.Point, tmp_path: Path) -> int:
    return disk_counter(point_as_raw(lab, point.volumes["vda"], tmp_path / "p.raw"))


def _domain_on(lab: Any, host_index: int, name: str) -> Any:
    import libvirt  # noqa: PLC0415

    try:
        return libvirt.open(lab.hosts[host_index].uri).lookupByName(name)
    except libvirt.libvirtError:
        return None


def _wait_boot(log: str, boots: int, timeout_s: float = 120) -> list[int]:
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while len(heartbeat.disk_starts(log)) <= boots and time.monotonic() < deadline:
        time.sleep(0.5)
    return heartbeat.disk_starts(log)[boots:]


def test_test_failover_starts_an_isolated_copy_and_touches_nothing(
        sites: Any, cluster: Any) -> None:
    """--test: a copy <vm>-drtest boots on h2 from the recovery point, with no network and
    its own console log, while the VM goes on at h1 and replication goes on incrementally;
    --cleanup-test removes the copy and its disk."""
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415
    from libvirt_drs.replication import failover as fo  # noqa: PLC0415

    vm = sites.vms[0]
    first, = ops.replicate(cluster, cli_caller())
    assert first.point is not None, first.error
    copy_log = fo.isolated_log(vm.serial_log)
    boots = len(heartbeat.disk_starts(copy_log))
    api, auth = _api(cluster)
    with api:  # through the REST API, as the console and scripts do
        shown = api.get("/api/v1/replication", headers=auth).json()
        assert [r["vm"] for r in shown["vms"]] == [vm.name]
        r = api.post("/api/v1/sites/site-a/failover", headers=auth, json={"mode": "test"})
    assert r.status_code == 200, r.json()
    result = r.json()
    assert result["mode"] == "test" and result["failed"] == [] and result["refused"] == []
    started, = result["started"]
    assert (started["name"], started["host"]) == (f"{vm.name}-drtest", "h2")
    copy = _domain_on(sites, 1, started["name"])
    assert copy is not None and copy.isActive()
    assert "<interface" not in copy.XMLDesc(0)
    assert copy.UUIDString() != cluster_domain(sites, vm.name).UUIDString()
    assert len(_wait_boot(copy_log, boots)) == 1, "the test copy did not boot"
    assert cluster_domain(sites, vm.name).isActive()  # production untouched
    health = heartbeat.wait_alive(vm.serial_log, 30)
    assert health.problem is None, health.problem
    again, = ops.replicate(cluster, cli_caller())
    assert again.point is not None and again.point.kind == "incremental", again.error
    twice = ops.failover(cluster, cli_caller(), "site-a", hosts_off_confirmed=False,
                         mode="test")
    assert twice.started == () and [v for v, _ in twice.skipped] == [vm.name]

    api, auth = _api(cluster)
    with api:
        r = api.delete("/api/v1/sites/site-a/failover-tests", headers=auth)
    assert r.status_code == 200 and r.json()["removed"] == [{"name": started["name"],
                                                              "host": "h2"}], r.json()
    assert _domain_on(sites, 1, started["name"]) is None
    pool = libvirt_pool(sites, 1)
    assert not [n for n in pool.listVolumes() if n.endswith("-drtest.qcow2")]
    assert ops.remove_test_copies(cluster, cli_caller(), "site-a") == []
    Path(copy_log).unlink(missing_ok=True)


def _api(cl: Cluster) -> tuple[Any, dict[str, str]]:
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from libvirt_drs.operations import tokens  # noqa: PLC0415
    from libvirt_drs.web.app import create_app  # noqa: PLC0415

    secret = tokens.create(cl, cli_caller(), f"dr-{time.time_ns()}", "operator")[1]
    return (TestClient(create_app(cl), base_url="http://drs.test"),
            {"Authorization": f"Bearer {secret}"})


def libvirt_pool(lab: Any, host_index: int) -> Any:
    import libvirt  # noqa: PLC0415

    from libvirt_drs.replication.transfer import POOL_NAME  # noqa: PLC0415

    pool = libvirt.open(lab.hosts[host_index].uri).storagePoolLookupByName(POOL_NAME)
    pool.refresh(0)
    return pool


def _last_written(log: str) -> int:
    """The counter the guest last printed before its newest boot."""
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415

    beat = heartbeat.last_before_boot(log)
    assert beat is not None
    return beat.disk_writes


def test_planned_migration_and_failback_lose_no_write(sites: Any, cluster: Any) -> None:
    """--planned moves the VM to h2 from a final point taken while it is paused: it boots
    there from its last write. Replication then runs in reverse (points on h1); failback
    returns it to h1 the same way, and replication to h2 goes on."""
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415

    vm = sites.vms[0]
    first, = ops.replicate(cluster, cli_caller())
    assert first.point is not None, first.error
    boots = len(heartbeat_starts(vm.serial_log))
    moved = ops.failover(cluster, cli_caller(), "site-a", hosts_off_confirmed=False,
                         mode="planned")
    assert moved.failed == () and moved.refused == (), moved
    started, = moved.started
    assert started.host == "h2" and started.data_loss_window_s == 0.0
    start, = _wait_boot(vm.serial_log, boots)
    written = _last_written(vm.serial_log)
    assert written <= start <= written + 1, (written, start)  # +1: written, not yet printed
    assert not cluster_domain(sites, vm.name).isActive()
    health = heartbeat.wait_alive(vm.serial_log, 30)
    assert health.problem is None, health.problem
    back_point, = ops.replicate(cluster, cli_caller())  # in reverse: onto site A
    assert back_point.point is not None, back_point.error
    assert (back_point.point.source_host, back_point.point.recovery_host) == ("h2", "h1")
    boots = len(heartbeat_starts(vm.serial_log))
    back = ops.failback(cluster, cli_caller(), "site-a")
    assert back.failed == (), back
    returned, = back.started
    assert returned.host == "h1" and returned.point.kind == "incremental"
    start, = _wait_boot(vm.serial_log, boots)
    written = _last_written(vm.serial_log)
    assert written <= start <= written + 1, (written, start)
    assert not _domain_on(sites, 1, vm.name).isActive()
    assert cluster_domain(sites, vm.name).isActive()
    health = heartbeat.wait_alive(vm.serial_log, 30)
    assert health.problem is None, health.problem

    protected, = ops.replicate(cluster, cli_caller())  # protection runs again, to site B
    assert protected.point is not None, protected.error
    assert (protected.point.source_host, protected.point.recovery_host) == ("h1", "h2")
    assert ops.failback(cluster, cli_caller(), "site-a").skipped == (
        (vm.name, "already runs on h1"),)


def heartbeat_starts(log: str) -> list[int]:
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415

    return heartbeat.disk_starts(log)


def test_failover_of_a_killed_site_starts_the_guest_from_its_point_once(
        sites: Any, tmp_path: Path) -> None:
    """Last in this module: it kills h1 (site A). Refused while the guest still runs there;
    after the kill, refused until the operator confirms h1 is off; then the guest boots on
    h2 from its recovery point (its disk counter exactly the point's) and beats; a second
    failover starts nothing."""
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415
    from libvirt_drs.operations.errors import Conflict  # noqa: PLC0415

    vm = sites.vms[0]
    cfg = config_mod.load(str(write_config(sites, tmp_path / "drs.toml")))
    engine = make_engine(cfg.database_url)
    schema.upgrade(engine)
    cl = Cluster(cfg, engine, actor="test")
    for _ in range(2):
        done, = ops.replicate(cl, cli_caller())
        assert done.point is not None, done.error
    point = done.point
    counter = point_counter(sites, point, tmp_path)

    alive = ops.failover(cl, cli_caller(), "site-a", hosts_off_confirmed=True)
    assert alive.started == () and [v for v, _ in alive.refused] == [vm.name]
    assert "still runs on h1" in alive.refused[0][1]

    time.sleep(2.0)  # writes after the point: these are what a failover loses
    written = heartbeat.last(vm.serial_log)
    assert written is not None and written.disk_writes > counter
    sites.kill_host("h1")  # the site is lost without warning
    with pytest.raises(Conflict, match="primary hosts h1 do not answer"):
        ops.failover(cl, cli_caller(), "site-a", hosts_off_confirmed=False)

    boots = len(heartbeat.disk_starts(vm.serial_log))
    result = ops.failover(cl, cli_caller(), "site-a", hosts_off_confirmed=True)
    assert result.failed == () and result.refused == (), result
    started, = result.started
    assert started.host == "h2" and started.point.seq == point.seq
    assert result.unreachable == ("h1",)
    deadline = time.monotonic() + 120
    while len(heartbeat.disk_starts(vm.serial_log)) == boots and time.monotonic() < deadline:
        time.sleep(0.5)
    assert heartbeat.disk_starts(vm.serial_log)[boots:] == [counter]  # booted from the point
    booted = time.time()
    time.sleep(3.0)
    assert heartbeat.since(heartbeat.read(vm.serial_log), booted), "no heartbeat after failover"

    again = ops.failover(cl, cli_caller(), "site-a", hosts_off_confirmed=True)
    assert again.started == () and [v for v, _ in again.skipped] == [vm.name]
    cl.close()
