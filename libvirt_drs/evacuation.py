"""Plan-driven migrations: `drs rebalance`, `drs maintenance enter`, `drs evacuate`.

The balancer decides where each VM goes (its rules and capacity checks); the migrator
moves them under the shared limits. Before planning, one collector cycle refreshes the
inventory so the plan starts from where libvirt says the VMs run now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from libvirt_drs.balancer.model import ClusterSnapshot, Move, Plan, Policy
from libvirt_drs.balancer.planner import plan as plan_moves
from libvirt_drs.collect import CollectJob, summary_line
from libvirt_drs.config import Config
from libvirt_drs.db.plans import record_plan
from libvirt_drs.db.snapshot import load_snapshot
from libvirt_drs.errors import UserError
from libvirt_drs.migrator.hypervisor import HypervisorError
from libvirt_drs.migrator.model import Job, MoveRequest
from libvirt_drs.migrator_builder import Migrator, needs_copy_storage
from libvirt_drs.policy import policy_from_config

log = logging.getLogger(__name__)

ACTOR = "cli"  # who the audit log says recorded the plan (the service records as drs-serve)


@dataclass(frozen=True)
class Left:
    """A VM that is still on a host that should have been emptied, and why."""

    vm: str
    host: str
    reason: str


def refresh_inventory(m: Migrator) -> None:
    job = CollectJob(m.cfg, m.engine)
    try:
        log.info("%s", summary_line(job.run_cycle()))
    finally:
        job.close()


def current_plan(m: Migrator, snapshot: ClusterSnapshot | None = None,
                 policy: Policy | None = None) -> tuple[Plan, float]:
    """The planner's plan for the cluster as it is now, and the time it took (ms)."""
    snapshot = snapshot or load_snapshot(m.engine, m.cfg)
    t0 = time.perf_counter()
    result = plan_moves(snapshot, policy or policy_from_config(m.cfg))
    return result, (time.perf_counter() - t0) * 1000.0


def record(m: Migrator, result: Plan, plan_ms: float, mode: str, trigger: str) -> int:
    return record_plan(m.engine, result, mode=mode, plan_ms=plan_ms, now_s=time.time(),
                       trigger=trigger, actor=ACTOR)


def move_requests(m: Migrator, moves: Iterable[Move], plan_id: int | None,
                  force_copy: bool = False) -> list[MoveRequest]:
    return [MoveRequest(mv.vm, mv.source, mv.destination, plan_id=plan_id,
                        copy_storage=needs_copy_storage(m.cfg, mv.source, mv.destination,
                                                        force_copy))
            for mv in moves]


def evacuation_snapshot(snapshot: ClusterSnapshot, leaving: Collection[str],
                        destinations: Collection[str] | None) -> ClusterSnapshot:
    """Hosts in `leaving` are evacuated; hosts outside `destinations` neither give nor take."""
    hosts = []
    for h in snapshot.hosts:
        if h.name in leaving:
            h = replace(h, state="maintenance")
        elif destinations is not None and h.name not in destinations:
            h = replace(h, stale=True)
        hosts.append(h)
    return replace(snapshot, hosts=tuple(hosts))


def evacuation_plan(m: Migrator, leaving: Collection[str], destinations: Collection[str] | None,
                    copy_storage: bool) -> tuple[Plan, float, list[Move]]:
    """Mandatory moves only (no balancing); returns the plan and the moves off `leaving`."""
    snapshot = evacuation_snapshot(load_snapshot(m.engine, m.cfg), leaving, destinations)
    policy = replace(policy_from_config(m.cfg), max_moves_per_pass=0,
                     copy_storage=copy_storage or m.cfg.migrator.copy_storage)
    result, plan_ms = current_plan(m, snapshot, policy)
    return result, plan_ms, [mv for mv in result.moves if mv.source in leaving]


def left_behind(m: Migrator, leaving: Collection[str], result: Plan,
                jobs: Iterable[Job]) -> list[Left]:
    """Every VM still running on a host of `leaving`, with the best reason known."""
    why: dict[str, str] = {u.vm: f"{u.reason} [{u.rule}]" for u in result.unmovable}
    for job in jobs:
        if job.error:
            why[job.vm_name] = f"migration {job.state}: {job.error}"
    rules = m.cfg.rules
    for name in rules.pinned:
        why.setdefault(name, "pinned (rules.pinned): never moved")
    for name in rules.excluded:
        why.setdefault(name, "excluded (rules.excluded): never moved by drs")
    snapshot = load_snapshot(m.engine, m.cfg)
    left = []
    for vm in snapshot.vms:
        if vm.host not in leaving:
            continue
        try:
            dom = m.hv.domain(vm.host, vm.name)
        except HypervisorError as exc:
            left.append(Left(vm.name, vm.host, f"cannot check: {exc}"))
            continue
        if dom is not None:
            reason = why.get(vm.name, "the planner found no destination")
            left.append(Left(vm.name, vm.host, _with_rules(m.cfg, vm.name, reason)))
    return left


def _with_rules(cfg: Config, vm: str, reason: str) -> str:
    """Name the hard host rules that bind `vm`, so the operator sees why it cannot leave."""
    binding = [f"rule {r.name!r}: {vm} {r.kind.replace('_', ' ')} run on {', '.join(r.hosts)}"
               for r in cfg.rules.vm_host if r.kind in ("must", "must_not") and vm in r.vms]
    extra = [b for b in binding if f"'{b.split(chr(39))[1]}'" not in reason]
    return "; ".join([reason, *extra])


def group_hosts(cfg: Config, group: str) -> list[str]:
    hosts = [h.name for h in cfg.hosts if h.group == group]
    if not hosts:
        groups = sorted({h.group for h in cfg.hosts})
        raise UserError(f"no host in group {group!r} (groups: {', '.join(groups)})")
    return hosts
