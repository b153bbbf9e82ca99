"""`drs maintenance enter|exit` and `drs evacuate`: empty hosts through the planner.

Thin adapters over libvirt_drs.operations.hosts: preview what moves and what cannot,
ask, then mark the hosts, move the VMs with progress and list what was left and why.
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
from libvirt_drs.cli.migrate_cmd import action_cluster, run_with_progress

dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Show what would move and what cannot; change nothing.")


def moves_table(title: str, moves: Any) -> Table:
    table = Table(title=title)
    for col in ("vm", "from", "to", "kind", "reason"):
        table.add_column(col, overflow="fold")
    for mv in moves:
        table.add_row(mv.vm, mv.source, mv.destination, mv.kind, escape(mv.reason))
    return table


def print_preview(evac: Any, what: str) -> None:
    plan = evac.planned.plan
    if evac.moves:
        console.print(moves_table(f"{what}: {len(evac.moves)} VM(s) would move", evac.moves))
    else:
        console.print(f"{what}: no VM to move", highlight=False)
    for u in plan.unmovable:
        console.print(f"cannot move: {u.vm}: {u.reason} [{u.rule}]", highlight=False,
                      markup=False)
    for note in plan.notes:
        err_console.print(f"note: {note}", highlight=False, markup=False)


def _previewed(preview: Any, what: str, dry_run: bool, as_json: bool) -> bool:
    """Show what would move (the whole answer of a dry run); True when it was a dry run."""
    from libvirt_drs.operations import views  # noqa: PLC0415

    if dry_run and as_json:
        print_json(views.evacuation(preview))
    elif not as_json:
        print_preview(preview, what + (" (dry run)" if dry_run else ""))
    return dry_run


def _print_left(left: list[Any]) -> None:
    for item in left:
        console.print(f"not moved: {item.vm} on {item.host}: {item.reason}", highlight=False,
                      markup=False)


@click.group("maintenance")
def maintenance() -> None:
    """Put a host in maintenance (evacuating it) or take it out."""


@maintenance.command("enter")
@click.argument("host")
@dry_run_option
@yes_option
@json_option
@pass_app
def maintenance_enter(app: AppContext, host: str, dry_run: bool, yes: bool,
                      as_json: bool) -> None:
    """Mark HOST in maintenance and move its VMs where the planner places them.

    Shows the moves first and asks (--yes skips the question). Exit 1 if a VM stays."""
    from libvirt_drs.operations import hosts, views  # noqa: PLC0415

    cl = app.cluster() if dry_run else action_cluster(app)
    caller = app.caller()
    preview = hosts.plan_maintenance(cl, caller, host)
    if _previewed(preview, f"maintenance of {host}", dry_run, as_json):
        return
    confirm(f"put {host} into maintenance and move {len(preview.moves)} VM(s) off it?", yes)
    evac = hosts.request_maintenance(cl, caller, host)
    done = run_with_progress(cl, evac.jobs, quiet=as_json)
    cl.refresh()
    left = hosts.left_behind(cl, {host}, evac, done)
    if as_json:
        print_json(views.evacuation(evac, left) | {"jobs": [views.job(j) for j in done]})
    else:
        _print_left(left)
        console.print(f"{host} is in maintenance but still runs {len(left)} VM(s)" if left else
                      f"{host} is in maintenance and empty ({len(done)} VM(s) moved)",
                      highlight=False)
    if left:
        raise click.exceptions.Exit(1)


@maintenance.command("exit")
@click.argument("host")
@yes_option
@json_option
@pass_app
def maintenance_exit(app: AppContext, host: str, yes: bool, as_json: bool) -> None:
    """Take HOST out of maintenance: it receives VMs again (asks first; --yes skips)."""
    from libvirt_drs.operations import hosts  # noqa: PLC0415

    cl = app.cluster()
    cl.host(host)  # an unknown host is an error before any question
    confirm(f"take {host} out of maintenance (the balancer may move VMs onto it)?", yes)
    hosts.exit_maintenance(cl, app.caller(), host)
    if as_json:
        print_json({"host": host, "state": "active"})
    else:
        console.print(f"{host} is active", highlight=False)


@click.command("evacuate")
@click.option("--group", "group", required=True, help="Site or host group to empty.")
@click.option("--to-group", "to_group", default=None,
              help="Only move into this group (default: any host outside --group).")
@dry_run_option
@yes_option
@json_option
@pass_app
def evacuate(app: AppContext, group: str, to_group: str | None, dry_run: bool, yes: bool,
             as_json: bool) -> None:
    """Move every VM away from the hosts of a group (disaster avoidance).

    The group's hosts stay in maintenance afterwards. Shows the moves and asks first."""
    from libvirt_drs.operations import hosts, views  # noqa: PLC0415

    cl = app.cluster() if dry_run else action_cluster(app)
    caller = app.caller()
    preview = hosts.plan_evacuation(cl, caller, group, to_group)
    if _previewed(preview, f"evacuation of group {group} ({', '.join(preview.hosts)})",
                  dry_run, as_json):
        return
    confirm(f"put {len(preview.hosts)} host(s) of group {group} into maintenance "
            f"({', '.join(preview.hosts)}) and move {len(preview.moves)} VM(s) away?", yes)
    evac = hosts.request_evacuation(cl, caller, group, to_group)
    done = run_with_progress(cl, evac.jobs, quiet=as_json)
    cl.refresh()
    left = hosts.left_behind(cl, set(evac.hosts), evac, done)
    if as_json:
        print_json(views.evacuation(evac, left) | {"jobs": [views.job(j) for j in done]})
    else:
        _print_left(left)
        console.print(f"group {group}: {len(done)} VM(s) moved, {len(left)} left; its hosts "
                      "stay in maintenance (drs maintenance exit HOST)", highlight=False)
    if left:
        raise click.exceptions.Exit(1)


COMMANDS = (maintenance, evacuate)
