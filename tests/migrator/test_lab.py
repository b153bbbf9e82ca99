"""The migrator on a real lab (3 libvirtd hosts, 4 TCG guests, per-host image directories).

Done-when checks of issue 6: live migration with heartbeat continuity and downtime, limits
on 12 queued migrations (1/1 vs 2/2 makespan), maintenance evacuation with an unmovable VM,
copy-storage with a checksum, a destination libvirtd killed mid-transfer, and a killed
`drs migrate` process reconciled. Figures go to $DRS_MIGRATOR_FIGURES (default
drs-migrator-lab-figures.json in the session's pytest tmp dir) for the report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from libvirt_drs.cli import cli
from libvirt_drs.config import Config, parse
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.lab import config_out, heartbeat, host, procs
from libvirt_drs.lab.lab import Lab
from libvirt_drs.migrator.model import JobState, MoveRequest
from libvirt_drs.migrator_builder import Migrator, build
from tests.migrator.test_store import assert_no_overlap_beyond

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

FIGURES_ENV = "DRS_MIGRATOR_FIGURES"  # where the figures go; default: the session's pytest tmp dir
_figures_file: list[Path] = []  # set once per module by the autouse fixture below
MIB = 1024 * 1024
MUST_RULE = """
[[rules.vm_host]]
name = "vm4-only-on-h1"
kind = "must"
vms = ["vm4"]
hosts = ["h1"]
"""


@pytest.fixture(scope="module", autouse=True)
def figures_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get(FIGURES_ENV)
    path = Path(env) if env else tmp_path_factory.getbasetemp() / "drs-migrator-lab-figures.json"
    _figures_file[:] = [path]
    return path


def _figure(key: str, value: object) -> None:
    [path] = _figures_file
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=2))


@pytest.fixture(scope="module")
def lab(make_lab: Callable[..., Lab]) -> Lab:
    """Our own small lab (the shared one is skewed, shared storage): per-host images."""
    return make_lab(n_hosts=3, n_vms=4, placement_text="1,2,3,1", burn="10", touch="32",
                    disk_mib=16, storage="per-host")


@pytest.fixture(scope="module")
def config_text(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> str:
    db = tmp_path_factory.mktemp("migdb") / "drs.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    schema.upgrade(engine)
    engine.dispose()
    return config_out.render(lab.state, f"sqlite:///{db}")


def write_config(tmp_path: Path, text: str, migrator_extra: str = "", rules: str = "") -> str:
    # render() ends with the [migrator] table, so extra keys can follow it
    path = tmp_path / "drs.toml"
    path.write_text(text + migrator_extra + "\n" + rules)
    return str(path)


def migrator_for(config_text: str, limits: dict[str, int] | None = None,
                 options: dict[str, Any] | None = None) -> Migrator:
    """The lab config's migrator with some [migrator] limits or libvirt options changed."""
    cfg: Config = parse(config_text, "lab.toml")
    changed = replace(cfg.migrator, limits=replace(cfg.migrator.limits, **(limits or {})),
                      options=replace(cfg.migrator.options, **(options or {})))
    return build(replace(cfg, migrator=changed))


def test_migrate_command_moves_a_burning_guest(lab: Lab, config_text: str,
                                               tmp_path: Path) -> None:
    path = write_config(tmp_path, config_text)
    source = lab.where()["vm1"]
    dest = "h2" if source != "h2" else "h3"
    with heartbeat.ArrivalWatch({"vm1": lab.serial_log("vm1")}) as tail:
        time.sleep(2.5)
        t0_s = time.monotonic()
        result = CliRunner().invoke(cli, ["--config", path, "migrate", "vm1", "--to", dest,
                                            "--yes"])
        time.sleep(3.0)
        gap_s = tail.max_gap_s("vm1", t0_s)
    assert result.exit_code == 0, result.output
    assert lab.where()["vm1"] == dest
    assert_running(lab, "vm1")
    [job] = migrator_for(config_text).store.jobs(limit=1)
    assert job.state is JobState.SUCCEEDED
    assert job.downtime_ms is not None and job.total_ms is not None
    _figure("single_migration", {"downtime_ms": job.downtime_ms, "total_ms": job.total_ms,
                                 "max_heartbeat_gap_s": round(gap_s, 3),
                                 "bytes": job.bytes_processed,
                                 "load_avg_1m": os.getloadavg()[0]})
    assert gap_s < 2.0, f"heartbeat paused {gap_s:.2f} s (> 1 s beyond its 1 s period)"
    assert job.downtime_ms <= 1000  # target 100 ms (max_downtime_ms); slack for a loaded box


def _ring_moves(m: Migrator, lab: Lab, rounds: int) -> list[MoveRequest]:
    hosts = ["h1", "h2", "h3"]
    where = lab.where()
    moves = []
    for r in range(rounds):
        for vm in sorted(where):
            src = hosts[(hosts.index(where[vm]) + r) % 3]
            dst = hosts[(hosts.index(src) + 1) % 3]
            moves.append(MoveRequest(vm, src, dst, copy_storage=True))
    return moves


@pytest.mark.parametrize("limit", [1, 2])
def test_twelve_queued_migrations_respect_the_limits(lab: Lab, config_text: str,
                                                      limit: int) -> None:
    m = migrator_for(config_text, limits={"max_outgoing_per_host": limit,
                                         "max_incoming_per_host": limit})
    moves = _ring_moves(m, lab, rounds=3)
    assert len(moves) == 12
    jobs = m.runner.submit(moves)
    t0 = time.monotonic()
    m.runner.run([j.id for j in jobs])
    makespan_s = time.monotonic() - t0
    rows = [m.store.get(j.id) for j in jobs]
    assert [r.state for r in rows] == [JobState.SUCCEEDED] * 12, [r.error for r in rows]
    assert_no_overlap_beyond(m.store, m.runner.limits)
    _figure(f"twelve_migrations_{limit}_{limit}", {
        "makespan_s": round(makespan_s, 2),
        "total_ms": [round(r.total_ms or 0) for r in rows],
        "downtime_ms": [r.downtime_ms for r in rows]})


GUEST_BLOCK_B = 4096  # the guest's own write counter lives in the disk's first block


def _raw_sha256(image: Path) -> str:
    """The disk's content past the block the running guest rewrites every heartbeat."""
    raw = image.with_suffix(".raw-check")
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(image), str(raw)], check=True)
    try:
        return hashlib.sha256(raw.read_bytes()[GUEST_BLOCK_B:]).hexdigest()
    finally:
        raw.unlink()


def test_copy_storage_keeps_the_disk_content(lab: Lab, config_text: str,
                                             tmp_path: Path) -> None:
    vm = lab.state.vm("vm4")
    source = lab.where()["vm4"]
    boots = len(heartbeat.disk_starts(vm.serial_log))
    with lab.connect(source) as conn:
        dom = conn.lookupByName("vm4")
        dom.destroy()
        image = lab.state.host(source).outside(vm.disk_path)
        noise = tmp_path / "noise.raw"
        noise.write_bytes(os.urandom(8 * MIB) + bytes(8 * MIB))
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(noise),
                        str(image)], check=True)
        dom.create()
    before = _raw_sha256(image)
    dest = "h2" if source != "h2" else "h3"
    m = migrator_for(config_text)
    [job] = m.runner.submit([MoveRequest("vm4", source, dest, copy_storage=True)])
    m.runner.run([job.id])
    assert m.store.get(job.id).state is JobState.SUCCEEDED, m.store.get(job.id).error
    after = _raw_sha256(lab.state.host(dest).outside(vm.disk_path))
    _figure("copy_storage", {"sha256": after, "matches": before == after,
                             "total_ms": m.store.get(job.id).total_ms})
    assert before == after
    assert lab.where().get("vm4") == dest
    # The guest was restarted for the test and moved while it booted: it must finish that
    # boot on the destination and keep beating (else the next test sees this reboot).
    _wait_boot(vm.serial_log, boots)
    assert_running(lab, "vm4")


def _wait_boot(log: str, boots: int, timeout_s: float = 120.0) -> None:
    """Wait until the guest's boot after `boots` earlier ones wrote a heartbeat."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(heartbeat.disk_starts(log)) > boots and heartbeat.beats_since_boot(log):
            return
        time.sleep(0.5)
    raise AssertionError(f"{log}: no heartbeat from boot {boots + 1} in {timeout_s:.0f} s")


def _gather(m: Migrator, lab: Lab, host_name: str) -> None:
    """Move every guest onto one host (per-host storage: with its disk)."""
    moves = [MoveRequest(vm, at, host_name, copy_storage=True)
             for vm, at in lab.where().items() if at != host_name]
    m.runner.run([j.id for j in m.runner.submit(moves)])
    assert set(lab.where().values()) == {host_name}


def test_maintenance_enter_empties_a_host(lab: Lab, config_text: str, tmp_path: Path) -> None:
    m = migrator_for(config_text)
    _gather(m, lab, "h1")
    path = write_config(tmp_path, config_text, rules=MUST_RULE)
    try:
        result = CliRunner().invoke(cli, ["--config", path, "maintenance", "enter", "h1",
                                            "--yes"])
        assert result.exit_code == 1, result.output  # vm4 cannot leave
        assert "vm4" in result.output and "vm4-only-on-h1" in result.output
        assert m.store.in_maintenance("h1")
        where = lab.where()
        assert where["vm4"] == "h1"
        assert all(where[v] != "h1" for v in ("vm1", "vm2", "vm3")), where
        for vm in ("vm1", "vm2", "vm3", "vm4"):
            assert_running(lab, vm)
    finally:
        result = CliRunner().invoke(cli, ["--config", path, "maintenance", "exit", "h1",
                                            "--yes"])
    assert result.exit_code == 0 and not m.store.in_maintenance("h1")


def _invoke(path: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", path, *args])


def test_rebalance_command_spreads_a_skewed_host(lab: Lab, config_text: str,
                                                 tmp_path: Path) -> None:
    """`drs rebalance --yes` on measured demand: moves off the loaded host, then holds still."""
    lab.reset_placement()  # restarts a guest that crashed in an earlier test (TCG lab limit)
    m = migrator_for(config_text)
    _gather(m, lab, "h1")
    path = write_config(tmp_path, config_text)
    for _ in range(2):  # two cycles of samples: every guest gets a measured CPU demand
        collected = _invoke(path, "collect", "--once")
        assert collected.exit_code == 0, collected.output
    held = _invoke(path, "rebalance", "--yes")  # the guests just moved: cooldown holds them
    assert held.exit_code == 0, held.output
    assert "nothing to do" in held.output and "cooldown" in held.output, held.output
    assert set(lab.where().values()) == {"h1"}
    path = write_config(tmp_path, config_text + "\n[balancer]\ncooldown_s = 0\n")
    result = _invoke(path, "rebalance", "--yes")
    assert result.exit_code == 0, result.output
    found = re.search(r"plan: imbalance ([0-9.]+) -> ([0-9.]+)", result.output)
    assert found, result.output
    before, after = (float(v) for v in found.groups())
    assert after < before
    where = lab.where()
    on_h1 = sum(1 for h in where.values() if h == "h1")
    assert 0 < on_h1 < len(where), where
    moved = [j for j in m.store.jobs(limit=len(where)) if j.plan_id is not None
             and j.finished_s is not None and j.vm_name in where]
    assert moved and all(j.state is JobState.SUCCEEDED for j in moved), moved
    assert all(where[j.vm_name] == j.destination for j in moved)
    _figure("rebalance", {"imbalance_before": before, "imbalance_after": after,
                          "moves": len(moved), "placement": where})
    for vm in where:
        assert_running(lab, vm)
    again = _invoke(path, "rebalance", "--yes")  # balanced now: no ping-pong
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.output, again.output
    assert lab.where() == where


def _regroup(config_text: str, groups: dict[str, str], default: str) -> str:
    """The lab config with each host in `groups[name]` (else `default`)."""
    blocks = config_text.split("[[hosts]]")
    for i, block in enumerate(blocks[1:], start=1):
        name = re.search(r'^name = "([^"]+)"$', block, re.M)
        assert name
        blocks[i] = re.sub(r"^group = .*$", f'group = "{groups.get(name[1], default)}"', block,
                           flags=re.M)
    return "[[hosts]]".join(blocks)


def test_evacuate_group_empties_its_hosts(lab: Lab, config_text: str, tmp_path: Path) -> None:
    """`drs evacuate --group site-a` moves every guest of h1 (with its disk) to site-b."""
    lab.reset_placement()
    m = migrator_for(config_text)
    _gather(m, lab, "h1")
    path = write_config(tmp_path, _regroup(config_text, {"h1": "site-a"}, "site-b"))
    try:
        result = _invoke(path, "evacuate", "--group", "site-a", "--yes")
        assert result.exit_code == 0, result.output
        where = lab.where()
        assert "h1" not in where.values(), where
        assert f"group site-a: {len(where)} VM(s) moved, 0 left" in result.output, result.output
        assert m.store.in_maintenance("h1")
        for vm in where:
            assert_running(lab, vm)
    finally:
        left = _invoke(path, "maintenance", "exit", "h1", "--yes")
    assert left.exit_code == 0, left.output
    _figure("evacuate", {"placement": where})


def assert_running(lab: Lab, vm: str, timeout_s: float = 30.0) -> None:
    """The guest keeps beating after its migration, without a reboot, a kernel oops or a
    memory mismatch reported by its own self-check (libvirt_drs.lab.heartbeat.Health)."""
    problem = heartbeat.wait_alive(lab.serial_log(vm), timeout_s).problem
    assert problem is None, f"{vm}: {problem}"


def _other_host(lab: Lab, source: str) -> str:
    return next(h.name for h in lab.hosts if h.name != source)


def _restart_libvirtd(lab: Lab, name: str) -> None:
    """The lab has no restart_host(): start a new libvirtd for the host the lab's way."""
    h = lab.state.host(name)
    host.start(h)
    h.mnt_ns = ""
    host.wait_ready(h)
    lab.state.save()


def test_killed_destination_libvirtd_fails_cleanly(lab: Lab, config_text: str) -> None:
    source = lab.where()["vm2"]
    dest = _other_host(lab, source)
    m = migrator_for(config_text, options={"bandwidth_mib_s": 8})
    [job] = m.runner.submit([MoveRequest("vm2", source, dest, copy_storage=True)])
    killed: list[int] = []

    def kill_when_moving(_job: object, progress: object) -> None:
        if not killed and getattr(progress, "bytes_processed", 0) > 8 * MIB:
            pid = lab.state.host(dest).pid
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        m.runner.run([job.id], kill_when_moving)
        row = m.store.get(job.id)
        assert killed, f"the migration ended before the kill: {row.state} {row.error}"
        assert row.state is JobState.FAILED and row.error
        with lab.connect(source) as conn:
            assert conn.lookupByName("vm2").isActive()
    finally:
        if killed:
            deadline = time.monotonic() + 10
            while procs.alive(killed[0]) and time.monotonic() < deadline:
                time.sleep(0.1)
            _restart_libvirtd(lab, dest)
    with lab.connect(dest) as conn:
        assert "vm2" not in [d.name() for d in conn.listAllDomains(0)]
    _figure("killed_destination", {"error": row.error})
    assert_running(lab, "vm2")


def test_killed_migrate_process_is_reconciled(lab: Lab, config_text: str,
                                              tmp_path: Path) -> None:
    source = lab.where()["vm3"]
    dest = _other_host(lab, source)
    path = write_config(tmp_path, config_text, migrator_extra="bandwidth_mib_s = 16\n")
    m = migrator_for(config_text)
    proc = subprocess.Popen([sys.executable, "-m", "libvirt_drs", "--config", path, "migrate", "vm3",
                             "--to", dest, "--yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [j for j in m.store.jobs([JobState.RUNNING]) if j.vm_name == "vm3"]
            if running and (running[0].bytes_processed or 0) > 4 * MIB:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the migration never got going: {m.store.jobs(limit=1)}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    outcome = {}
    done = threading.Event()

    def reconcile() -> None:
        outcome["r"] = migrator_for(config_text).reconcile()
        done.set()

    threading.Thread(target=reconcile, daemon=True).start()
    assert done.wait(120)
    [r] = outcome["r"]
    where = lab.where()
    assert r.state in (JobState.SUCCEEDED, JobState.FAILED)
    assert where["vm3"] == (dest if r.state is JobState.SUCCEEDED else source)
    assert not m.store.jobs([JobState.RUNNING, JobState.QUEUED])
    _figure("killed_migrate_process", {"state": str(r.state), "detail": r.detail})
