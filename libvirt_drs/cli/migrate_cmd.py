"""`drs migrate`, `drs jobs` (and the plan-driven `rebalance`, `maintenance`, `evacuate`)."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from libvirt_drs import evacuation, migrator_builder
from libvirt_drs.cli.common import AppContext, console, err_console, json_option, pass_app, print_json
from libvirt_drs.errors import UserError
from libvirt_drs.migrator import model
from libvirt_drs.migrator.prechecks import CheckInput, CheckStatus, run_checks

MIB = 1024 * 1024


def _build(app: AppContext) -> migrator_builder.Migrator:
    m = migrator_builder.build(app.config)
    for r in m.reconcile():
        err_console.print(f"reconciled job {r.job_id} ({r.vm_name}): {r.state} {r.detail}",
                          highlight=False, markup=False)
    return m


def _source_of(m: migrator_builder.Migrator, vm: str) -> str:
    found, errors = m.locate(vm)
    if not found:
        extra = f" (unreachable: {'; '.join(errors)})" if errors else ""
        raise UserError(f"VM {vm!r} is not running on any configured host{extra}")
    if len(found) > 1:
        raise UserError(f"VM {vm!r} runs on several hosts ({', '.join(found)}): fix that first")
    return found[0]


class ProgressView:
    """A rich progress bar per job: percent, MiB/s, remaining MiB."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[int, Any] = {}
        self.last: dict[int, tuple[float, int]] = {}

    def update(self, job: model.Job, p: model.Progress) -> None:
        now = time.monotonic()
        if job.id not in self.tasks:
            self.tasks[job.id] = self.progress.add_task(
                f"{job.vm_name} {job.source}->{job.destination}", total=100.0, rate="", left="")
        prev = self.last.get(job.id)
        rate = ""
        if prev is not None and now > prev[0]:
            rate = f"{(p.bytes_processed - prev[1]) / MIB / (now - prev[0]):.1f} MiB/s"
        self.last[job.id] = (now, p.bytes_processed)
        self.progress.update(self.tasks[job.id], completed=p.percent, rate=rate,
                             left=f"{p.bytes_remaining / MIB:.1f} MiB left")

    def finish(self, job: model.Job, outcome: model.Outcome) -> None:
        if job.id in self.tasks:
            self.progress.update(self.tasks[job.id], completed=100.0, left=str(outcome.state))
        console.print(_summary(job), highlight=False, markup=False)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[rate]}"),
                    TextColumn("{task.fields[left]}"), TimeElapsedColumn(), console=err_console)


def _summary(job: model.Job) -> str:
    text = f"job {job.id} {job.vm_name} {job.source} -> {job.destination}: {job.state}"
    if job.state is model.JobState.SUCCEEDED:
        text += (f" in {_ms(job.total_ms)}, downtime {_ms(job.downtime_ms)}, "
                 f"{(job.bytes_processed or 0) / MIB:.1f} MiB transferred")
    elif job.error:
        text += f": {job.error}"
    return text


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} ms"


def run_jobs(m: migrator_builder.Migrator, moves: list[model.MoveRequest]) -> list[model.Job]:
    """Queue `moves` and run them under the limits with live progress; the final rows."""
    jobs = m.runner.submit(moves)
    with _progress() as progress:
        view = ProgressView(progress)
        m.runner.run([j.id for j in jobs], view.update, view.finish)
    return [m.store.get(j.id) for j in jobs]


@click.command("migrate")
@click.argument("vm")
@click.option("--to", "destination", required=True, metavar="HOST", help="Destination host.")
@click.option("--check-only", is_flag=True, help="Run the pre-checks, print them, move nothing.")
@click.option("--copy-storage", is_flag=True,
              help="Copy the disks (needed when the hosts do not share storage).")
@pass_app
def migrate(app: AppContext, vm: str, destination: str, check_only: bool,
            copy_storage: bool) -> None:
    """Live-migrate VM to HOST under the shared limits, with progress."""
    cfg = app.config
    if cfg.host(destination) is None:
        raise UserError(f"unknown host {destination!r} (configured: "
                        f"{', '.join(h.name for h in cfg.hosts)})")
    m = _build(app)
    source = _source_of(m, vm)
    if source == destination:
        raise UserError(f"{vm} already runs on {destination}")
    copy = migrator_builder.needs_copy_storage(cfg, source, destination, copy_storage)
    if check_only:
        _check_only(m, vm, source, destination, copy)
        return
    [job] = run_jobs(m, [model.MoveRequest(vm, source, destination, copy_storage=copy)])
    if job.state is not model.JobState.SUCCEEDED:
        raise click.exceptions.Exit(1)


def _check_only(m: migrator_builder.Migrator, vm: str, source: str, destination: str,
                copy: bool) -> None:
    req = CheckInput(vm, source, destination, copy, m.store.in_maintenance(destination),
                     int(m.cfg.balancer.policy.mem_reserve_mib))
    results, _dom = run_checks(m.hv, req)
    table = Table(title=f"pre-checks: {vm} {source} -> {destination}"
                        f"{' (copy-storage)' if copy else ''}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    style = {CheckStatus.PASS: "green", CheckStatus.FAIL: "red", CheckStatus.WARN: "yellow"}
    for r in results:
        detail = f"{r.reason}: {r.detail}" if r.reason else r.detail
        table.add_row(r.name, f"[{style.get(r.status, 'dim')}]{r.status}[/]", escape(detail))
    console.print(table)
    if any(r.failed for r in results):
        raise click.exceptions.Exit(1)


def job_dict(job: model.Job) -> dict[str, Any]:
    return {
        "id": job.id, "vm": job.vm_name, "source": job.source, "destination": job.destination,
        "state": str(job.state), "started_at": _iso(job.started_s),
        "finished_at": _iso(job.finished_s), "downtime_ms": job.downtime_ms,
        "bytes": job.bytes_processed, "error": job.error,
    }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


@click.command("jobs")
@click.option("--limit", default=50, show_default=True, help="Show the last N jobs.")
@json_option
@pass_app
def jobs(app: AppContext, limit: int, as_json: bool) -> None:
    """List migration jobs (newest last)."""
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415
    from libvirt_drs.db.jobs import SqlJobStore  # noqa: PLC0415
    from libvirt_drs.db.schema import require_current  # noqa: PLC0415

    engine = make_engine(app.config.database_url)
    require_current(engine)
    rows = SqlJobStore(engine).jobs(limit=limit)
    if as_json:
        print_json([job_dict(j) for j in rows])
        return
    table = Table()
    for col in ("id", "vm", "source", "destination", "state", "started", "total", "downtime",
                "MiB", "error"):
        table.add_column(col)
    for j in rows:
        table.add_row(str(j.id), j.vm_name, j.source, j.destination, str(j.state),
                      _iso(j.started_s) or "", _ms(j.total_ms) if j.total_ms else "",
                      _ms(j.downtime_ms) if j.downtime_ms is not None else "",
                      f"{j.bytes_processed / MIB:.1f}" if j.bytes_processed else "",
                      escape(j.error or ""))
    console.print(table)


def _moves_table(title: str, moves: list[Any]) -> Table:
    table = Table(title=title)
    for col in ("vm", "from", "to", "kind", "reason"):
        table.add_column(col)
    for mv in moves:
        table.add_row(mv.vm, mv.source, mv.destination, mv.kind, escape(mv.reason))
    return table


def _print_left(left: list[evacuation.Left]) -> None:
    for item in left:
        console.print(f"not moved: {item.vm} on {item.host}: {item.reason}", highlight=False,
                      markup=False)


@click.command("rebalance")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def rebalance(app: AppContext, yes: bool) -> None:
    """Plan now and execute the plan's moves under the limits, with progress."""
    m = _build(app)
    evacuation.refresh_inventory(m)
    result, plan_ms = evacuation.current_plan(m)
    for note in result.notes:
        err_console.print(f"note: {note}", highlight=False, markup=False)
    if not result.moves:
        console.print(f"nothing to do: imbalance {result.imbalance_before:.4f} "
                      f"(target {result.target:.4f})", highlight=False)
        return
    console.print(_moves_table(f"plan: imbalance {result.imbalance_before:.4f} -> "
                               f"{result.imbalance_after:.4f}", list(result.moves)))
    if not yes and not click.confirm(f"execute {len(result.moves)} move(s)?", default=False):
        raise UserError("cancelled: nothing moved")
    plan_id = evacuation.record(m, result, plan_ms, "manual", "balance")
    done = run_jobs(m, evacuation.move_requests(m, result.moves, plan_id))
    if any(j.state is not model.JobState.SUCCEEDED for j in done):
        raise click.exceptions.Exit(1)


@click.group("maintenance")
def maintenance() -> None:
    """Put a host in maintenance (evacuating it) or take it out."""


@maintenance.command("enter")
@click.argument("host")
@pass_app
def maintenance_enter(app: AppContext, host: str) -> None:
    """Mark HOST in maintenance and move its VMs where the planner places them."""
    if app.config.host(host) is None:
        raise UserError(f"unknown host {host!r}")
    m = _build(app)
    m.store.set_host_state(host, "maintenance", "drs maintenance enter")
    m.store.audit("cli", "host.maintenance", host, "entering maintenance")
    evacuation.refresh_inventory(m)
    result, plan_ms, moves = evacuation.evacuation_plan(m, {host}, None, copy_storage=False)
    plan_id = evacuation.record(m, result, plan_ms, "manual", "maintenance")
    done = run_jobs(m, evacuation.move_requests(m, moves, plan_id)) if moves else []
    evacuation.refresh_inventory(m)
    left = evacuation.left_behind(m, {host}, result, done)
    _print_left(left)
    if left:
        console.print(f"{host} is in maintenance but still runs {len(left)} VM(s)",
                      highlight=False)
        raise click.exceptions.Exit(1)
    console.print(f"{host} is in maintenance and empty ({len(done)} VM(s) moved)",
                  highlight=False)


@maintenance.command("exit")
@click.argument("host")
@pass_app
def maintenance_exit(app: AppContext, host: str) -> None:
    """Take HOST out of maintenance: it receives VMs again."""
    if app.config.host(host) is None:
        raise UserError(f"unknown host {host!r}")
    m = migrator_builder.build(app.config)
    m.store.set_host_state(host, "active", None)
    m.store.audit("cli", "host.active", host, "left maintenance")
    console.print(f"{host} is active", highlight=False)


@click.command("evacuate")
@click.option("--group", "group", required=True, help="Site or host group to empty.")
@click.option("--to-group", "to_group", default=None, help="Only move into this group.")
@pass_app
def evacuate(app: AppContext, group: str, to_group: str | None) -> None:
    """Move every VM away from the hosts of a group (disaster avoidance)."""
    leaving = set(evacuation.group_hosts(app.config, group))
    targets = set(evacuation.group_hosts(app.config, to_group)) if to_group else None
    if targets is not None and targets & leaving:
        raise UserError(f"--to-group {to_group!r} overlaps --group {group!r}")
    m = _build(app)
    for h in sorted(leaving):
        m.store.set_host_state(h, "maintenance", f"drs evacuate --group {group}")
    m.store.audit("cli", "group.evacuate", group, f"hosts {', '.join(sorted(leaving))}")
    evacuation.refresh_inventory(m)
    result, plan_ms, moves = evacuation.evacuation_plan(m, leaving, targets, copy_storage=True)
    plan_id = evacuation.record(m, result, plan_ms, "manual", "evacuate")
    done = run_jobs(m, evacuation.move_requests(m, moves, plan_id)) if moves else []
    evacuation.refresh_inventory(m)
    left = evacuation.left_behind(m, leaving, result, done)
    _print_left(left)
    console.print(f"group {group}: {len(done)} VM(s) moved, {len(left)} left; its hosts stay "
                  "in maintenance (drs maintenance exit HOST)", highlight=False)
    if left:
        raise click.exceptions.Exit(1)


COMMANDS = (migrate, jobs, rebalance, maintenance, evacuate)
