"""`drs ha status|fenced|clear`: high availability of the protected VMs.

Thin adapters over libvirt_drs.operations.ha; the restarts themselves are the service's
(the leading `drs serve` runs the HA job, libvirt_drs/ha)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from libvirt_drs.cli.common import (
    AppContext,
    confirm,
    console,
    json_option,
    pass_app,
    print_json,
    yes_option,
)


@click.group("ha")
def ha() -> None:
    """High availability: protected VMs of a failed host restart elsewhere after fencing."""


@ha.command("status")
@click.option("--restarts", default=50, show_default=True, type=click.IntRange(1, 10000),
              help="Show the last N restarts.")
@json_option
@pass_app
def status(app: AppContext, restarts: int, as_json: bool) -> None:
    """Protected VMs, suspected and fenced hosts, restarts and their outcome."""
    from libvirt_drs.operations import ha as ops  # noqa: PLC0415
    from libvirt_drs.operations import views  # noqa: PLC0415

    data = views.ha_status(ops.status(app.cluster(), app.caller(), restarts))
    if as_json:
        print_json(data)
        return
    console.print(f"HA {'enabled' if data['enabled'] else 'disabled'} ([ha] enabled): "
                  f"{len(data['protected'])} protected VM(s)", highlight=False)
    vms = Table(title="protected VMs")
    for col in ("vm", "group", "priority", "order", "host", "definition saved"):
        vms.add_column(col)
    for p in data["protected"]:
        vms.add_row(p["vm"], p["group"], p["priority"], str(p["order"]), p["host"] or "-",
                    (p["definition_saved_at"] or "never (cannot restart yet)")[:19])
    console.print(vms)
    for h in data["hosts"]:
        console.print(f"host {h['host']}: {h['state']} since {h['since'][:19]} "
                      f"({h['fence_attempts']} fence attempt(s)): {h['detail']}",
                      highlight=False, markup=False)
    if data["restarts"]:
        table = Table(title="restarts")
        for col in ("vm", "from", "to", "priority", "state", "s to running", "detail"):
            table.add_column(col, overflow="fold")
        for r in data["restarts"]:
            table.add_row(r["vm"], r["failed_host"], r["destination"] or "-", r["priority"],
                          r["state"], "" if r["seconds_to_running"] is None
                          else str(r["seconds_to_running"]), escape(r["detail"]))
        console.print(table)


@ha.command("fenced")
@click.argument("host")
@yes_option
@json_option
@pass_app
def fenced(app: AppContext, host: str, yes: bool, as_json: bool) -> None:
    """Confirm HOST is powered off (its fence command failed and you switched it off): its
    protected VMs are restarted elsewhere. Wrong about it, and they run twice."""
    from libvirt_drs.operations import ha as ops  # noqa: PLC0415

    cl = app.cluster()
    cl.host(host)
    confirm(f"{host} is really off (no QEMU of it runs anywhere)? Its protected VMs will be "
            "started on other hosts", yes)
    vms = ops.confirm_fenced(cl, app.caller(), host)
    if as_json:
        print_json({"host": host, "restarting": vms})
    else:
        console.print(f"{host} fenced; restarting {len(vms)} VM(s): {', '.join(vms) or 'none'}",
                      highlight=False, markup=False)


@ha.command("clear")
@click.argument("host")
@yes_option
@json_option
@pass_app
def clear(app: AppContext, host: str, yes: bool, as_json: bool) -> None:
    """Put a repaired HOST back in service: stale definitions of VMs now running elsewhere
    are removed from it and it leaves maintenance (asks first)."""
    from libvirt_drs.operations import ha as ops  # noqa: PLC0415

    cl = app.cluster()
    cl.host(host)
    confirm(f"put {host} back in service (the balancer may move VMs onto it)?", yes)
    removed = ops.clear(cl, app.caller(), host)
    if as_json:
        print_json({"host": host, "state": "active", "removed_definitions": removed})
    else:
        console.print(f"{host} is back in service" + (
            f"; removed stale definitions of {', '.join(removed)}" if removed else ""),
            highlight=False, markup=False)
