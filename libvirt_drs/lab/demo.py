"""`drs demo`: the README's first command, on a local lab.

Bring up a lab with every guest on the first host, run the service in automatic mode
with short intervals while a live table shows host loads, imbalance and migrations,
stop once a round finds the imbalance under target (or after --max-rounds), then print
the before/after summary and write an HTML report.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine, select

from libvirt_drs import config as config_mod
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import MigrationJob
from libvirt_drs.db.snapshot import load_snapshot
from libvirt_drs.migrator.model import JOB_RESULTS, JobState
from libvirt_drs.policy import policy_from_config
from libvirt_drs.service.app import ServeOptions, Service
from libvirt_drs.service.balance import ClusterLoads, Round, cluster_loads
from libvirt_drs.service.report import MigrationRow, ReportData, write_report

log = logging.getLogger("libvirt_drs.demo")


@dataclass(frozen=True)
class DemoOptions:
    name: str = "demo"
    n_hosts: int = 3
    n_vms: int = 6
    collect_interval_s: float = 2.0
    balance_interval_s: float = 10.0
    max_rounds: int = 8
    metrics_listen: str = "127.0.0.1:9177"
    web_listen: str = "127.0.0.1:8080"  # the console, while the demo runs; "" = none
    report_path: str | None = None
    keep_lab: bool = False
    live: bool = True
    base_address: str = "127.0.0.91"  # away from the test lab's 127.0.0.11
    grace_s: float = 30.0


@dataclass
class DemoResult:
    rounds: list[Round]
    converged_round: int | None  # 1-based round that found the imbalance under target
    before: ClusterLoads
    after: ClusterLoads
    migrations: list[MigrationRow]
    heartbeat_max_gap_s: float | None
    duration_s: float
    report_path: Path
    outcomes: dict[str, int] = field(default_factory=dict)


def converged(rnd: Round) -> bool:
    return rnd.imbalance_before <= rnd.target


def run_demo(opts: DemoOptions, console: Console | None = None) -> DemoResult:
    from libvirt_drs.lab import Lab, build  # noqa: PLC0415 - the lab needs libvirt

    console = console or Console()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report_path = Path(opts.report_path or f"reports/demo-{stamp}.html").resolve()
    spec = build(name=opts.name, n_hosts=opts.n_hosts, n_vms=opts.n_vms, placement_text="skewed",
                 base_address=opts.base_address)
    console.print(f"[bold]1/4[/] lab {spec.name}: {len(spec.hosts)} hosts, {len(spec.vms)} "
                  f"guests, all on {spec.hosts[0]} (booting, about a minute)")
    config_path = report_path.parent / f"demo-{stamp}.toml"
    lab = Lab.up(spec, config_out_path=config_path)
    try:
        result = serve_and_watch(lab, config_path, opts, report_path, console)
    finally:
        if opts.keep_lab:
            console.print(f"lab {lab.name} kept: `drs lab down --name {lab.name}` removes it")
        else:
            console.print(f"[bold]4/4[/] taking lab {lab.name} down")
            lab.down()
            config_path.unlink(missing_ok=True)  # it names the lab's database, gone now
    print_summary(result, console)
    return result


def serve_and_watch(lab, config_path: Path, opts: DemoOptions,  # type: ignore[no-untyped-def]
                    report_path: Path, console: Console) -> DemoResult:
    cfg = config_mod.load(str(config_path))
    engine = make_engine(cfg.database_url)
    schema.upgrade(engine)
    done = threading.Event()

    def on_round(rnd: Round) -> None:
        if not opts.live:
            console.print(_round_line(len(service.balance.rounds), rnd), highlight=False)
        if converged(rnd) or len(service.balance.rounds) >= opts.max_rounds:
            done.set()

    service = Service(cfg, engine, ServeOptions(
        mode="automatic", collect_interval_s=opts.collect_interval_s,
        balance_interval_s=opts.balance_interval_s, observe_interval_s=1.0,
        shutdown_grace_s=opts.grace_s, metrics_listen=opts.metrics_listen,
        web_listen=opts.web_listen), on_round=on_round)
    policy = policy_from_config(service.cfg)
    console.print(f"[bold]2/4[/] drs serve (automatic): collect every "
                  f"{opts.collect_interval_s:g} s, balance every {opts.balance_interval_s:g} s, "
                  f"metrics on http://{opts.metrics_listen}/metrics")
    t0 = time.time()
    service.start()
    if service.web is not None:
        console.print(f"      console on {service.web.url} (log in with a token: drs --config "
                      f"{config_path} tokens create me --role operator)", highlight=False)
    try:
        if opts.live:
            with Live(live_view(service, t0), console=console, refresh_per_second=2) as live:
                while not done.wait(0.5):
                    live.update(live_view(service, t0))
                live.update(live_view(service, t0))
            if not console.is_terminal:  # Live leaves its last frame unterminated in a log
                console.line()
        else:
            done.wait()
    except KeyboardInterrupt:
        console.print("interrupted: stopping")
    finally:
        console.print("[bold]3/4[/] stopping drs serve")
        service.stop()
    rounds = list(service.balance.rounds)
    after = cluster_loads(load_snapshot(engine, cfg), policy)
    before = rounds[0].loads if rounds and rounds[0].loads else after
    migrations = _migrations(engine, t0)
    gap = _heartbeat_gap(lab, t0)
    conv = next((i + 1 for i, r in enumerate(rounds) if converged(r)), None)
    outcomes: dict[str, int] = {}
    for m in migrations:
        outcomes[m.state] = outcomes.get(m.state, 0) + 1
    result = DemoResult(rounds, conv, before, after, migrations, gap, time.time() - t0,
                        report_path, outcomes)
    write_report(report_path, ReportData(
        title=f"libvirt-drs demo on lab {lab.name}", created_s=time.time(), rounds=rounds,
        converged_round=conv, before=before, after=after, migrations=migrations,
        heartbeat_max_gap_s=gap, duration_s=result.duration_s,
        snapshot=rounds[0].snapshot if rounds else None))
    engine.dispose()
    return result


def _migrations(engine: Engine, since_s: float) -> list[MigrationRow]:
    with engine.connect() as conn:
        rows = conn.execute(select(
            MigrationJob.vm_name, MigrationJob.source, MigrationJob.destination,
            MigrationJob.state, MigrationJob.total_ms, MigrationJob.downtime_ms,
            MigrationJob.error).where(MigrationJob.queued_s >= since_s)
            .order_by(MigrationJob.id)).all()
    return [MigrationRow(*r) for r in rows]


def _heartbeat_gap(lab, since_s: float) -> float | None:  # type: ignore[no-untyped-def]
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415

    gaps = [heartbeat.max_gap_s(heartbeat.since(heartbeat.read(lab.serial_log(v.name)), since_s))
            for v in lab.vms]
    return max(gaps) if gaps else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:5.1f}%"


def _bar(value: float | None, width: int = 20) -> Text:
    v = 0.0 if value is None else max(0.0, min(1.0, value))
    filled = int(round(v * width))
    color = "red" if v >= 0.85 else "yellow" if v >= 0.6 else "green"
    return Text("█" * filled + "·" * (width - filled), style=color)


def live_view(service: Service, t0: float) -> Group:
    """Host loads, migrations in flight and the imbalance, read from the service's metrics."""
    get = service.metrics.registry.get_sample_value
    hosts = [h.name for h in service.cfg.hosts]
    table = Table(title=f"drs serve (automatic) - {time.time() - t0:5.0f} s", expand=False)
    for col in ("host", "CPU load", "", "memory", "VMs", "migrating out/in"):
        table.add_column(col, justify="left" if col in ("host", "") else "right")
    for h in hosts:
        cpu = get("drs_host_cpu_load_ratio", {"host": h})
        out = get("drs_host_running_migrations", {"host": h, "direction": "outgoing"}) or 0
        inc = get("drs_host_running_migrations", {"host": h, "direction": "incoming"}) or 0
        table.add_row(h, _pct(cpu), _bar(cpu), _pct(get("drs_host_memory_load_ratio",
                                                        {"host": h})),
                      f"{get('drs_host_vms', {'host': h}) or 0:.0f}", f"{out:.0f}/{inc:.0f}")
    imb = get("drs_cluster_imbalance_ratio", {"resource": "combined"})
    target = get("drs_cluster_imbalance_target_ratio")
    ok = imb is not None and target is not None and imb <= target
    rounds = service.balance.rounds
    done = {r: get("drs_migrations_finished_total", {"result": r}) or 0 for r in JOB_RESULTS}
    lines = Text.assemble(
        ("imbalance ", "bold"), (f"{imb:.3f}" if imb is not None else "-",
                                 "green" if ok else "red"),
        f" (target {target:.3f})  " if target is not None else "  ",
        f"rounds {len(rounds)}  migrations: {done[JobState.SUCCEEDED]:.0f} ok, "
        f"{done[JobState.FAILED]:.0f} failed, {done[JobState.ABORTED]:.0f} aborted, "
        f"{done[JobState.SKIPPED]:.0f} skipped")
    last = Text(_round_line(len(rounds), rounds[-1]) if rounds else "first round after "
                "a few collect cycles ...", style="dim")
    return Group(table, lines, last)


def _round_line(n: int, rnd: Round) -> str:
    outcome = ", ".join(f"{v} {k}" for k, v in sorted(rnd.outcomes.items())) or "none run"
    state = "under target: converged" if converged(rnd) else f"{rnd.moves} move(s): {outcome}"
    return (f"round {n}: imbalance {rnd.imbalance_before:.3f} (target {rnd.target:.3f}), "
            f"{state}")


def print_summary(result: DemoResult, console: Console) -> None:
    table = Table(title="before / after")
    for col in ("host", "CPU before", "CPU after", "memory before", "memory after",
                "VMs before", "VMs after"):
        table.add_column(col, justify="left" if col == "host" else "right")
    b, a = result.before, result.after
    for h in sorted(set(b.cpu) | set(a.cpu)):
        table.add_row(h, _pct(b.cpu.get(h)), _pct(a.cpu.get(h)), _pct(b.memory.get(h)),
                      _pct(a.memory.get(h)), str(b.vms.get(h, 0)), str(a.vms.get(h, 0)))
    console.print(table)
    conv = (f"converged: round {result.converged_round} found the imbalance under target"
            if result.converged_round else "not converged within the rounds allowed")
    ok = result.outcomes.get(JobState.SUCCEEDED, 0)
    console.print(f"imbalance {b.imbalance:.3f} -> {a.imbalance:.3f} (target {a.target:.3f}); "
                  f"{conv}; {len(result.migrations)} migration(s), {ok} succeeded"
                  + "".join(f", {v} {k}" for k, v in sorted(result.outcomes.items())
                            if k != JobState.SUCCEEDED), highlight=False)
    if result.heartbeat_max_gap_s is not None:
        console.print(f"guests ran throughout: longest heartbeat gap "
                      f"{result.heartbeat_max_gap_s:.1f} s", highlight=False)
    console.print(f"HTML report: {result.report_path}", highlight=False, soft_wrap=True)
