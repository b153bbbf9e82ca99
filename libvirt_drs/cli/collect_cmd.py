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

from libvirt_drs.cli.common import AppContext, console, err_console, json_option, pass_app, print_json
from libvirt_drs.collect import CollectJob, CycleOutcome, summary_line
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
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
            outcome = _one_cycle(job, raise_errors=True)
            failed = [h for h in outcome.result.hosts if not h.ok] if outcome else []
            if failed:
                err_console.print(f"drs: {len(failed)} of {len(outcome.result.hosts)} hosts "
                                  "not sampled: " + "; ".join(f"{h.name}: {h.error}"
                                                              for h in failed),
                                  highlight=False, markup=False, soft_wrap=True)
                raise click.exceptions.Exit(1)
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


def _one_cycle(job: CollectJob, raise_errors: bool) -> CycleOutcome | None:
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


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{value * 100:.1f}%"


@click.command("status")
@json_option
@click.option("--window", "window_s", type=click.FloatRange(min=1.0), default=None,
              help="Average over this many seconds before each host's last poll "
                   "(default: 3 collect intervals, >= 60).")
@click.option("--vms", "show_vms", is_flag=True, help="Also list every VM with its host and demand.")
@pass_app
def status(app: AppContext, as_json: bool, window_s: float | None, show_vms: bool) -> None:
    """Per-host CPU and memory load, VM count, staleness and the cluster imbalance."""
    from libvirt_drs.operations import reads, views  # noqa: PLC0415

    data = reads.cluster_status(app.cluster(), app.caller(), window_s)
    if as_json:
        print_json(views.status(data))
        return
    table = Table(title="hosts")
    for col in ("host", "cpu load", "mem load", "VMs", "state", "stale"):
        table.add_column(col, justify="right" if col in ("cpu load", "mem load", "VMs") else "left",
                         overflow="fold")
    for h in data.hosts:
        v = h.view
        stale = f"yes: {h.why_stale}" if v.stale and h.why_stale else "yes" if v.stale else "no"
        table.add_row(v.name, _pct(v.cpu_load), _pct(v.mem_load), str(v.vms), v.state, stale)
    console.print(table)
    if show_vms:
        vms = Table(title="VMs")
        for col in ("vm", "host", "cpu cores", "mem MiB", "vCPUs", "mem max MiB"):
            vms.add_column(col, justify="left" if col in ("vm", "host") else "right")
        for vm in data.vms:
            vms.add_row(vm.name, vm.host or "-",
                        "no data" if vm.cpu_cores is None else f"{vm.cpu_cores:.2f}",
                        "no data" if vm.mem_used_mib is None else f"{vm.mem_used_mib:.0f}",
                        str(vm.vcpus), str(vm.mem_mib))
        console.print(vms)
    imb, target = data.imbalance, data.target
    console.print(f"imbalance {'-' if imb is None else f'{imb:.3f}'} (target "
                  f"{'-' if target is None else f'{target:.3f}'}): {data.verdict}",
                  highlight=False, markup=False)
