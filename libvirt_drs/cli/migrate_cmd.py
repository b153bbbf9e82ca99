"""`drs migrate` and `drs jobs`: one live migration, and the migration jobs.

Thin adapters over libvirt_drs.operations (moves, reads); this module only asks, prints
and renders progress.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from libvirt_drs.cli.common import (
    AppContext,
    confirm,
    console,
    err_console,
    json_option,
    pass_app,
    print_json,
    yes_option,
)

MIB = 1024 * 1024


def action_cluster(app: AppContext) -> Any:
    """The cluster for a command that changes it: jobs a dead process left running are
    settled first (and said so)."""
    cl = app.cluster()
    for r in cl.migrator.reconcile():
        err_console.print(f"reconciled job {r.job_id} ({r.vm_name}): {r.state} {r.detail}",
                          highlight=False, markup=False)
    return cl


class ProgressView:
    """A rich progress bar per job: percent, MiB/s, remaining MiB."""

    def __init__(self, progress: Progress, quiet: bool = False) -> None:
        self.progress = progress
        self.quiet = quiet  # --json: the summary lines go in the JSON, not on stdout
        self.tasks: dict[int, Any] = {}
        self.last: dict[int, tuple[float, int]] = {}

    def update(self, job: Any, p: Any) -> None:
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

    def finish(self, job: Any, outcome: Any) -> None:
        if job.id in self.tasks:
            self.progress.update(self.tasks[job.id], completed=100.0, left=str(outcome.state))
        if not self.quiet:
            console.print(summary(job), highlight=False, markup=False)


def summary(job: Any) -> str:
    from libvirt_drs.migrator.model import JobState  # noqa: PLC0415

    text = f"job {job.id} {job.vm_name} {job.source} -> {job.destination}: {job.state}"
    if job.state is JobState.SUCCEEDED:
        text += (f" in {_ms(job.total_ms)}, downtime {_ms(job.downtime_ms)}, "
                 f"{(job.bytes_processed or 0) / MIB:.1f} MiB transferred")
    elif job.error:
        text += f": {job.error}"
    return text


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} ms"


def run_with_progress(cl: Any, jobs: Sequence[Any], quiet: bool = False) -> list[Any]:
    """Run queued jobs under the limits with a live progress bar on stderr."""
    from libvirt_drs.operations import moves  # noqa: PLC0415

    if not jobs:
        return []
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[rate]}"),
                  TextColumn("{task.fields[left]}"), TimeElapsedColumn(),
                  console=err_console) as progress:
        view = ProgressView(progress, quiet)
        return moves.run_jobs(cl, jobs, view.update, view.finish)


def all_succeeded(jobs: Sequence[Any]) -> bool:
    from libvirt_drs.migrator.model import JobState  # noqa: PLC0415

    return all(j.state is JobState.SUCCEEDED for j in jobs)


def checks_table(check: Any) -> Table:
    table = Table(title=f"pre-checks: {check.vm} {check.source} -> {check.destination}"
                        f"{' (copy-storage)' if check.copy_storage else ''}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    style = {"pass": "green", "fail": "red", "warn": "yellow"}
    for r in check.results:
        detail = f"{r.reason}: {r.detail}" if r.reason else r.detail
        table.add_row(r.name, f"[{style.get(str(r.status), 'dim')}]{r.status}[/]",
                      escape(detail))
    return table


@click.command("migrate")
@click.argument("vm")
@click.option("--to", "destination", required=True, metavar="HOST", help="Destination host.")
@click.option("--check-only", is_flag=True,
              help="Run every pre-check and print each result; move nothing (exit 1 if one "
                   "fails).")
@click.option("--copy-storage", is_flag=True,
              help="Copy the disks (needed when the hosts do not share storage).")
@yes_option
@json_option
@pass_app
def migrate(app: AppContext, vm: str, destination: str, check_only: bool,
            copy_storage: bool, yes: bool, as_json: bool) -> None:
    """Live-migrate VM to HOST under the shared limits, with progress.

    Shows the pre-checks and asks before moving anything (--yes skips the question)."""
    from libvirt_drs.operations import moves, views  # noqa: PLC0415

    cl = action_cluster(app) if not check_only else app.cluster()
    caller = app.caller()
    check = moves.check_migration(cl, caller, vm, destination, copy_storage)
    if check_only or not check.ok:
        if as_json:
            print_json(views.check(check))
        else:
            console.print(checks_table(check))
        if not check.ok:
            raise click.exceptions.Exit(1)
        return
    if not as_json:
        console.print(checks_table(check))
    confirm(f"live-migrate {vm} from {check.source} to {destination}?", yes)
    jobs = moves.request_migration(cl, caller, vm, destination, copy_storage)
    done = run_with_progress(cl, jobs, quiet=as_json)
    if as_json:
        print_json(views.job(done[0]))
    if not all_succeeded(done):
        raise click.exceptions.Exit(1)


def _job_line(j: Any) -> str:
    from libvirt_drs.operations import views  # noqa: PLC0415

    started = (views.iso(j.started_s) or "")[5:19].replace("T", " ")
    parts = [f"{j.id:>4} {j.vm_name} {j.source} -> {j.destination} {j.state}"]
    if started:
        parts.append(f"started {started}")
    if j.total_ms:
        parts.append(f"total {_ms(j.total_ms)}")
    if j.downtime_ms is not None:
        parts.append(f"downtime {_ms(j.downtime_ms)}")
    if j.bytes_processed:
        parts.append(f"{_size_mib(j.bytes_processed)} MiB")
    line = ", ".join(parts)
    return line + (f"\n       error: {j.error}" if j.error else "")


def _size_mib(value: int | None) -> str:
    return f"{value / MIB:.1f}" if value else ""


@click.command("jobs")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000),
              help="Show the last N jobs.")
@json_option
@pass_app
def jobs(app: AppContext, limit: int, as_json: bool) -> None:
    """List migration jobs (newest last): state, times, downtime, MiB moved, error."""
    from libvirt_drs.operations import reads, views  # noqa: PLC0415

    rows = reads.jobs(app.cluster(), app.caller(), limit=limit)
    if as_json:
        print_json([views.job(j) for j in rows])
        return
    if console.width < 110:  # a table would cut cells: one job per line, the error below
        for j in rows:
            console.print(_job_line(j), highlight=False, markup=False)
        return
    table = Table(expand=False)
    for col, kw in (("id", {"justify": "right", "no_wrap": True}),
                    ("vm", {"no_wrap": True}), ("from -> to", {"no_wrap": True}),
                    ("state", {"no_wrap": True}), ("started (UTC)", {"no_wrap": True}),
                    ("total", {"justify": "right", "no_wrap": True}),
                    ("downtime", {"justify": "right", "no_wrap": True}),
                    ("MiB", {"justify": "right", "no_wrap": True}),
                    ("error", {"overflow": "fold", "min_width": 20})):
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for j in rows:
        started = views.iso(j.started_s)
        table.add_row(str(j.id), j.vm_name, f"{j.source} -> {j.destination}", str(j.state),
                      started[5:19].replace("T", " ") if started else "",
                      _ms(j.total_ms) if j.total_ms else "",
                      _ms(j.downtime_ms) if j.downtime_ms is not None else "",
                      _size_mib(j.bytes_processed), escape(j.error or ""))
    console.print(table)


COMMANDS = (migrate, jobs)
