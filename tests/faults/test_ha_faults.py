"""HA on the lab: a real `drs serve` (leader) watches three hosts running protected
guests on shared storage, with libvirt's lock manager on.

- A host is killed (libvirtd, virtlockd and its QEMUs SIGKILLed): the service fences it
  with the lab's fence command and the guests run on the other hosts within 60 s of the
  kill, each booting from its own disk (the disk's write counter continues); the host,
  started again, stays out of service until `drs ha clear`.
- A host is partitioned (its libvirtd port dropped, its guests still running) and its
  fence command fails: nothing is restarted elsewhere, and the lock manager refuses a
  second QEMU on a running guest's disk.
- Not enough room for all the guests of a killed host: the highest priority runs, the
  others wait, each with the reason.
The invariants hold after each: every VM on at most one host, never two QEMUs on a disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.lab import heartbeat
from tests.faults.conftest import dropped_migration_traffic
from tests.service.serve_proc import ServeProcess, free_port, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.fault, pytest.mark.timeout(900)]
DRS = [sys.executable, "-m", "libvirt_drs"]
PRIORITY = {"vm1": "high", "vm2": "medium", "vm3": "low"}
FIGURES = Path(__file__).resolve().parents[2] / "reports" / "ha-restart-figures.json"


@pytest.fixture(scope="module")
def ha_lab(make_lab: Any) -> Any:
    return make_lab(n_hosts=3, n_vms=3, placement_text="1,1,1", burn="10", disk_mib=16,
                    storage="shared")


def _config(lab: Any, tmp_path: Path, fence: dict[str, list[str]]) -> Path:
    url = f"sqlite:///{tmp_path / 'drs.sqlite'}"
    schema.upgrade(make_engine(url))
    text = (f'[database]\nurl = "{url}"\n[collector]\ninterval_s = 2\ntimeout_s = 1.5\n'
            '[balancer]\nmode = "manual"\n[ha]\nenabled = true\nfailure_intervals = 2\n'
            'fence_timeout_s = 30\n')
    for vm, priority in PRIORITY.items():
        text += f'[[ha.groups]]\nname = "{vm}"\nvms = ["{vm}"]\npriority = "{priority}"\n'
    for h in lab.hosts:
        text += (f'[[hosts]]\nname = "{h.name}"\nuri = "{h.uri}"\ncpu_cores = 1.0\n'
                 f'mem_mib = {lab.state.host_mem_mib}\nstorage_group = "shared"\n'
                 f"fence_command = {json.dumps(fence[h.name])}\n")
    path = tmp_path / "drs.toml"
    path.write_text(text)
    return path


def _drs(config: Path, *args: str) -> Any:
    out = subprocess.run([*DRS, "--config", str(config), *args, "--json"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _running(lab: Any, hosts: list[str]) -> dict[str, list[str]]:
    """VM -> the hosts (of `hosts`) whose libvirt runs it (virsh, as an operator would)."""
    on: dict[str, list[str]] = {}
    for h in lab.hosts:
        if h.name not in hosts:
            continue
        out = subprocess.run([shutil.which("virsh") or "virsh", "-c", h.uri, "list", "--name"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        for vm in out.split():
            on.setdefault(vm, []).append(h.name)
    return on


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    procs: list[ServeProcess] = []
    yield procs
    for p in procs:
        p.stop()


def _start(serve: list[ServeProcess], config: Path, tmp_path: Path) -> ServeProcess:
    p = ServeProcess(config, free_port(), ["--balance-interval", "3600",
                                           "--first-balance-delay", "3600"],
                     tmp_path / f"serve{len(serve)}.log")
    serve.append(p)
    assert wait_for(lambda: p.get("/healthz")[0] == 200, 60), p.log.read_text()
    assert wait_for(lambda: all(x["definition_saved_at"] for x in _drs(config, "ha", "status")
                                ["protected"]), 60), p.log.read_text()
    return p


def test_a_killed_host_is_fenced_and_its_guests_restart_elsewhere(
        ha_lab: Any, tmp_path: Path, serve: list[ServeProcess]) -> None:
    lab = ha_lab
    lab.reset_placement()
    fence = {h.name: [*DRS, "lab", "fence", "--name", lab.name, h.name] for h in lab.hosts}
    config = _config(lab, tmp_path, fence)
    proc = _start(serve, config, tmp_path)
    before = {vm.name: heartbeat.read(vm.serial_log)[-1].disk_writes for vm in lab.vms}
    assert all(n > 0 for n in before.values()), before  # they write their disks
    starts = {vm.name: len(heartbeat.disk_starts(vm.serial_log)) for vm in lab.vms}

    t_kill = time.monotonic()
    lab.kill_host("h1")  # a power cut: libvirtd, virtlockd and the guests at once

    def restarted() -> bool:
        on = _running(lab, ["h2", "h3"])
        return all(len(on.get(vm, [])) == 1 for vm in PRIORITY) and all(
            len(heartbeat.disk_starts(vm.serial_log)) > starts[vm.name] for vm in lab.vms)

    assert wait_for(restarted, 90, 0.5), proc.log.read_text()[-3000:]
    to_running_s = time.monotonic() - t_kill
    assert to_running_s < 60.0, f"{to_running_s:.1f} s from the kill to all 3 running"
    for vm in lab.vms:  # booted from its own disk: the counter goes on from where it stopped
        start = heartbeat.disk_starts(vm.serial_log)[-1]
        assert start >= before[vm.name], (vm.name, start, before[vm.name])
        assert heartbeat.wait_alive(vm.serial_log, 45).problem is None, vm.name
    status = _drs(config, "ha", "status")
    assert [(h["host"], h["state"]) for h in status["hosts"]] == [("h1", "fenced")]
    restarts = {r["vm"]: r for r in status["restarts"]}
    assert {vm: r["state"] for vm, r in restarts.items()} == dict.fromkeys(PRIORITY, "running")
    order = sorted(restarts.values(), key=lambda r: r["id"])
    assert [r["vm"] for r in order] == ["vm1", "vm2", "vm3"]  # by priority
    actions = [e["action"] for e in _drs(config, "audit", "--actor", "drs-serve")]
    assert {"ha.suspected", "ha.fenced", "ha.restart_running"} <= set(actions)
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(
        {"kill_to_all_running_s": round(to_running_s, 1),
         "seconds_to_running": {r["vm"]: r["seconds_to_running"] for r in order}}))

    # h1 comes back: out of service until an operator clears it
    lab.start_host("h1")
    time.sleep(6)
    assert _drs(config, "ha", "status")["hosts"][0]["state"] == "fenced"
    hosts = {h["name"]: h for h in _drs(config, "status")["hosts"]}
    assert hosts["h1"]["state"] == "maintenance"
    cleared = _drs(config, "ha", "clear", "h1", "--yes")
    assert sorted(cleared["removed_definitions"]) == ["vm1", "vm2", "vm3"]
    assert _drs(config, "ha", "status")["hosts"] == []
    on = _running(lab, ["h1", "h2", "h3"])
    assert all(len(on.get(vm, [])) == 1 for vm in PRIORITY), on  # once each, never twice


def test_a_partitioned_host_whose_fence_fails_keeps_its_guests(
        ha_lab: Any, tmp_path: Path, serve: list[ServeProcess]) -> None:
    lab = ha_lab
    # the host that runs the most guests now (h1 on a fresh lab; after the kill case the
    # guests stay where HA restarted them: the lab's shared directory is a local file
    # system, so libvirt refuses to live-migrate their disks back as unsafe)
    where = lab.where()
    victim = max({h for h in where.values()}, key=lambda h: sum(v == h for v in where.values()))
    guests = sorted(vm for vm, h in where.items() if h == victim)
    others = [h.name for h in lab.hosts if h.name != victim]
    fence = {h.name: ["false"] for h in lab.hosts}  # every fence fails
    config = _config(lab, tmp_path, fence)
    proc = _start(serve, config, tmp_path)
    marks = {vm.name: len(heartbeat.disk_starts(vm.serial_log)) for vm in lab.vms}
    with dropped_migration_traffic(lab.state.host(victim).address, ports="16509"):
        assert wait_for(lambda: any(h["state"] == "fence_failed" for h in
                                    _drs(config, "ha", "status")["hosts"]), 60), \
            proc.log.read_text()[-3000:]
        time.sleep(6)  # a few more HA rounds: still nothing restarted
        on = _running(lab, others)
        assert not [vm for vm in guests if vm in on], on  # none of its guests started twice
        assert {vm.name: len(heartbeat.disk_starts(vm.serial_log)) for vm in lab.vms} == marks
        for vm in lab.vms:  # still running where they were, beating
            assert heartbeat.wait_alive(vm.serial_log, 30).problem is None, vm.name
        assert f"fencing {victim} FAILED" in proc.log.read_text()
        status = _drs(config, "ha", "status")
        assert status["restarts"] == [] and status["hosts"][0]["fence_attempts"] >= 1
        assert status["hosts"][0]["host"] == victim
        _second_qemu_on_a_running_disk_is_refused(lab, guests[0], others[0])
    # the partition heals: h1 answers again and is no longer suspected
    assert wait_for(lambda: _drs(config, "ha", "status")["hosts"] == [], 30)


def _second_qemu_on_a_running_disk_is_refused(lab: Any, vm: str, other: str) -> None:
    """libvirt's lock manager: the disk of `vm` (running, partitioned) cannot be started
    on `other`."""
    import libvirt  # noqa: PLC0415

    xml = _copy_xml(lab, vm)
    with lab.connect(other) as conn:
        dom = conn.defineXML(xml)
        try:
            with pytest.raises(libvirt.libvirtError) as refused:
                dom.create()
            message = str(refused.value)
            assert "lock" in message.lower() or "resource busy" in message.lower(), message
        finally:
            dom.undefine()


def _copy_xml(lab: Any, vm: str) -> str:
    """vm's lab definition as a second domain (new name and UUID, the same disk)."""
    import uuid  # noqa: PLC0415

    xml = lab.state.vm(vm).xml
    name = f"{vm}-twin"
    return (xml.replace(f"<name>{vm}</name>", f"<name>{name}</name>")
            .replace(lab.state.vm(vm).uuid, str(uuid.uuid4()))
            .replace(lab.state.vm(vm).serial_log, lab.state.vm(vm).serial_log + ".twin"))


def test_without_room_for_all_the_high_priority_guests_run_first(
        ha_lab: Any, tmp_path: Path, serve: list[ServeProcess]) -> None:
    lab = ha_lab
    where = lab.where()
    victim = max(set(where.values()), key=lambda h: sum(v == h for v in where.values()))
    guests = sorted((vm for vm, h in where.items() if h == victim),
                    key=lambda vm: ["high", "medium", "low"].index(PRIORITY[vm]))
    assert len(guests) >= 2, where  # the cases before leave at least two on one host
    others = [h.name for h in lab.hosts if h.name != victim]
    target, spare = others[0], others[1]
    # room on `target` for exactly one more guest; `spare` takes no HA restarts
    used = sum(lab.state.vm(vm).mem_mib for vm, h in where.items() if h == target)
    fence = {h.name: [*DRS, "lab", "fence", "--name", lab.name, h.name] for h in lab.hosts}
    config = _config(lab, tmp_path, fence)
    blocks = config.read_text().split("[[hosts]]")
    blocks = [b.replace(f"mem_mib = {lab.state.host_mem_mib}",
                        f"mem_mib = {used + lab.state.vm(guests[0]).mem_mib + 64}")
              if f'name = "{target}"' in b else
              b + "ha_target = false\n" if f'name = "{spare}"' in b else b for b in blocks]
    config.write_text("[[hosts]]".join(blocks))
    proc = _start(serve, config, tmp_path)
    lab.kill_host(victim)

    def settled() -> bool:
        restarts = _drs(config, "ha", "status")["restarts"]
        return len(restarts) == len(guests) and any(r["state"] == "running" for r in restarts)

    assert wait_for(settled, 90, 0.5), proc.log.read_text()[-3000:]
    time.sleep(4)  # one more round: the others still wait
    restarts = {r["vm"]: r for r in _drs(config, "ha", "status")["restarts"]}
    assert restarts[guests[0]]["state"] == "running"  # the highest priority first
    assert restarts[guests[0]]["destination"] == target
    for vm in guests[1:]:
        assert restarts[vm]["state"] == "waiting", restarts[vm]
        assert "waits" in restarts[vm]["detail"] and "memory" in restarts[vm]["detail"]
    on = _running(lab, others)
    assert on.get(guests[0]) == [target] and not [vm for vm in guests[1:] if vm in on], on
    assert "waiting for capacity" in proc.log.read_text()
