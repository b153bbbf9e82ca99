"""`drs collect [--once]` and `drs status [--json]`."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import click
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from libvirt_drs.cli.common import AppContext, console, json_option, pass_app, print_json
from libvirt_drs.collect import CollectJob, summary_line
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.snapshot import stale_after_s
from libvirt_drs.db.status import HostView, cluster_imbalance, load_hosts, load_vms, target_imbalance
from libvirt_drs.errors import UserError
from libvirt_drs.libvirt_errors import first_line
from libvirt_drs.secrets import redact

log = logging.getLogger("libvirt_drs.collect")


def _engine(app: AppContext) -> Any:
    engine = make_engine(app.config.database_url)
    schema.require_current(engine)
    return engine


@click.command("collect")
@click.option("--once", is_flag=True,
              help="Poll twice PRIME_S apart (a CPU rate needs two readings), write one "
                   "cycle, exit.")
@click.option("--prime-s", type=click.FloatRange(0.1, 600), default=2.0, show_default=True,
              help="With --once: seconds between the priming poll and the written one.")
@pass_app
def collect(app: AppContext, once: bool, prime_s: float) -> None:
    """Sample every configured host each collector.interval_s and write the samples."""
    cfg = app.config
    if not cfg.hosts:
        raise UserError(f"{cfg.path}: hosts: no hosts configured, nothing to collect")
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    job = CollectJob(cfg, _engine(app))
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    try:
        if once:
            job.run_cycle(write=False)
            stop.wait(prime_s)
            _one_cycle(job, raise_errors=True)
        else:
            _loop(job, stop)
    except KeyboardInterrupt:
        log.info("interrupted; %d cycles done", job.cycles)
    finally:
        signal.signal(signal.SIGTERM, previous)
        job.close()


def _loop(job: CollectJob, stop: threading.Event) -> None:
    interval = job.cfg.collector.interval_s
    retention_every = job.cfg.service.retention_interval_s
    start = time.monotonic()
    next_retention = start + min(retention_every, 60.0)
    tick = 0
    while not stop.is_set():
        _one_cycle(job, raise_errors=False)
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


def _one_cycle(job: CollectJob, raise_errors: bool) -> None:
    try:
        outcome = job.run_cycle()
    except SQLAlchemyError as exc:
        detail = redact(first_line(getattr(exc, "orig", exc), fallback=type(exc).__name__))
        if raise_errors:
            raise UserError(f"writing samples failed: {detail}") from None
        log.error("writing samples failed (cycle dropped): %s", detail)
        return
    log.info("%s", summary_line(outcome))


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


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def status_data(app: AppContext, window_s: float | None, now_s: float | None = None) -> dict:
    cfg = app.config
    engine = _engine(app)
    now = time.time() if now_s is None else now_s
    c = cfg.collector
    window = window_s if window_s is not None else max(3 * c.interval_s, 60.0)
    configured = {h.name for h in cfg.hosts}
    hosts = [h for h in load_hosts(engine, now, window, stale_after_s(cfg))
             if h.name in configured or not configured]
    vms = load_vms(engine, now, window)
    engine.dispose()
    eligible = [h for h in hosts if h.eligible]
    imbalance = cluster_imbalance(hosts, cfg.balancer.policy.cpu_weight, cfg.balancer.policy.mem_weight)
    return {
        "hosts": [{"name": h.name, "cpu_load": _round(h.cpu_load), "mem_load": _round(h.mem_load),
                   "vms": h.vms, "stale": h.stale, "state": h.state, "error": _why_stale(h, now),
                   "cpu_cores": h.cpu_cores, "mem_mib": h.mem_mib} for h in hosts],
        "vms": [{"name": v.name, "host": v.host, "cpu_cores": _round(v.cpu_cores),
                 "mem_mib": _round(v.mem_used_mib, 1), "uuid": v.uuid, "vcpus": v.vcpus,
                 "mem_max_mib": v.mem_mib} for v in vms],
        "imbalance": _round(imbalance),
        "target": _round(target_imbalance(cfg.balancer.policy.aggressiveness, len(eligible)))
        if eligible else None,
    }


def _why_stale(h: HostView, now_s: float) -> str | None:
    if h.last_error or not h.stale:
        return h.last_error
    if h.last_seen_s is None:
        return "never polled"
    return f"no successful poll for {now_s - h.last_seen_s:.0f} s (is the collector running?)"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


@click.command("status")
@json_option
@click.option("--window", "window_s", type=click.FloatRange(min=1.0), default=None,
              help="Average over this many seconds before each host's last poll "
                   "(default: 3 collect intervals, >= 60).")
@pass_app
def status(app: AppContext, as_json: bool, window_s: float | None) -> None:
    """Per-host CPU and memory load, VM count, staleness and the cluster imbalance."""
    data = status_data(app, window_s)
    if as_json:
        print_json(data)
        return
    table = Table(title="hosts")
    for col in ("host", "cpu load", "mem load", "VMs", "state", "stale"):
        table.add_column(col, justify="right" if col in ("cpu load", "mem load", "VMs") else "left")
    for h in data["hosts"]:
        stale = f"yes: {h['error']}" if h["stale"] and h["error"] else "yes" if h["stale"] else "no"
        table.add_row(h["name"], _pct(h["cpu_load"]), _pct(h["mem_load"]), str(h["vms"]),
                      h["state"], stale)
    console.print(table)
    imb, target = data["imbalance"], data["target"]
    verdict = ("no eligible host with samples" if imb is None else
               "level 1: balancing off" if target is None else
               "above target" if imb > target else "within target")
    console.print(f"imbalance {'-' if imb is None else f'{imb:.3f}'} (target "
                  f"{'-' if target is None else f'{target:.3f}'}): {verdict}", highlight=False)
