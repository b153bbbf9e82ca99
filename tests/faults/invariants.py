"""The invariants every fault case must leave intact, checked against libvirt and the DB.

1. every lab VM runs on exactly one host (libvirt, every host asked);
2. its guest kept running intact: new heartbeats reach the serial log (host clock), with
   no reboot, no kernel oops and no memory mismatch reported by its own self-check;
3. its memory size is unchanged (libvirt's max memory = the lab's configured size);
4. no migration job is left `running` (or `queued`);
5. the database agrees with libvirt: each VM's last job of the case says where it is
   (succeeded: the destination; failed / aborted / skipped: the source) and, after one
   collect cycle, the inventory (`vms.host_id`) names the host libvirt runs it on.

`check()` returns the violations as readable lines (empty = all hold) plus notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from libvirt_drs.db.models import Host, MigrationJob, Vm
from libvirt_drs.lab import heartbeat

RUNNING = 1  # VIR_DOMAIN_RUNNING


@dataclass
class Result:
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the case's own checks (not invariants)

    def __bool__(self) -> bool:  # truthy = all invariants and the case's checks hold
        return not self.violations and not self.failures


def beat_marks(lab: Any) -> dict[str, heartbeat.Mark]:
    """Where each guest's serial log stands now (heartbeats, memory reports)."""
    return {vm.name: heartbeat.mark(vm.serial_log) for vm in lab.vms}


def placement(lab: Any) -> tuple[dict[str, list[str]], dict[str, int], list[str]]:
    """VM -> hosts running it, VM -> max memory KiB, unreachable hosts."""
    import libvirt  # noqa: PLC0415

    on: dict[str, list[str]] = {}
    mem: dict[str, int] = {}
    errors = []
    for h in lab.hosts:
        try:
            with lab.connect(h.name) as conn:
                for dom in conn.listAllDomains(0):
                    if dom.state()[0] == RUNNING:
                        on.setdefault(dom.name(), []).append(h.name)
                        mem[dom.name()] = dom.maxMemory()
        except libvirt.libvirtError as exc:
            errors.append(f"{h.name}: {exc}")
    return on, mem, errors


def check(lab: Any, engine: Engine | None, since_job_id: int = 0,
          marks: dict[str, heartbeat.Mark] | None = None, collect: Any = None,
          heartbeat_timeout_s: float = 45.0) -> Result:
    """Check every invariant; `since_job_id`: only jobs with a greater id belong to the
    case; `marks`: beat_marks() before the case (to tell a reboot during the case);
    `collect`: a callable running one collect cycle into `engine` (for invariant 5b)."""
    res = Result()
    on, mem, errors = placement(lab)
    res.violations += [f"host unreachable: {e}" for e in errors]
    where: dict[str, str] = {}
    for vm in lab.vms:
        hosts = on.get(vm.name, [])
        if len(hosts) != 1:
            res.violations.append(f"{vm.name} runs on {len(hosts)} hosts: {hosts}")
            continue
        where[vm.name] = hosts[0]
        if mem.get(vm.name) != vm.mem_mib * 1024:
            res.violations.append(f"{vm.name}: max memory {mem.get(vm.name)} KiB, "
                                  f"expected {vm.mem_mib * 1024}")
    for vm in lab.vms:
        if vm.name not in where:
            continue
        since = marks.get(vm.name) if marks is not None else None
        health = heartbeat.wait_alive(lab.serial_log(vm.name), heartbeat_timeout_s, since=since)
        if health.problem is not None:
            res.violations.append(f"{vm.name}: {health.problem}")
    if engine is None:
        return res
    with Session(engine) as session:
        jobs = session.scalars(select(MigrationJob).where(MigrationJob.id > since_job_id)
                               .order_by(MigrationJob.id)).all()
        for j in jobs:
            if j.state in ("running", "queued"):
                res.violations.append(f"job {j.id} ({j.vm_name}) left {j.state}")
        last = {j.vm_name: j for j in jobs}
        for name, j in last.items():
            if j.state in ("running", "queued") or name not in where:
                continue
            expected = j.destination if j.state == "succeeded" else j.source
            if where[name] != expected:
                res.violations.append(f"job {j.id} {name} {j.source}->{j.destination} is "
                                      f"{j.state} but libvirt runs it on {where[name]}")
    if collect is not None:
        collect()
        with Session(engine) as session:
            rows = session.execute(select(Vm.name, Host.name, Vm.state, Vm.mem_mib)
                                   .join(Host, Vm.host_id == Host.id, isouter=True)).all()
        seen = {}
        for name, host_name, state, mem_mib in rows:
            if state == "gone":
                continue
            if name in seen:
                res.violations.append(f"inventory lists {name} twice")
            seen[name] = (host_name, mem_mib)
        for vm in lab.vms:
            if vm.name in where and seen.get(vm.name, (None,))[0] != where[vm.name]:
                res.violations.append(f"inventory puts {vm.name} on {seen.get(vm.name)}, "
                                      f"libvirt on {where[vm.name]}")
    return res
