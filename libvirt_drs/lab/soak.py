"""Migration soak on the lab (`drs bench migrate-soak`): does a guest survive live migration?

Consecutive live migrations of burning, memory-dirtying guests between two lab hosts, every
`capped_every`-th one bandwidth-capped (long migrations are where guests used to crash),
while `busy` extra processes load the machine. After each migration the guest's serial log
is judged (libvirt_drs.lab.heartbeat.wait_alive): it must keep beating, without a reboot, a kernel
oops or a memory mismatch from its own self-check; a thread timestamps every heartbeat
line on the host clock as it arrives, so pauses are measured the way a user would see them.

A benchmark, not a test: it reports figures (and exits non-zero on any lost guest); the
test suite runs a short version (tests/lab/test_lab_soak.py).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from libvirt_drs.lab import heartbeat
from libvirt_drs.lab.lab import Lab
from libvirt_drs.lab.pool import up_in_pool

SOAK_LAB_PREFIX = "soak"
SOAK_LAB_BASE = "127.0.0.201"


@dataclass(frozen=True)
class SoakSpec:
    migrations: int = 200
    guests: int = 2
    mem_mib: int = 256
    touch_mib: int = 128
    dirty_mib_s: int = 8
    burn_pct: int = 20
    capped_every: int = 2  # every 2nd migration capped: half of them
    bandwidth_mib_s: int = 28
    busy: int = 2  # extra busy processes loading the machine
    heartbeat_ms: int = 200
    resume_timeout_s: float = 20.0


@dataclass
class MigrationFigure:
    index: int
    vm: str
    source: str
    destination: str
    capped: bool
    total_s: float
    downtime_ms: int | None
    heartbeat_gap_s: float  # longest pause between heartbeat lines around this migration
    problem: str | None = None


@dataclass
class SoakResult:
    spec: dict[str, Any]
    qemu: str
    libvirt: str
    migrations: list[MigrationFigure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # migrations libvirt refused or failed
    wall_s: float = 0.0
    load_avg_1m: list[float] = field(default_factory=list)

    @property
    def problems(self) -> list[MigrationFigure]:
        return [m for m in self.migrations if m.problem is not None]

    def summary(self) -> dict[str, Any]:
        capped = [m.total_s for m in self.migrations if m.capped]
        free = [m.total_s for m in self.migrations if not m.capped]
        downtimes = [m.downtime_ms for m in self.migrations if m.downtime_ms is not None]
        gaps = [m.heartbeat_gap_s for m in self.migrations]
        kinds = {"crashes": ("oops", "rebooted"), "memory_mismatches": ("memory mismatch",),
                 "stopped": ("stopped beating",)}
        counts = {key: sum(1 for m in self.problems if any(w in (m.problem or "") for w in words))
                  for key, words in kinds.items()}
        return {
            "qemu": self.qemu, "libvirt": self.libvirt,
            "migrations": len(self.migrations), "failed_migrations": len(self.errors),
            "capped": len(capped), "uncapped": len(free),
            "capped_total_s": dist(capped), "uncapped_total_s": dist(free),
            "downtime_ms": dist([float(d) for d in downtimes]),
            "heartbeat_gap_s_max": round(max(gaps, default=0.0), 3),
            "heartbeat_gaps_over_1s": sum(1 for g in gaps if g >= 1.0),
            # the migrations with the longest pauses, longest first: capped or not, downtime
            "longest_pauses": [asdict(m) for m in sorted(
                self.migrations, key=lambda m: (-m.heartbeat_gap_s, m.index))[:5]],
            **counts,
            "problems": [asdict(m) for m in self.problems][:20],
            "errors": self.errors[:20],
            "wall_s": round(self.wall_s, 1),
            "load_avg_1m": dist(self.load_avg_1m),
            "spec": self.spec,
        }

    @property
    def clean(self) -> bool:
        gaps_ok = all(m.heartbeat_gap_s < 1.0 for m in self.migrations)
        return not self.problems and not self.errors and gaps_ok and bool(self.migrations)


def dist(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"min": round(ordered[0], 3), "p50": round(statistics.median(ordered), 3),
            "p95": round(p95, 3), "max": round(ordered[-1], 3)}


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _downtime_ms(lab: Lab, host: str, vm: str) -> int | None:
    import libvirt  # noqa: PLC0415

    try:
        with lab.connect(host) as conn:
            stats = conn.lookupByName(vm).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError:
        return None
    value = stats.get("downtime")
    return int(value) if value is not None else None


class BusyLoad:
    """`n` busy processes (pids tracked, ended on exit): the machine under load."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BusyLoad:
        for _ in range(self._n):
            self._procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.kill()
        for proc in self._procs:
            proc.wait()


def start_lab(spec: SoakSpec, config_dir: Path | None = None) -> Lab:
    return up_in_pool(SOAK_LAB_PREFIX, SOAK_LAB_BASE, config_dir=config_dir, n_hosts=2,
                      n_vms=spec.guests, placement_text="even", burn=str(spec.burn_pct),
                      mem=str(spec.mem_mib), touch=str(spec.touch_mib),
                      dirty_mib_s=spec.dirty_mib_s, heartbeat_ms=spec.heartbeat_ms)


def run(lab: Lab, spec: SoakSpec,
        on_migration: Callable[[MigrationFigure], None] | None = None) -> SoakResult:
    """`spec.migrations` consecutive migrations on a 2-host lab started by start_lab()."""
    result = SoakResult(spec=asdict(spec), qemu=_version(["qemu-system-x86_64", "--version"]),
                        libvirt=_version(["libvirtd", "--version"]))
    hosts = [h.name for h in lab.hosts]
    names = [vm.name for vm in lab.vms]
    started = time.monotonic()
    with BusyLoad(spec.busy), heartbeat.ArrivalWatch({n: lab.serial_log(n) for n in names}) as watch:
        time.sleep(2.0)  # the load settles; the watch has seen some beats
        for i in range(spec.migrations):
            vm = names[i % len(names)]
            source = lab.where().get(vm)
            if source is None:
                result.errors.append(f"#{i}: {vm} runs nowhere")
                lab.reset_placement()
                continue
            dest = next(h for h in hosts if h != source)
            capped = spec.capped_every > 0 and i % spec.capped_every == 0
            mark = heartbeat.mark(lab.serial_log(vm))
            t0 = time.monotonic()
            try:
                lab.migrate(vm, dest, bandwidth_mib_s=spec.bandwidth_mib_s if capped else 0)
            except Exception as exc:  # noqa: BLE001 - a failed migration is a figure
                result.errors.append(f"#{i} {vm} {source}->{dest}: {exc}")
                continue
            total_s = time.monotonic() - t0
            health = heartbeat.wait_alive(lab.serial_log(vm), spec.resume_timeout_s, since=mark,
                                          beats=3)
            figure = MigrationFigure(
                index=i, vm=vm, source=source, destination=dest, capped=capped,
                total_s=round(total_s, 3), downtime_ms=_downtime_ms(lab, dest, vm),
                heartbeat_gap_s=round(watch.max_gap_s(vm, t0, time.monotonic()), 3),
                problem=health.problem)
            result.migrations.append(figure)
            result.load_avg_1m.append(round(os.getloadavg()[0], 2))
            if on_migration:
                on_migration(figure)
            if figure.problem is not None and lab.dead(lab.state.vm(vm)):
                lab.reset_placement()  # start the lost guest afresh and go on counting
    result.wall_s = time.monotonic() - started
    return result
