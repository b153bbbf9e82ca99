"""Wiring of the collectors to the config and the database (used by `drs collect` and the
service's collect job): build the sources, run a cycle, write it, say what happened."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from libvirt_drs.collectors.cycle import CapacityOverride, Collector, CycleResult
from libvirt_drs.collectors.libvirt_source import LibvirtSource
from libvirt_drs.config import Config
from libvirt_drs.db.retention import RetentionStats, apply_retention
from libvirt_drs.db.samples import SampleStore, WriteStats

log = logging.getLogger("libvirt_drs.collect")
DAY_S = 86400.0


def make_collector(cfg: Config) -> Collector:
    sources = [LibvirtSource(h.name, h.uri) for h in cfg.hosts]
    overrides = {h.name: CapacityOverride(h.cpu_cores, h.mem_mib) for h in cfg.hosts}
    return Collector(sources, cfg.collector.timeout_s, overrides)


@dataclass(frozen=True)
class CycleOutcome:
    result: CycleResult
    written: WriteStats
    write_ms: float


class CollectJob:
    """One collector process: the Collector (rate state, connections) and the store."""

    def __init__(self, cfg: Config, engine: Engine, collector: Collector | None = None) -> None:
        self.cfg = cfg
        self.engine = engine
        self.collector = collector or make_collector(cfg)
        self.store = SampleStore(engine)
        self.store.sync_hosts(cfg.hosts)
        self.cycles = 0

    def run_cycle(self, write: bool = True) -> CycleOutcome:
        result = self.collector.run_cycle()
        t0 = time.perf_counter()
        written = self.store.write_cycle(result) if write else WriteStats(0, 0, 0, 0, 0)
        self.cycles += 1
        return CycleOutcome(result, written, (time.perf_counter() - t0) * 1000.0)

    def apply_retention(self, now_s: float | None = None) -> RetentionStats:
        c = self.cfg.collector
        return apply_retention(self.engine, time.time() if now_s is None else now_s,
                               c.raw_retention_days * DAY_S, c.rollup_retention_days * DAY_S)

    def close(self) -> None:
        self.collector.close()


def summary_line(outcome: CycleOutcome) -> str:
    """One log line per cycle: hosts answered, VMs, samples, time, and which hosts are stale."""
    r, w = outcome.result, outcome.written
    line = (f"cycle: {len(r.fresh_hosts)}/{len(r.hosts)} hosts, {len(r.vms)} VMs, "
            f"{w.vm_samples}+{w.host_samples} samples, poll {r.duration_ms:.0f} ms, "
            f"write {outcome.write_ms:.0f} ms")
    changes = [f"{n} {what}" for n, what in ((w.new_vms, "new"), (w.moved_vms, "moved"),
                                             (w.gone_vms, "gone")) if n]
    if changes:
        line += "; VMs " + ", ".join(changes)
    stale = [h for h in r.hosts if not h.ok]
    if stale:
        line += "; stale: " + ", ".join(f"{h.name} ({h.error})" for h in stale)
    return line
