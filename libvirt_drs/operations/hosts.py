"""Hosts: enter and leave maintenance, evacuate a site or host group, and say which VMs
are still on a host that should be empty, and why.

Each action comes as a preview (`plan_*`: what would move, what cannot and why; changes
nothing) and a request (`request_*`: marks the hosts, records the plan, queues the moves).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from libvirt_drs.balancer.model import Move
from libvirt_drs.config import Config
from libvirt_drs.db.snapshot import load_snapshot
from libvirt_drs.migrator.hypervisor import HypervisorError
from libvirt_drs.migrator.model import Job
from libvirt_drs.operations import planning
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Conflict, Invalid


@dataclass(frozen=True)
class Evacuation:
    """Hosts to empty and where their VMs go; `plan_id` and `jobs` once requested."""

    hosts: tuple[str, ...]
    planned: planning.Planned
    moves: tuple[Move, ...]
    plan_id: int | None = None
    jobs: tuple[Job, ...] = ()


@dataclass(frozen=True)
class Left:
    """A VM that is still on a host that should have been emptied, and why."""

    vm: str
    host: str
    reason: str


def plan_maintenance(cl: Cluster, caller: Caller, host: str, refresh: bool = True) -> Evacuation:
    require(caller, Role.VIEWER, "preview maintenance")
    cl.require_hosts()
    cl.host(host)
    if refresh:
        cl.refresh()
    planned, moves = planning.evacuation_plan(cl, {host}, None, copy_storage=False)
    return Evacuation((host,), planned, tuple(moves))


def request_maintenance(cl: Cluster, caller: Caller, host: str) -> Evacuation:
    """Mark `host` in maintenance (it receives nothing from now on) and queue its VMs' moves."""
    require(caller, Role.OPERATOR, "put hosts into maintenance")
    cl.require_hosts()
    cl.host(host)
    store = cl.migrator.store
    store.set_host_state(host, "maintenance", f"entered by {caller.name}")
    store.audit(caller.name, "host.maintenance", host, "entering maintenance")
    cl.refresh()
    planned, moves = planning.evacuation_plan(cl, {host}, None, copy_storage=False)
    return _queue(cl, caller, (host,), planned, moves, "maintenance", force_copy=False)


def exit_maintenance(cl: Cluster, caller: Caller, host: str) -> None:
    require(caller, Role.OPERATOR, "take hosts out of maintenance")
    cl.host(host)
    store = cl.migrator.store
    store.set_host_state(host, "active", None)
    store.audit(caller.name, "host.active", host, "left maintenance")


def evacuation_hosts(cl: Cluster, group: str, to_group: str | None
                     ) -> tuple[set[str], set[str] | None]:
    """The hosts of `group` and the allowed destinations; refuses an evacuation with
    nowhere to go."""
    leaving = set(cl.group(group))
    targets = set(cl.group(to_group)) if to_group else None
    if targets is not None and targets & leaving:
        raise Invalid(f"--to-group {to_group!r} overlaps --group {group!r}", "to_group")
    others = {h.name for h in cl.cfg.hosts} - leaving
    if not others:
        raise Conflict(f"group {group!r} holds every configured host: there is nowhere to "
                       "move its VMs", "no_destination")
    return leaving, targets


def plan_evacuation(cl: Cluster, caller: Caller, group: str, to_group: str | None = None,
                    refresh: bool = True) -> Evacuation:
    require(caller, Role.VIEWER, "preview an evacuation")
    cl.require_hosts()
    leaving, targets = evacuation_hosts(cl, group, to_group)
    if refresh:
        cl.refresh()
    planned, moves = planning.evacuation_plan(cl, leaving, targets, copy_storage=True)
    return Evacuation(tuple(sorted(leaving)), planned, tuple(moves))


def request_evacuation(cl: Cluster, caller: Caller, group: str,
                       to_group: str | None = None) -> Evacuation:
    """Mark every host of `group` in maintenance and queue the moves that empty them
    (copying disks where storage is not shared)."""
    require(caller, Role.OPERATOR, "evacuate host groups")
    cl.require_hosts()
    leaving, targets = evacuation_hosts(cl, group, to_group)
    store = cl.migrator.store
    for h in sorted(leaving):
        store.set_host_state(h, "maintenance", f"evacuation of group {group} by {caller.name}")
    store.audit(caller.name, "group.evacuate", group, f"hosts {', '.join(sorted(leaving))}"
                + (f" to group {to_group}" if to_group else ""))
    cl.refresh()
    planned, moves = planning.evacuation_plan(cl, leaving, targets, copy_storage=True)
    return _queue(cl, caller, tuple(sorted(leaving)), planned, moves, "evacuate", force_copy=True)


def _queue(cl: Cluster, caller: Caller, hosts: tuple[str, ...], planned: planning.Planned,
           moves: list[Move], trigger: str, force_copy: bool) -> Evacuation:
    plan_id = planning.record(cl, planned, mode="manual", trigger=trigger, actor=caller.name)
    jobs = cl.migrator.runner.submit(
        planning.move_requests(cl.cfg, moves, plan_id, force_copy)) if moves else []
    return Evacuation(hosts, planned, tuple(moves), plan_id, tuple(jobs))


def left_behind(cl: Cluster, leaving: Collection[str], evacuation: Evacuation | None = None,
                jobs: Iterable[Job] = ()) -> list[Left]:
    """Every VM still running on a host of `leaving`, with the best reason known."""
    why: dict[str, str] = {}
    if evacuation is not None:
        why = {u.vm: f"{u.reason} [{u.rule}]" for u in evacuation.planned.plan.unmovable}
    for job in jobs:
        if job.error:
            why[job.vm_name] = f"migration {job.state}: {job.error}"
    rules = cl.cfg.rules
    for name in rules.pinned:
        why.setdefault(name, "pinned (rules.pinned): never moved")
    for name in rules.excluded:
        why.setdefault(name, "excluded (rules.excluded): never moved by drs")
    snapshot = load_snapshot(cl.engine, cl.cfg, cl.clock())
    hv = cl.migrator.hv
    left = []
    for vm in snapshot.vms:
        if vm.host not in leaving:
            continue
        try:
            dom = hv.domain(vm.host, vm.name)
        except HypervisorError as exc:
            left.append(Left(vm.name, vm.host, f"cannot check: {exc}"))
            continue
        if dom is not None:
            reason = why.get(vm.name, "the planner found no destination")
            left.append(Left(vm.name, vm.host, _with_rules(cl.cfg, vm.name, reason)))
    return left


def _with_rules(cfg: Config, vm: str, reason: str) -> str:
    """Name the hard host rules that bind `vm`, so the operator sees why it cannot leave."""
    binding = [f"rule {r.name!r}: {vm} {r.kind.replace('_', ' ')} run on {', '.join(r.hosts)}"
               for r in cfg.rules.vm_host if r.kind in ("must", "must_not") and vm in r.vms]
    extra = [b for b in binding if f"'{b.split(chr(39))[1]}'" not in reason]
    return "; ".join([reason, *extra])
