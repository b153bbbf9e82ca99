"""Moving VMs: check a migration, request one, recommend, rebalance, apply a recorded plan
or one of its moves, and run queued jobs under the shared limits.

Requests are refused whole (typed errors) before anything is queued: an unknown VM or
host, a failed pre-check, a VM that already has a job, a plan that is outdated or fully
applied. What is queued runs through the migrator, which re-checks live state first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from libvirt_drs.db.plans import mark_applied
from libvirt_drs.migrator.admission import choose
from libvirt_drs.migrator.executor import ProgressCallback
from libvirt_drs.migrator.model import Job, JobState, MoveRequest
from libvirt_drs.migrator.prechecks import CheckInput, CheckResult, first_failure, run_checks
from libvirt_drs.migrator.runner import FinishCallback
from libvirt_drs.migrator_builder import needs_copy_storage
from libvirt_drs.operations import planning, reads
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Conflict, Invalid, NotFound

# A job in one of these states means the move was carried out or is under way.
_TAKEN = (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)


@dataclass(frozen=True)
class MigrationCheck:
    vm: str
    source: str
    destination: str
    copy_storage: bool
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return first_failure(list(self.results)) is None


def locate(cl: Cluster, vm: str) -> str:
    """The one host whose libvirt runs `vm`; NotFound or Conflict otherwise."""
    found, errors = cl.migrator.locate(vm)
    if not found:
        extra = f" (unreachable: {'; '.join(errors)})" if errors else ""
        raise NotFound(f"VM {vm!r} is not running on any configured host{extra}")
    if len(found) > 1:
        raise Conflict(f"VM {vm!r} runs on several hosts ({', '.join(found)}): fix that first",
                       "running_twice")
    return found[0]


def check_migration(cl: Cluster, caller: Caller, vm: str, destination: str,
                    copy_storage: bool = False, source: str | None = None) -> MigrationCheck:
    """Every pre-check of moving `vm` to `destination`, against live state; moves nothing."""
    require(caller, Role.VIEWER, "check a migration")
    cl.require_hosts()
    cl.host(destination)
    source = source or locate(cl, vm)
    if source == destination:
        raise Invalid(f"{vm} already runs on {destination}", "destination")
    copy = needs_copy_storage(cl.cfg, source, destination, copy_storage)
    m = cl.migrator
    req = CheckInput(vm, source, destination, copy, m.store.in_maintenance(destination),
                     int(cl.cfg.balancer.policy.mem_reserve_mib))
    results, _dom = run_checks(m.hv, req)
    return MigrationCheck(vm, source, destination, copy, tuple(results))


def request_migration(cl: Cluster, caller: Caller, vm: str, destination: str,
                      copy_storage: bool = False, wait_for_slot: bool = True) -> list[Job]:
    """Queue one live migration after every pre-check passed.

    `wait_for_slot` False (the API) refuses a migration the limits would hold back now
    instead of queueing it behind others."""
    require(caller, Role.OPERATOR, "migrate VMs")
    check = check_migration(cl, caller, vm, destination, copy_storage)
    failure = first_failure(list(check.results))
    if failure is not None:
        raise Conflict(f"{vm} -> {destination}: {failure.name}: {failure.detail}",
                       str(failure.reason or failure.name))
    request = MoveRequest(vm, check.source, destination, copy_storage=check.copy_storage)
    _refuse_busy(cl, [request], wait_for_slot)
    cl.migrator.store.audit(caller.name, "migration.requested", vm,
                            f"{check.source} -> {destination}"
                            f"{' (copy-storage)' if check.copy_storage else ''}")
    return cl.migrator.runner.submit([request])


def _refuse_busy(cl: Cluster, requests: Sequence[MoveRequest], wait_for_slot: bool) -> None:
    """A VM with a queued or running job is never queued twice; with `wait_for_slot` False,
    a move the limits hold back now is refused too (typed reason, nothing queued)."""
    store = cl.migrator.store
    active = store.jobs(states=(JobState.QUEUED, JobState.RUNNING))
    busy = {j.vm_name: j for j in active}
    for r in requests:
        if r.vm_name in busy:
            j = busy[r.vm_name]
            raise Conflict(f"{r.vm_name} already has migration job {j.id} ({j.state}, "
                           f"{j.source} -> {j.destination})", "vm_busy")
    if wait_for_slot:
        return
    running = [j for j in active if j.state is JobState.RUNNING]
    queued = [j for j in active if j.state is JobState.QUEUED]
    for i, r in enumerate(requests):
        probe = Job(-1 - i, r.vm_name, r.source, r.destination, JobState.QUEUED)
        decision = choose([*queued, probe], running, cl.cfg.migrator.limits, {probe.id})
        if decision.admitted is None:
            blocker = decision.blocked[-1][1] if decision.blocked else "limits"
            raise Conflict(f"{r.vm_name}: {r.source} -> {r.destination} held back by the "
                           f"migration limits now ({blocker}); try again later", str(blocker))


def run_jobs(cl: Cluster, jobs: Sequence[Job], on_progress: ProgressCallback | None = None,
             on_finish: FinishCallback | None = None) -> list[Job]:
    """Carry out queued jobs under the limits; their final rows."""
    if not jobs:
        return []
    m = cl.migrator
    m.runner.run([j.id for j in jobs], on_progress, on_finish)
    return [m.store.get(j.id) for j in jobs]


def recommend(cl: Cluster, caller: Caller, refresh: bool = False) -> planning.Planned:
    """What the balancer would do now (a dry run: nothing is recorded or moved)."""
    require(caller, Role.VIEWER, "read recommendations")
    cl.require_hosts()
    if refresh:
        cl.refresh()
    planned = planning.balance_plan(cl)
    if not any(h.eligible for h in planned.snapshot.hosts):
        raise Conflict("no host has fresh samples: run `drs collect --once` first", "no_data")
    return planned


def request_rebalance(cl: Cluster, caller: Caller, planned: planning.Planned
                      ) -> tuple[int, list[Job]]:
    """Record `planned` (shown to the operator) as applied by the caller and queue its moves."""
    require(caller, Role.OPERATOR, "rebalance the cluster")
    requests = planning.move_requests(cl.cfg, planned.plan.moves, None)
    _refuse_busy(cl, requests, wait_for_slot=True)
    plan_id = planning.record(cl, planned, mode="manual", trigger="rebalance",
                              actor=caller.name)
    mark_applied(cl.engine, plan_id, caller.name, cl.clock())
    cl.migrator.store.audit(caller.name, "plan.applied", f"plan {plan_id}",
                            f"rebalance: {len(requests)} move(s)")
    return plan_id, cl.migrator.runner.submit(
        planning.move_requests(cl.cfg, planned.plan.moves, plan_id))


@dataclass(frozen=True)
class Applied:
    plan_id: int
    jobs: tuple[Job, ...]
    skipped: tuple[tuple[str, str], ...]  # (vm, why the move was not queued)


def plan_max_age_s(cl: Cluster) -> float:
    """A recorded plan older than this is not applied: the cluster has moved on."""
    return max(2 * cl.cfg.balancer.interval_s, 600.0)


def apply_plan(cl: Cluster, caller: Caller, plan_id: int, vm: str | None = None,
               wait_for_slot: bool = True) -> Applied:
    """Queue a recorded plan's moves (or only `vm`'s) that are still valid: not carried out
    yet, the VM still on the move's source. Refused whole when none is."""
    require(caller, Role.OPERATOR, "apply plans")
    record = reads.plan(cl, caller, plan_id)
    age_s = cl.clock() - record.created_s
    if age_s > plan_max_age_s(cl):
        raise Conflict(f"plan {plan_id} is {age_s / 60:.0f} min old (limit "
                       f"{plan_max_age_s(cl) / 60:.0f} min): ask for a new recommendation",
                       "plan_outdated")
    moves = [pm for pm in record.moves if vm is None or pm.move.vm == vm]
    if vm is not None and not moves:
        raise NotFound(f"plan {plan_id} has no move of {vm!r}")
    cl.refresh()
    where = {v.name: v.host for v in reads.cluster_status(cl, caller).vms}
    ready, skipped = [], []
    for pm in moves:
        mv = pm.move
        if pm.job_state in _TAKEN:
            skipped.append((mv.vm, f"already applied (job {pm.job_id}, {pm.job_state})"))
        elif where.get(mv.vm) != mv.source:
            skipped.append((mv.vm, f"no longer on {mv.source} (now on {where.get(mv.vm) or 'no host'})"))
        else:
            ready.append(mv)
    if not ready:
        detail = "; ".join(f"{v}: {why}" for v, why in skipped) or "it has no moves"
        raise Conflict(f"plan {plan_id}: nothing to apply ({detail})", "nothing_to_apply")
    requests = planning.move_requests(cl.cfg, ready, plan_id)
    _refuse_busy(cl, requests, wait_for_slot)
    mark_applied(cl.engine, plan_id, caller.name, cl.clock())
    cl.migrator.store.audit(caller.name, "plan.applied", f"plan {plan_id}",
                            f"{len(ready)} move(s)" + (f" ({vm} only)" if vm else "")
                            + "".join(f"; skipped {v}: {why}" for v, why in skipped))
    return Applied(plan_id, tuple(cl.migrator.runner.submit(requests)), tuple(skipped))


def record_recommendation(cl: Cluster, caller: Caller) -> int:
    """Record what the balancer recommends now (after one collector cycle) as a manual
    plan, to be reviewed and applied (`apply_plan`); its id."""
    require(caller, Role.OPERATOR, "record recommendations")
    planned = recommend(cl, caller, refresh=True)
    return planning.record(cl, planned, mode="manual", trigger="recommend", actor=caller.name)


@dataclass(frozen=True)
class Target:
    """A host a VM could move to: its free capacity and every pre-check's verdict."""

    host: str
    free_cpu_cores: float | None  # capacity minus measured use; None: no data
    free_mem_mib: float | None
    state: str
    check: MigrationCheck


def migration_targets(cl: Cluster, caller: Caller, vm: str) -> tuple[str, list[Target]]:
    """The migrate dialog: where `vm` runs, and for every other host its free CPU and
    memory and the verdict of each pre-check (live, from libvirt)."""
    require(caller, Role.VIEWER, "list migration targets")
    source = locate(cl, vm)
    views = {h.view.name: h.view for h in reads.cluster_status(cl, caller).hosts}
    out = []
    for h in cl.cfg.hosts:
        if h.name == source:
            continue
        v = views.get(h.name)
        free_cpu = (v.cpu_cores - v.cpu_cores_used if v and v.cpu_cores is not None
                    and v.cpu_cores_used is not None else None)
        free_mem = (v.mem_mib - v.mem_used_mib if v and v.mem_mib is not None
                    and v.mem_used_mib is not None else None)
        out.append(Target(h.name, free_cpu, free_mem, v.state if v else "unknown",
                          check_migration(cl, caller, vm, h.name, source=source)))
    return source, out
