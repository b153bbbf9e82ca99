"""`drs collect [--once]` and `drs status [--json]`: thin adapters over
libvirt_drs.collect (the collector loop) and libvirt_drs.operations.reads."""

from __future__ import annotations

import logging
import signal
import threading

import click
from rich.table import Table

from libvirt_drs.cli.common import AppContext, console, err_console, json_option, pass_app, print_json
from libvirt_drs.errors import UserError

log = logging.getLogger("libvirt_drs.collect")


@click.command("collect")
@click.option("--once", is_flag=True,
              help="Poll twice PRIME_S apart (a CPU rate needs two readings), write one "
                   "cycle, exit.")
@click.option("--prime-s", type=click.FloatRange(0.1, 600), default=2.0, show_default=True,
              help="With --once: seconds between the priming poll and the written one.")
@click.option("--json", "as_json", is_flag=True,
              help="With --once: print the cycle (hosts sampled or not, VMs, samples) as JSON.")
@pass_app
def collect(app: AppContext, once: bool, prime_s: float, as_json: bool) -> None:
    """Sample every configured host each collector.interval_s and write the samples."""
    cfg = app.config
    if as_json and not once:
        raise UserError("--json needs --once (the loop logs one line per cycle)")
    if not cfg.hosts:
        raise UserError(f"{cfg.path}: hosts: no hosts configured, nothing to collect")
    from libvirt_drs.collect import CollectJob, one_cycle, run_forever  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415
    from libvirt_drs.db.schema import require_current  # noqa: PLC0415

    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    engine = make_engine(cfg.database_url)
    require_current(engine)
    job = CollectJob(cfg, engine)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    # the loop stops between cycles on Ctrl-C too: an exception raised wherever the signal
    # lands (a worker's lock, a database write) could leave the process hanging at exit
    previous_int = (signal.getsignal(signal.SIGINT) if once else
                    signal.signal(signal.SIGINT, lambda _s, _f: stop.set()))
    try:
        if once:
            job.run_cycle(write=False)
            stop.wait(prime_s)
            outcome = one_cycle(job, raise_errors=True)
            hosts = outcome.result.hosts if outcome else []
            failed = [h for h in hosts if not h.ok]
            if as_json and outcome is not None:
                print_json({"hosts": [{"name": h.name, "ok": h.ok, "error": h.error,
                                       "cpu_cores_used": h.cpu_cores_used,
                                       "cpu_wait_cores": h.cpu_wait_cores} for h in hosts],
                            "vms": len(outcome.result.vms),
                            "vm_samples": outcome.written.vm_samples,
                            "host_samples": outcome.written.host_samples,
                            "poll_ms": round(outcome.result.duration_ms, 1),
                            "write_ms": round(outcome.write_ms, 1)})
            if failed:
                err_console.print(f"drs: {len(failed)} of {len(hosts)} hosts "
                                  "not sampled: " + "; ".join(f"{h.name}: {h.error}"
                                                              for h in failed),
                                  highlight=False, markup=False, soft_wrap=True)
                raise click.exceptions.Exit(1)
        else:
            run_forever(job, stop)
            log.info("stopped; %d cycles done", job.cycles)
    except KeyboardInterrupt:
        log.info("interrupted; %d cycles done", job.cycles)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        job.close()


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
    """Per-host CPU and memory load, CPU contention (cores the VMs waited for a CPU), VM
    count, staleness and the cluster imbalance."""
    from libvirt_drs.operations import reads, views  # noqa: PLC0415

    data = reads.cluster_status(app.cluster(), app.caller(), window_s)
    if as_json:
        print_json(views.status(data))
        return
    table = Table(title="hosts")
    numeric = ("cpu load", "mem load", "cpu wait", "VMs")
    for col in ("host", "cpu load", "mem load", "cpu wait", "VMs", "state", "stale"):
        table.add_column(col, justify="right" if col in numeric else "left", overflow="fold")
    waits = data.host_cpu_wait_cores()
    for h in data.hosts:
        v = h.view
        stale = f"yes: {h.why_stale}" if v.stale and h.why_stale else "yes" if v.stale else "no"
        wait = waits.get(v.name, 0.0 if v.vms == 0 and not v.stale else None)  # no VM: no wait
        table.add_row(v.name, _pct(v.cpu_load), _pct(v.mem_load),
                      "no data" if wait is None else f"{wait:.2f} cores", str(v.vms), v.state,
                      stale)
    console.print(table)
    if show_vms:
        vms = Table(title="VMs")
        for col in ("vm", "host", "cpu cores", "cpu wait", "mem MiB", "vCPUs", "mem max MiB"):
            vms.add_column(col, justify="left" if col in ("vm", "host") else "right")
        for vm in data.vms:
            vms.add_row(vm.name, vm.host or "-",
                        "no data" if vm.cpu_cores is None else f"{vm.cpu_cores:.2f}",
                        _pct(vm.cpu_wait),
                        "no data" if vm.mem_used_mib is None else f"{vm.mem_used_mib:.0f}",
                        str(vm.vcpus), str(vm.mem_mib))
        console.print(vms)
    imb, target = data.imbalance, data.target
    console.print(f"imbalance {'-' if imb is None else f'{imb:.3f}'} (target "
                  f"{'-' if target is None else f'{target:.3f}'}): {data.verdict}",
                  highlight=False, markup=False)
    if data.contention:
        console.print(data.contention, highlight=False, markup=False)
    console.print(data.balancing, highlight=False, markup=False)
