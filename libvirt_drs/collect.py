"""Wiring of the collectors to the config and the database (used by `drs collect` and the
service's collect job): build the sources, run a cycle, write it, say what happened."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from libvirt_drs.collectors.cycle import CapacityOverride, Collector, CycleResult
from libvirt_drs.collectors.libvirt_source import LibvirtSource
from libvirt_drs.config import Config
from libvirt_drs.db.retention import RetentionStats, apply_retention
from libvirt_drs.db.samples import SampleStore, WriteStats
from libvirt_drs.errors import UserError
from libvirt_drs.libvirt_errors import first_line
from libvirt_drs.secrets import redact

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


def run_forever(job: CollectJob, stop: threading.Event) -> None:
    """`drs collect`: a cycle every collector.interval_s (phase kept, overruns skipped) and
    retention every service.retention_interval_s, until `stop` is set."""
    interval = job.cfg.collector.interval_s
    retention_every = job.cfg.service.retention_interval_s
    start = time.monotonic()
    next_retention = start + min(retention_every, 60.0)
    tick = 0
    while not stop.is_set():
        one_cycle(job, raise_errors=False)
        if time.monotonic() >= next_retention:
            _retention(job)
            next_retention = time.monotonic() + retention_every
        tick += 1
        next_at = start + tick * interval
        now = time.monotonic()
        if next_at < now:  # the cycle overran: skip the missed ticks, keep the phase
            skipped = int((now - next_at) // interval) + 1
            log.warning("cycle overran the %.1f s interval; skipping %d tick(s)", interval, skipped)
            tick += skipped
            next_at = start + tick * interval
        stop.wait(max(0.0, next_at - time.monotonic()))


def one_cycle(job: CollectJob, raise_errors: bool) -> CycleOutcome | None:
    """Run and write one cycle and log its line; a database error is a UserError when
    `raise_errors`, else logged (the cycle is dropped) and None."""
    try:
        outcome = job.run_cycle()
    except SQLAlchemyError as exc:
        detail = redact(first_line(getattr(exc, "orig", exc), fallback=type(exc).__name__))
        if raise_errors:
            raise UserError(f"writing samples failed: {detail}") from None
        log.error("writing samples failed (cycle dropped): %s", detail)
        return None
    log.info("%s", summary_line(outcome))
    return outcome


def _retention(job: CollectJob) -> None:
    try:
        stats = job.apply_retention()
    except SQLAlchemyError as exc:
        log.error("retention failed: %s",
                  redact(first_line(getattr(exc, "orig", exc), fallback=type(exc).__name__)))
        return
    if stats.buckets_rolled or stats.raw_deleted or stats.rollups_deleted or stats.vms_deleted:
        log.info("retention: %d buckets rolled up, %d raw samples, %d rollups, %d gone VMs "
                 "deleted", stats.buckets_rolled, stats.raw_deleted, stats.rollups_deleted,
                 stats.vms_deleted)
