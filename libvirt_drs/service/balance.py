"""The balance job: snapshot -> plan -> record -> (automatic mode) migrate.

Manual mode records the recommendation (a `plans` row with its moves and an audit
event) and stops there; automatic mode also queues the moves as migration jobs and
runs them through the migrator under the per-host limits, then waits (bounded) until
the collector has seen the hosts involved again, so the next round plans on the
placement that is, not the one that was.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from sqlalchemy import Engine

from libvirt_drs.balancer.contention import host_wait_cores, host_worst_wait, served_ratio
from libvirt_drs.balancer.model import ClusterSnapshot, Move, Plan, Policy
from libvirt_drs.balancer.planner import plan as plan_moves
from libvirt_drs.balancer.scoring import snapshot_loads
from libvirt_drs.db.plans import record_plan, wait_collected
from libvirt_drs.migrator.model import Job, JobState, MoveRequest, Outcome
from libvirt_drs.migrator.runner import Runner
from libvirt_drs.service.job_control import ServiceMigrations, run_moves
from libvirt_drs.service.metrics import DrsMetrics
from libvirt_drs.windows import WindowState

ALWAYS_OPEN = WindowState(True, None, None)

log = logging.getLogger(__name__)

ACTOR = "drs-serve"


@dataclass(frozen=True)
class ClusterLoads:
    cpu: dict[str, float]
    memory: dict[str, float]
    vms: dict[str, int]
    stale: tuple[str, ...]
    maintenance: tuple[str, ...]
    capacity: dict[str, tuple[float, float]]  # (cores, MiB)
    imbalance_cpu: float
    imbalance_memory: float
    imbalance: float
    target: float
    eligible_hosts: int
    host_cpu_wait_cores: dict[str, float]  # summed over the host's VMs
    host_vm_cpu_wait_max: dict[str, float]  # the highest CPU wait ratio of the host's VMs
    cpu_served: float | None  # the cluster's CPU served ratio (balancer.contention)


def cluster_loads(snapshot: ClusterSnapshot, policy: Policy) -> ClusterLoads:
    """Per-host loads and the imbalance as the planner computes them (balancer.scoring)."""
    loads = snapshot_loads(snapshot, policy)
    names = loads.hosts
    none = {h.name: 0.0 for h in snapshot.hosts}  # hosts without VMs: nothing waits
    return ClusterLoads(
        cpu={n: float(loads.cpu[i]) for i, n in enumerate(names)},
        memory={n: float(loads.mem[i]) for i, n in enumerate(names)},
        vms={n: int(loads.vms[i]) for i, n in enumerate(names)},
        stale=tuple(h.name for h in snapshot.hosts if h.stale),
        maintenance=tuple(h.name for h in snapshot.hosts if h.state == "maintenance"),
        capacity={h.name: (h.cpu_cores, h.mem_mib) for h in snapshot.hosts},
        imbalance_cpu=loads.imbalance_cpu, imbalance_memory=loads.imbalance_mem,
        imbalance=loads.imbalance, target=loads.target,
        eligible_hosts=int(loads.eligible.sum()),
        host_cpu_wait_cores=none | host_wait_cores((v.host, v.cpu_wait_cores) for v in snapshot.vms),
        host_vm_cpu_wait_max=none | host_worst_wait((v.host, v.cpu_wait_cores, v.vcpus)
                                                    for v in snapshot.vms),
        # the snapshot's demand counts the wait: what was served is demand - wait
        cpu_served=served_ratio((v.cpu_cores - v.cpu_wait_cores, v.cpu_wait_cores)
                                for v in snapshot.vms))


def publish_loads(metrics: DrsMetrics, loads: ClusterLoads) -> None:
    metrics.set_host_gauges(loads.cpu, loads.memory, loads.vms, loads.stale, loads.maintenance,
                            loads.capacity)
    metrics.cluster_vms.set(sum(loads.vms.values()))
    metrics.cluster_hosts.set(loads.eligible_hosts)
    metrics.imbalance.labels("cpu").set(loads.imbalance_cpu)
    metrics.imbalance.labels("memory").set(loads.imbalance_memory)
    metrics.imbalance.labels("combined").set(loads.imbalance)
    if np.isfinite(loads.target):
        metrics.imbalance_target.set(loads.target)
    metrics.set_contention(loads.host_cpu_wait_cores, loads.host_vm_cpu_wait_max, loads.cpu_served)


@dataclass(frozen=True)
class Round:
    """What one balance run did (the demo and the tests read these)."""

    plan_id: int
    started_s: float
    imbalance_before: float
    imbalance_after: float  # as planned
    target: float
    moves: int
    outcomes: dict[str, int] = field(default_factory=dict)  # job state -> count
    loads: ClusterLoads | None = None  # the cluster as this round saw it
    snapshot: ClusterSnapshot | None = None
    plan: Plan | None = None
    results: dict[str, JobState] = field(default_factory=dict)  # vm -> job state

    def carried_out(self) -> tuple[Move, ...]:
        """The planned moves whose migration succeeded."""
        if self.plan is None:
            return ()
        return tuple(m for m in self.plan.moves
                     if self.results.get(m.vm) == JobState.SUCCEEDED)


ROUNDS_KEPT = 64


class BalanceJob:
    """Callable for the scheduler; `rounds` keeps what the last ROUNDS_KEPT runs did."""

    def __init__(self, engine: Engine, load_snapshot: Callable[[], ClusterSnapshot],
                 policy: Policy, mode: str, metrics: DrsMetrics,
                 migrations: ServiceMigrations, runner: Runner | None,
                 is_leader: Callable[[], bool] = lambda: True,
                 settle_timeout_s: float = 60.0, clock: Callable[[], float] = time.time,
                 on_round: Callable[[Round], None] | None = None,
                 *, move_requests: Callable[[Sequence[Move], int], list[MoveRequest]],
                 window: Callable[[float], WindowState] = lambda _now_s: ALWAYS_OPEN,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.load_snapshot = load_snapshot
        self.policy = policy
        self.mode = mode
        self.metrics = metrics
        self.migrations = migrations
        self.runner = runner
        self.is_leader = is_leader
        self.settle_timeout_s = settle_timeout_s
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.on_round = on_round
        # planned moves -> migration requests (operations.planning.move_requests: copy
        # storage where the hosts do not share it)
        self.move_requests = move_requests
        self.window = window  # balancing windows (libvirt_drs.windows): closed holds balancing
        self.rounds: deque[Round] = deque(maxlen=ROUNDS_KEPT)

    def __call__(self) -> Round | None:
        if self.migrations.stopping:
            return None
        started = self.clock()
        snapshot = self.load_snapshot()
        loads = cluster_loads(snapshot, self.policy)
        publish_loads(self.metrics, loads)
        t0 = self.monotonic()
        plan = plan_moves(snapshot, self.policy)
        plan_s = self.monotonic() - t0
        self.metrics.planner_duration.observe(plan_s)
        self.metrics.planner_runs.labels(self.mode).inc()
        for move in plan.moves:
            self.metrics.planner_moves.labels(move.kind).inc()
        mode, to_run = self.mode, list(plan.moves) if self.mode == "automatic" else []
        window = self.window(started)
        self.metrics.balancing_window_open.set(1 if window.open else 0)
        if mode == "automatic" and not window.open:
            plan, mode, to_run = _hold_balancing(plan, window)
        plan_id = record_plan(self.engine, plan, mode=mode, plan_ms=plan_s * 1000.0,
                              now_s=started, trigger="balance", actor=ACTOR)
        self.metrics.recommendations_pending.set(len(plan.moves) - len(to_run))
        log.info("plan %d (%s): imbalance %.4f -> %.4f, target %.4f, %d move(s)%s%s", plan_id,
                 mode, plan.imbalance_before, plan.imbalance_after, plan.target,
                 len(plan.moves), "".join(f"; {m.vm} {m.source}->{m.destination}"
                                          for m in plan.moves),
                 "".join(f"; note: {n}" for n in plan.notes))
        results: dict[str, JobState] = {}
        if to_run and self.runner is not None:
            if not self.is_leader():  # lost leadership while planning: someone else acts
                log.warning("plan %d not executed: leadership lost", plan_id)
            else:
                results = self._execute(to_run, plan_id)
        outcomes: dict[str, int] = {}
        for state in results.values():
            outcomes[state.value] = outcomes.get(state.value, 0) + 1
        rnd = Round(plan_id, started, plan.imbalance_before, plan.imbalance_after, plan.target,
                    len(plan.moves), outcomes, loads, snapshot, plan, results)
        self.rounds.append(rnd)
        if self.on_round is not None:
            self.on_round(rnd)
        return rnd

    def _execute(self, moves: Sequence[Move], plan_id: int) -> dict[str, JobState]:
        """Run the plan's moves; returns each moved VM's job state."""
        assert self.runner is not None
        requests = self.move_requests(moves, plan_id)
        outcomes = run_moves(self.runner, self.migrations, requests, on_finish=self._finished)
        results = {vm: JobState(o.state) for vm, o in outcomes.items()}
        if JobState.SUCCEEDED in results.values():
            hosts = {m.source for m in moves} | {m.destination for m in moves}
            self._wait_collected(hosts, self.clock())
        return results

    def _finished(self, job: Job, outcome: Outcome) -> None:
        log.info("migration %s %s -> %s: %s%s", job.vm_name, job.source, job.destination,
                 outcome.state, f" ({outcome.error})" if outcome.error else "")

    def _wait_collected(self, hosts: set[str], after_s: float) -> bool:
        """Wait until every host in `hosts` was collected after `after_s` (bounded)."""
        if wait_collected(self.engine, hosts, after_s, self.settle_timeout_s,
                          stopping=lambda: self.migrations.stopping,
                          monotonic=self.monotonic, sleep=self.sleep):
            return True
        log.warning("hosts %s not collected again within %.0f s after the migrations",
                    ", ".join(sorted(hosts)), self.settle_timeout_s)
        return False


def _hold_balancing(plan: Plan, window: WindowState) -> tuple[Plan, str, list[Move]]:
    """Outside the balancing windows: the plan is recorded as a recommendation (manual) and
    only its mandatory moves run."""
    balancing = [m for m in plan.moves if m.kind == "balancing"]
    mandatory = [m for m in plan.moves if m.kind == "mandatory"]
    if not balancing:
        return plan, "automatic", mandatory
    opens = (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(window.next_change_s))
             if window.next_change_s is not None else "never")
    note = (f"outside the balancing windows (next opens {opens}): {len(balancing)} balancing "
            f"move(s) recorded as a recommendation, not carried out"
            + (f"; {len(mandatory)} mandatory move(s) go on" if mandatory else ""))
    return replace(plan, notes=(*plan.notes, note)), "manual", mandatory
