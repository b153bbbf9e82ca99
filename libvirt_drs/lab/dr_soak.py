"""Disaster recovery soak on the lab (`drs bench dr-soak`): is the RPO held, and what does
a site's loss cost?

Site A = h1 and h2, site B = h3, separate storage per host. The guests run on site A and
write a counter to their disks every heartbeat. For `duration_s` the VMs are replicated at
RPO `rpo_s` through the operations `drs serve` calls (due, then replicate), and each
guest's recovery-point age is sampled every second: that is the RPO actually held. Then
site A is killed without warning (every libvirtd, virtlockd and QEMU of h1 and h2 at once)
and the site is failed over (confirmed off). Per guest, the writes lost are read from the
guest itself: the last counter it printed on site A minus the counter it found on its disk
when it booted on site B (one write per heartbeat, so writes x heartbeat = seconds lost).

A benchmark, not a test: it reports figures and exits non-zero when the RPO was not held or
a guest was lost; the suite runs a short version (tests/lab/test_dr_soak.py).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from libvirt_drs.lab import heartbeat
from libvirt_drs.lab.lab import Lab
from libvirt_drs.lab.pool import up_in_pool
from libvirt_drs.lab.soak import dist

DR_LAB_PREFIX = "drsoak"
DR_LAB_BASE = "127.0.0.221"
RECOVERY_DIR = "/var/lib/libvirt/drs-replicas"
SAMPLE_S = 1.0


@dataclass(frozen=True)
class DrSoakSpec:
    duration_s: float = 600.0
    rpo_s: float = 30.0
    guests: int = 4
    disk_mib: int = 32
    burn_pct: int = 5
    boot_timeout_s: float = 120.0


@dataclass
class GuestLoss:
    vm: str
    last_written: int  # the counter of its last heartbeat on site A
    found_at_boot: int | None  # the counter it read from its disk on site B
    point_age_s: float  # the recovery point's age when the failover began
    heartbeat_s: float
    resumed: bool

    @property
    def lost_writes(self) -> int | None:
        # the guest prints after its write lands, so a write done but not yet printed
        # shows as -1: no write lost
        return None if self.found_at_boot is None else max(0, self.last_written - self.found_at_boot)

    @property
    def lost_s(self) -> float | None:
        return None if self.lost_writes is None else self.lost_writes * self.heartbeat_s


@dataclass
class DrSoakResult:
    spec: dict[str, Any]
    ages_s: list[float] = field(default_factory=list)
    points: int = 0
    failed_points: int = 0
    bytes_sent: int = 0
    failover_s: float | None = None  # the command's own time, start to all running
    all_beating_s: float | None = None  # start of the failover to every guest's heartbeat
    losses: list[GuestLoss] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "recovery_point_age_s": dist(self.ages_s),
            "age_samples": len(self.ages_s),
            "points": self.points, "failed_points": self.failed_points,
            "bytes_sent": self.bytes_sent,
            "failover_s": None if self.failover_s is None else round(self.failover_s, 2),
            "all_beating_s": None if self.all_beating_s is None else round(self.all_beating_s, 2),
            "guests": [{"vm": g.vm, "last_written": g.last_written,
                        "found_at_boot": g.found_at_boot, "lost_writes": g.lost_writes,
                        "lost_s": g.lost_s, "point_age_s": round(g.point_age_s, 2),
                        "resumed": g.resumed} for g in self.losses],
            "errors": self.errors, "wall_s": round(self.wall_s, 1), "clean": self.clean}

    @property
    def clean(self) -> bool:
        ages = dist(self.ages_s)
        rpo = float(self.spec["rpo_s"])
        return (not self.errors and ages is not None and ages["p95"] < rpo
                and len(self.losses) == int(self.spec["guests"])
                and all(g.resumed and g.lost_s is not None and g.lost_s <= rpo
                        for g in self.losses))


def start_lab(spec: DrSoakSpec, config_dir: Path | None = None) -> Lab:
    homes = ",".join("h1" if i % 2 == 0 else "h2" for i in range(spec.guests))
    return up_in_pool(DR_LAB_PREFIX, DR_LAB_BASE, config_dir=config_dir, n_hosts=3,
                      n_vms=spec.guests, placement_text=homes, storage="per-host",
                      disk_mib=spec.disk_mib, burn=str(spec.burn_pct))


def write_config(lab: Lab, path: Path, rpo_s: float) -> Path:
    groups = {"h1": "site-a", "h2": "site-a", "h3": "site-b"}
    hosts = "".join(f'[[hosts]]\nname = "{h.name}"\nuri = "{h.uri}"\ngroup = "{groups[h.name]}"\n'
                    for h in lab.hosts)
    vms = ", ".join(f'"{vm.name}"' for vm in lab.vms)
    path.write_text(f'[database]\nurl = "sqlite:///{path.parent}/drs.sqlite"\n{hosts}'
                    f'[replication]\n[[replication.policies]]\nname = "dr"\nvms = [{vms}]\n'
                    f'primary = "site-a"\nrecovery = "site-b"\nrecovery_dir = "{RECOVERY_DIR}"\n'
                    f"rpo_s = {rpo_s}\n")
    return path


def run(lab: Lab, spec: DrSoakSpec,
        on_progress: Callable[[float, str], None] | None = None,
        workdir: Path | None = None) -> DrSoakResult:
    """Replicate for spec.duration_s, then kill site A and fail it over (see the module).
    The config and database go into `workdir` (kept: a test goes on from them), else into
    a temporary directory."""
    from libvirt_drs import config as config_mod  # noqa: PLC0415
    from libvirt_drs.db import replication as store  # noqa: PLC0415
    from libvirt_drs.db import schema  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415
    from libvirt_drs.operations import replication as ops  # noqa: PLC0415
    from libvirt_drs.operations.caller import cli_caller  # noqa: PLC0415
    from libvirt_drs.operations.context import Cluster  # noqa: PLC0415

    result = DrSoakResult(spec=asdict(spec))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="drs-dr-soak-") as tmp:
        where = workdir or Path(tmp)
        cfg = config_mod.load(str(write_config(lab, where / "drs.toml", spec.rpo_s)))
        engine = make_engine(cfg.database_url)
        schema.upgrade(engine)
        cl = Cluster(cfg, engine, actor="dr-soak")
        caller = cli_caller()
        try:
            # the first full points are the seeding, not the steady state: sample after them
            for o in ops.replicate(cl, caller):
                if o.point is None:
                    result.errors.append(f"first point of {o.vm}: {o.error}")
            if result.errors:
                return result
            end = time.monotonic() + spec.duration_s
            next_sample = time.monotonic()
            while time.monotonic() < end:
                for vm in ops.due(cl, caller):
                    for o in ops.replicate(cl, caller, (vm,)):
                        result.points += o.point is not None
                        result.failed_points += o.point is None
                if time.monotonic() >= next_sample:
                    now = cl.clock()
                    ages = [now - p.taken_s for p in store.latest(engine).values()]
                    result.ages_s.extend(ages)
                    next_sample += SAMPLE_S
                    if on_progress:
                        left = end - time.monotonic()
                        on_progress(max(0.0, left), f"oldest point {max(ages):.1f} s")
                time.sleep(0.1)
            result.bytes_sent = sum(store.bytes_sent(engine).values())
            _fail_over(lab, cl, caller, result)
        finally:
            cl.close()
            engine.dispose()
    result.wall_s = time.monotonic() - started
    return result


def _fail_over(lab: Lab, cl: Any, caller: Any, result: DrSoakResult) -> None:
    from libvirt_drs.db import replication as store  # noqa: PLC0415
    from libvirt_drs.operations import replication as ops  # noqa: PLC0415

    logs = {vm.name: vm.serial_log for vm in lab.vms}
    for name in ("h1", "h2"):
        lab.kill_host(name)  # the site is lost without warning
    killed_s = cl.clock()
    last = {vm: heartbeat.last(log) for vm, log in logs.items()}
    boots = {vm: len(heartbeat.disk_starts(log)) for vm, log in logs.items()}
    marks = {vm: heartbeat.mark(log) for vm, log in logs.items()}
    ages = {vm: killed_s - p.taken_s for vm, p in store.latest(cl.engine).items()}
    t0 = time.monotonic()
    done = ops.failover(cl, caller, "site-a", hosts_off_confirmed=True)
    result.failover_s = done.seconds
    result.errors += [f"{vm}: {why}" for vm, why in (*done.refused, *done.failed)]
    deadline = time.monotonic() + 120
    beating: dict[str, float] = {}
    while len(beating) < len(logs) and time.monotonic() < deadline:
        for vm, log in logs.items():
            if vm not in beating and len(heartbeat.read(log)) > marks[vm].beats:
                beating[vm] = time.monotonic() - t0
        time.sleep(0.2)
    if len(beating) == len(logs):
        result.all_beating_s = max(beating.values())
    for vm, log in logs.items():
        starts = heartbeat.disk_starts(log)[boots[vm]:]
        beat = last[vm]
        result.losses.append(GuestLoss(
            vm=vm, last_written=beat.disk_writes if beat else 0,
            found_at_boot=starts[0] if starts else None, point_age_s=ages.get(vm, -1.0),
            heartbeat_s=lab.state.vm(vm).heartbeat_ms / 1000, resumed=vm in beating))
