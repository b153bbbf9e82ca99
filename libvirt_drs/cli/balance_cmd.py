"""`drs simulate` (what-if replay of a trace) and `drs bench plan` (planner timing; attached
to the `bench` group by libvirt_drs/cli/bench_cmd.py)."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import click

from libvirt_drs.cli.common import AppContext, console, err_console, json_option, pass_app, print_json
from libvirt_drs.errors import UserError

# numpy, the planner and the database are imported by the commands that use them, so
# that `drs --help` stays fast

# What the simulation prints, in this order, with a human label for the table.
SIM_METRICS = {
    "imbalance_mean": "mean imbalance (std of host CPU load)",
    "imbalance_p95": "p95 imbalance",
    "overload_fraction": "host-steps with load > 100%",
    "hot_fraction": "host-steps with load > 90%",
    "max_util_p95": "p95 of the busiest host's load",
    "migrations": "migrations",
    "migrations_per_vm_day": "migrations per VM per day",
    "plan_ms_p50": "plan time p50 (ms)",
    "plan_ms_max": "plan time max (ms)",
    "memory_violations": "memory violations (host-steps)",
    "p_overload_mean": "predicted P(host > 100%) next step, mean",
    "overload_fraction_predicted_steps": "realised host-steps > 100%, same steps",
}


def default_policy() -> Any:
    """The product defaults (balancer.model.Policy): what an empty [balancer] and
    [migrator] section give."""
    from libvirt_drs.config import Config  # noqa: PLC0415

    return Config(path="<defaults>", database_url="sqlite://").balancer.policy


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn  # noqa: PLC0415

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def _metrics_table(title: str, metrics: dict[str, Any]) -> Any:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in SIM_METRICS.items():
        table.add_row(label, str(metrics[key]))
    return table


@click.command("simulate")
@click.option("--trace", "trace_dir", metavar="DIR",
              type=click.Path(file_okay=False, path_type=str),
              help="PlanetLab trace directory: one file per VM, one CPU percent per line.")
@click.option("--from-db", is_flag=True,
              help="Replay the cluster's own recorded samples (what-if on real history).")
@click.option("--since", default="24h", show_default=True,
              help="--from-db: start (ISO time, a duration ago such as 6h, or epoch seconds).")
@click.option("--until", default="now", show_default=True, help="--from-db: end.")
@click.option("--hosts", type=click.IntRange(min=1), default=None,
              help="--trace: number of hosts (default ceil(VMs / 10)).")
@click.option("--host-cpus", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="--trace: CPU cores per host (default 2).")
@click.option("--host-mem-mib", type=click.IntRange(min=1), default=None,
              help="--trace: memory per host in MiB (default 32768).")
@click.option("--aggressiveness", type=click.IntRange(1, 5), default=None,
              help="1 = mandatory moves only .. 5 = chase the smallest imbalance "
                   "(default: the config's, 3).")
@click.option("--max-moves-per-host", type=click.IntRange(min=1), default=None,
              help="Moves per host per step, as source and as destination (default 2).")
@json_option
@pass_app
def simulate_cmd(app: AppContext, trace_dir: str | None, from_db: bool, since: str, until: str,
                 hosts: int | None, host_cpus: float | None, host_mem_mib: int | None,
                 aggressiveness: int | None, max_moves_per_host: int | None,
                 as_json: bool) -> None:
    """Replay a CPU trace (or the recorded history) with the balancer in the loop and print
    quality metrics."""
    from libvirt_drs.balancer.simulate import SimConfig, simulate  # noqa: PLC0415

    if bool(trace_dir) == from_db:
        raise UserError("give exactly one of --trace DIR and --from-db")
    if from_db:
        for given, flag in ((hosts, "--hosts"), (host_cpus, "--host-cpus"),
                            (host_mem_mib, "--host-mem-mib")):
            if given is not None:
                raise UserError(f"{flag} applies to --trace only: --from-db uses the configured hosts")
        policy, run = _from_db(app, since, until)
        host_size = SimConfig(hosts=1)
    else:
        host_size = SimConfig(hosts=1)  # the defaults, then what was given
        if host_cpus is not None:
            host_size = replace(host_size, host_cpu_cores=host_cpus)
        if host_mem_mib is not None:
            host_size = replace(host_size, host_mem_mib=float(host_mem_mib))
        policy, run = default_policy(), _from_trace(str(trace_dir), hosts, host_size.host_mem_mib)
    if aggressiveness is not None:
        policy = replace(policy, aggressiveness=aggressiveness)
    if max_moves_per_host is not None:
        policy = replace(policy, max_moves_per_host=max_moves_per_host)
    title, trace, mem_mib, names, n_hosts, sim_hosts, initial, window_s = run
    cfg = replace(host_size, hosts=n_hosts, policy=policy, window_s=window_s)
    with _progress(trace.shape[1], "simulating") as progress:
        metrics = simulate(trace, mem_mib, cfg, names, progress, sim_hosts, initial)
    if as_json:
        print_json(metrics)
        return
    console.print(_metrics_table(f"{title}: {len(names)} VMs on {cfg.hosts} hosts "
                                 f"({cfg.host_cpu_cores:g} cores, {cfg.host_mem_mib:.0f} MiB), "
                                 f"{trace.shape[1]} steps", metrics))
    console.print(_calibration_table(metrics["p_overload_calibration"]))


def _calibration_table(rows: list[dict[str, Any]]) -> Any:
    """The demand model's calibration: host-steps by predicted P(over capacity next step),
    against how often they were."""
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="calibration: predicted P(host > 100%) next step vs realised")
    for name in ("predicted", "host-steps", "mean predicted", "realised"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(f"{r['p_from']:g}..{r['p_to']:g}", str(r["host_steps"]),
                      f"{r['p_mean']:.4f}", f"{r['overload_fraction']:.4f}")
    return table


def _from_trace(trace_dir: str, hosts: int | None, host_mem_mib: float):  # type: ignore[no-untyped-def]
    import numpy as np  # noqa: PLC0415

    from libvirt_drs.balancer.simulate import default_hosts, memory_sizes_mib  # noqa: PLC0415
    from libvirt_drs.config import BalancerConfig  # noqa: PLC0415
    from libvirt_drs.traces import load_planetlab  # noqa: PLC0415

    names, trace = load_planetlab(trace_dir)
    n_hosts = hosts or default_hosts(len(names))
    mem_mib = memory_sizes_mib(len(names), n_hosts)
    placed_mib = np.bincount(np.arange(len(names)) % n_hosts, mem_mib, minlength=n_hosts)
    if placed_mib.max() > host_mem_mib:
        raise UserError(f"--hosts {n_hosts}: too few hosts for {len(names)} VMs (the initial "
                        f"placement needs {placed_mib.max():.0f} MiB on one host, hosts have "
                        f"{host_mem_mib:.0f}; see --host-mem-mib)")
    return trace_dir, trace, mem_mib, names, n_hosts, None, None, BalancerConfig().window_s


def _from_db(app: AppContext, since: str, until: str):  # type: ignore[no-untyped-def]
    from libvirt_drs.db import schema  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415
    from libvirt_drs.db.history import load_history, parse_time  # noqa: PLC0415

    cfg = app.config
    engine = make_engine(cfg.database_url)
    schema.require_current(engine)
    since_s, until_s = parse_time(since, "--since"), parse_time(until, "--until")
    hist = load_history(engine, cfg, since_s, until_s)
    run = ("recorded history", hist.cpu_cores, hist.mem_mib, hist.names, len(hist.hosts),
           hist.hosts, hist.initial_host, cfg.balancer.window_s)
    return cfg.balancer.policy, run


@click.command("plan")
@click.option("--hosts", type=click.IntRange(min=1), default=96, show_default=True,
              help="Hosts of the synthetic cluster (vSphere's cluster maximum is 96).")
@click.option("--vms", type=click.IntRange(min=0), default=10000, show_default=True,
              help="VMs of the synthetic cluster, placed skewed over heterogeneous hosts.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Random seed of the synthetic cluster (the same seed, the same cluster).")
@json_option
def bench_plan(hosts: int, vms: int, seed: int, as_json: bool) -> None:
    """Time one full plan over a synthetic cluster (skewed, heterogeneous)."""
    from rich.table import Table  # noqa: PLC0415

    from libvirt_drs.balancer.planner import plan  # noqa: PLC0415
    from libvirt_drs.balancer.synthetic import synthetic_cluster  # noqa: PLC0415

    snapshot = synthetic_cluster(hosts, vms, seed)
    started, started_cpu = time.perf_counter(), time.process_time()
    result = plan(snapshot, default_policy())
    plan_ms = (time.perf_counter() - started) * 1000.0
    # CPU time too: on a shared machine wall time mostly measures the neighbours
    plan_cpu_ms = (time.process_time() - started_cpu) * 1000.0
    data = {
        "hosts": hosts, "vms": vms, "plan_ms": round(plan_ms, 1),
        "plan_cpu_ms": round(plan_cpu_ms, 1), "moves": len(result.moves),
        "imbalance_before": round(result.imbalance_before, 4),
        "imbalance_after": round(result.imbalance_after, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }
    if as_json:
        print_json(data)
        return
    table = Table(title=f"plan over {hosts} hosts / {vms} VMs (seed {seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in data.items():
        table.add_row(key, str(value))
    console.print(table)
