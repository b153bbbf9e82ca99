"""`drs rebalance`, `drs plans [show|apply]` and `drs audit`: plans made now or recorded
(manual mode records one every balance interval), and who did what.

Thin adapters over libvirt_drs.operations (moves, reads).
"""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
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
from libvirt_drs.cli.hosts_cmd import moves_table
from libvirt_drs.cli.migrate_cmd import action_cluster, all_succeeded, run_with_progress


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@click.command("rebalance")
@click.option("--dry-run", is_flag=True, help="Show the plan; record and move nothing.")
@yes_option
@json_option
@pass_app
def rebalance(app: AppContext, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Plan now and execute the plan's moves under the limits, with progress.

    Polls every host first, shows the moves with their reasons and asks (--yes skips)."""
    from libvirt_drs.operations import moves, views  # noqa: PLC0415

    cl = app.cluster() if dry_run else action_cluster(app)
    caller = app.caller()
    planned = moves.recommend(cl, caller, refresh=True)
    plan = planned.plan
    for note in plan.notes:
        err_console.print(f"note: {note}", highlight=False, markup=False)
    if dry_run or not plan.moves:
        if as_json:
            print_json(views.planned(planned))
        elif not plan.moves:
            console.print(f"nothing to do: imbalance {plan.imbalance_before:.4f} "
                          f"(target {plan.target:.4f})", highlight=False)
        else:
            console.print(moves_table(f"plan (dry run): imbalance {plan.imbalance_before:.4f}"
                                      f" -> {plan.imbalance_after:.4f}", plan.moves))
        return
    if not as_json:
        console.print(moves_table(f"plan: imbalance {plan.imbalance_before:.4f} -> "
                                  f"{plan.imbalance_after:.4f}", plan.moves))
    confirm(f"execute {len(plan.moves)} move(s)?", yes)
    plan_id, jobs = moves.request_rebalance(cl, caller, planned)
    done = run_with_progress(cl, jobs, quiet=as_json)
    if as_json:
        print_json(views.planned(planned) | {"plan_id": plan_id,
                                             "jobs": [views.job(j) for j in done]})
    if not all_succeeded(done):
        raise click.exceptions.Exit(1)


@click.group("plans", invoke_without_command=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="Show the last N plans.")
@click.option("--mode", type=click.Choice(["manual", "automatic"]),
              help="Only plans of this mode (manual: recommendations waiting to be applied).")
@json_option
@click.pass_context
def plans(ctx: click.Context, limit: int, mode: str | None, as_json: bool) -> None:
    """Recorded plans (newest first): manual-mode recommendations, rebalances, maintenance
    and evacuations, with their moves and whether they were applied."""
    if ctx.invoked_subcommand is not None:
        return
    from libvirt_drs.operations import reads, views  # noqa: PLC0415

    app = ctx.find_object(AppContext)
    assert app is not None
    rows = reads.plan_list(app.cluster(), app.caller(), limit=limit, mode=mode)
    if as_json:
        print_json([views.plan_record(p) for p in rows])
        return
    table = Table()
    for col in ("id", "created (UTC)", "trigger", "mode", "imbalance", "moves", "applied"):
        table.add_column(col, no_wrap=col != "applied", overflow="fold")
    for p in rows:
        applied = (f"{(views.iso(p.applied_s) or '')[5:16].replace('T', ' ')} by "
                   f"{p.applied_by}" if p.applied_s else "no")
        table.add_row(str(p.id), (views.iso(p.created_s) or "")[5:19].replace("T", " "),
                      p.trigger, p.mode,
                      f"{_fmt(p.imbalance_before)} -> {_fmt(p.imbalance_after)}",
                      str(len(p.moves)), escape(applied))
    console.print(table)


def _print_plan(p: Any) -> None:
    from libvirt_drs.operations import views  # noqa: PLC0415

    console.print(f"plan {p.id} ({p.trigger}, {p.mode}) at {views.iso(p.created_s)}: imbalance "
                  f"{_fmt(p.imbalance_before)} -> {_fmt(p.imbalance_after)} (target "
                  f"{_fmt(p.target)}); "
                  + (f"applied {views.iso(p.applied_s)} by {p.applied_by}" if p.applied_s
                     else "not applied"), highlight=False, markup=False)
    table = Table()
    for col in ("vm", "from", "to", "kind", "reason", "job"):
        table.add_column(col, overflow="fold")
    for pm in p.moves:
        m = pm.move
        job = f"{pm.job_id} {pm.job_state}" if pm.job_id else ""
        table.add_row(m.vm, m.source, m.destination, m.kind, escape(m.reason), job)
    console.print(table)
    for note in p.notes:
        console.print(f"note: {note}", highlight=False, markup=False)


@plans.command("show")
@click.argument("plan_id", type=int)
@json_option
@pass_app
def plans_show(app: AppContext, plan_id: int, as_json: bool) -> None:
    """One recorded plan with its moves, their reasons and the jobs that carried them out."""
    from libvirt_drs.operations import reads, views  # noqa: PLC0415

    p = reads.plan(app.cluster(), app.caller(), plan_id)
    if as_json:
        print_json(views.plan_record(p))
    else:
        _print_plan(p)


@plans.command("apply")
@click.argument("plan_id", type=int)
@click.option("--vm", default=None, help="Apply only this VM's move.")
@yes_option
@json_option
@pass_app
def plans_apply(app: AppContext, plan_id: int, vm: str | None, yes: bool, as_json: bool) -> None:
    """Carry out a recorded plan (or one of its moves): the moves not done yet whose VM is
    still where the plan found it. Shows the plan and asks first (--yes skips)."""
    from libvirt_drs.operations import moves, reads, views  # noqa: PLC0415

    cl = action_cluster(app)
    caller = app.caller()
    if not as_json:
        _print_plan(reads.plan(cl, caller, plan_id))
    confirm(f"apply plan {plan_id}" + (f" (only {vm})" if vm else "") + "?", yes)
    applied = moves.apply_plan(cl, caller, plan_id, vm)
    for v, why in applied.skipped:
        err_console.print(f"skipped {v}: {why}", highlight=False, markup=False)
    done = run_with_progress(cl, applied.jobs, quiet=as_json)
    if as_json:
        print_json(views.applied(applied) | {"jobs": [views.job(j) for j in done]})
    if not all_succeeded(done):
        raise click.exceptions.Exit(1)


@click.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000),
              help="Show the last N events.")
@click.option("--actor", default=None, help="Only events by this actor (e.g. cli:alice).")
@click.option("--action", "action_prefix", default=None,
              help="Only actions starting with this (e.g. migration., host.).")
@click.option("--subject", default=None, help="Only events about this VM, host or plan.")
@json_option
@pass_app
def audit(app: AppContext, limit: int, actor: str | None, action_prefix: str | None,
          subject: str | None, as_json: bool) -> None:
    """The audit log (oldest first): who did what to which host, VM or plan, and why."""
    from libvirt_drs.operations import reads, views  # noqa: PLC0415

    rows = reads.audit_log(app.cluster(), app.caller(), limit, actor=actor,
                           action_prefix=action_prefix, subject=subject)
    if as_json:
        print_json([views.audit_record(r) for r in rows])
        return
    table = Table()
    for col in ("time (UTC)", "actor", "action", "subject", "detail"):
        table.add_column(col, no_wrap=col in ("time (UTC)", "action"), overflow="fold")
    for r in rows:
        table.add_row((views.iso(r.ts_s) or "")[:19].replace("T", " "), escape(r.actor),
                      r.action, escape(r.subject), escape(r.detail))
    console.print(table)


COMMANDS = (rebalance, plans, audit)
