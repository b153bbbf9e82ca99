"""`drs replicate` and `drs replication status`: disaster recovery replicas of the VMs in
[[replication.policies]]. Thin adapters over libvirt_drs.operations.replication."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

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
from libvirt_drs.errors import UserError

POLL_S = 1.0


@click.command("replicate")
@click.option("--once", is_flag=True,
              help="One recovery point of every protected VM (or of each --vm), then exit; "
                   "exit 1 if one failed. Without it: keep replicating, each VM every half "
                   "of its RPO, until Ctrl-C or SIGTERM.")
@click.option("--vm", "vms", multiple=True, metavar="NAME",
              help="Only this protected VM (repeatable).")
@json_option
@pass_app
def replicate(app: AppContext, once: bool, vms: tuple[str, ...], as_json: bool) -> None:
    """Replicate protected VMs' disks to their recovery site: a full copy first, then the
    blocks changed since the last recovery point (libvirt incremental backup)."""
    from libvirt_drs.operations import replication as ops  # noqa: PLC0415
    from libvirt_drs.operations import views  # noqa: PLC0415

    cl = app.cluster()
    if not cl.cfg.replication.policies:
        raise UserError(f"{cl.cfg.path}: no [[replication.policies]]: nothing to replicate "
                        "(docs/replication.md)")
    ops.protected(cl, vms)  # unknown VMs: one line, before anything runs
    if once:
        outcomes = ops.replicate(cl, app.caller(), vms)
        _report(views.replication_outcomes(outcomes), as_json)
        if any(o.point is None for o in outcomes):
            raise SystemExit(1)
        return
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda _s, _f: stop.set())
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.is_set():
            wanted = [vm for vm in ops.due(cl, app.caller()) if not vms or vm in vms]
            for vm in wanted:
                if stop.is_set():
                    break
                _report(views.replication_outcomes(ops.replicate(cl, app.caller(), (vm,))),
                        as_json)
            stop.wait(POLL_S)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _report(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    for r in data["replicated"]:
        if r["ok"]:
            p = r["point"]
            console.print(f"{r['vm']}: point {p['seq']} ({p['kind']}, {p['bytes']} bytes) on "
                          f"{p['recovery_host']} in {r['seconds']} s", highlight=False,
                          markup=False)
        else:
            console.print(f"{r['vm']}: failed: {r['error']}", highlight=False, markup=False)


@click.group("replication")
def replication() -> None:
    """Disaster recovery replicas: how far behind each protected VM is."""


@replication.command("status")
@json_option
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Per protected VM: its recovery point's time and age (the RPO actually held) against
    the policy's RPO, bytes sent, failures and the last error."""
    from libvirt_drs.operations import replication as ops  # noqa: PLC0415
    from libvirt_drs.operations import views  # noqa: PLC0415

    data = views.replication_status(ops.status(app.cluster(), app.caller()))
    if as_json:
        print_json(data)
        return
    if not data["vms"]:
        console.print("no protected VMs ([[replication.policies]] in the config)")
        return
    table = Table(title=f"replication at {time.strftime('%Y-%m-%d %H:%M:%S')}")
    for col in ("vm", "policy", "recovery point", "age s", "RPO s", "ok", "on", "chain",
                "bytes sent", "failures", "last error"):
        table.add_column(col, overflow="fold")
    for v in data["vms"]:
        table.add_row(v["vm"], v["policy"], (v["recovery_point_at"] or "none")[:19],
                      "-" if v["recovery_point_age_s"] is None else str(v["recovery_point_age_s"]),
                      str(v["rpo_s"]), "yes" if v["within_rpo"] else "NO",
                      v["recovery_host"] or "-", str(v["chain_length"]),
                      str(v["bytes_sent_total"]), str(v["failures"]),
                      escape(v["last_error"] or ""))
    console.print(table)


@click.command("failover")
@click.option("--site", required=True, metavar="GROUP",
              help="The primary site (host group) whose protected VMs start on their "
                   "recovery site.")
@click.option("--planned", is_flag=True,
              help="A planned migration while the site still runs: each VM is paused, "
                   "synchronised one last time, stopped and started on the recovery site "
                   "(no write lost; every primary host must answer).")
@click.option("--test", "test", is_flag=True,
              help="A test: start an isolated copy of each VM (<vm>-drtest, no network) "
                   "from its recovery point; production and replication go on untouched.")
@click.option("--cleanup-test", is_flag=True,
              help="Stop and remove the test copies (and their disks) a --test started.")
@yes_option
@json_option
@pass_app
def failover(app: AppContext, site: str, planned: bool, test: bool, cleanup_test: bool,
             yes: bool, as_json: bool) -> None:
    """Start the protected VMs of a lost SITE on their recovery site, each from its latest
    recovery point, in priority order (asks first; primary hosts that do not answer must be
    powered off). A VM still running on a primary host that answers is refused; exit 1 if
    any VM did not start. --planned, --test and --cleanup-test: see below."""
    from libvirt_drs.operations import replication as ops  # noqa: PLC0415
    from libvirt_drs.operations import views  # noqa: PLC0415

    if planned + test + cleanup_test > 1:
        raise click.UsageError("--planned, --test and --cleanup-test: at most one")
    cl = app.cluster()
    if cleanup_test:
        confirm(f"remove the failover test copies of site {site}'s VMs and their disks?", yes)
        data = views.test_copies_removed(site, ops.remove_test_copies(cl, app.caller(), site))
        if as_json:
            print_json(data)
            return
        for r in data["removed"]:
            console.print(f"{r['name']}: removed from {r['host']}", highlight=False,
                          markup=False)
        console.print(f"{len(data['removed'])} test copies removed", highlight=False)
        return
    view = ops.failover_preview(cl, app.caller(), site)
    if test:
        question = (f"test failover of site {site}: start an isolated copy (no network) of "
                    "each protected VM on the recovery site from its recovery point?")
    elif planned:
        question = (f"planned migration of site {site}: pause each protected VM, synchronise "
                    "it and start it on the recovery site (it stops at the primary)?")
    else:
        off = (f" Hosts {', '.join(view.unreachable)} do not answer: you confirm they are "
               "powered off (a VM running there and on the recovery site would run twice)."
               if view.unreachable else "")
        question = (f"fail over site {site}: start its protected VMs on the recovery site from "
                    f"their recovery points (writes after each point are lost)?{off}")
    confirm(question, yes)
    mode = "test" if test else "planned" if planned else "failover"
    _report_moves(views.failover(ops.failover(cl, app.caller(), site, hosts_off_confirmed=True,
                                              mode=mode)), as_json)


@click.command("failback")
@click.option("--site", required=True, metavar="GROUP",
              help="The primary site (host group), back again: its protected VMs that run "
                   "on the recovery site return to it.")
@yes_option
@json_option
@pass_app
def failback(app: AppContext, site: str, yes: bool, as_json: bool) -> None:
    """Return the protected VMs of SITE from the recovery site after a failover: each is
    paused, synchronised to SITE (replication runs in reverse after a failover), stopped
    and started there, with no write lost; replication to the recovery site then goes on.
    Asks first; exit 1 if any VM did not return."""
    from libvirt_drs.operations import replication as ops  # noqa: PLC0415
    from libvirt_drs.operations import views  # noqa: PLC0415

    cl = app.cluster()
    confirm(f"fail back to site {site}: pause each of its protected VMs running on the "
            "recovery site, synchronise it and start it again on its primary site?", yes)
    _report_moves(views.failover(ops.failback(cl, app.caller(), site)), as_json)


def _report_moves(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        for s in data["started"]:
            lost = ("no write lost" if data["mode"] in ("planned", "failback")
                    else f"{s['data_loss_window_s']} s of writes lost at most")
            console.print(f"{s['name']}: running on {s['host']} in {s['seconds_to_running']} s "
                          f"from point {s['recovery_point_seq']} ({lost})", highlight=False,
                          markup=False)
        for key in ("skipped", "refused"):
            for r in data[key]:
                console.print(f"{r['vm']}: {key}: {r['why']}", highlight=False, markup=False)
        for r in data["failed"]:
            console.print(f"{r['vm']}: failed: {r['error']}", highlight=False, markup=False)
        console.print(f"{data['mode']} of {data['site']}: {len(data['started'])} started in "
                      f"{data['seconds']} s", highlight=False)
    if data["failed"] or data["refused"]:
        raise SystemExit(1)
