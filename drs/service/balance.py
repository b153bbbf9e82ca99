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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from balancer.arrays import build_cluster
from balancer.model import ClusterSnapshot, Move, Plan, Policy
from balancer.planner import plan as plan_moves
from balancer.scoring import host_loads, imbalance, target_imbalance
from drs.db.models import AuditEvent, Host
from drs.db.models import Plan as PlanRow
from drs.db.models import PlannedMove as PlannedMoveRow
from drs.service.metrics import DrsMetrics
from drs.service.migrations import ServiceMigrations, run_moves
from migrator.model import Job, JobState, MoveRequest, Outcome
from migrator.runner import Runner

log = logging.getLogger(__name__)

ACTOR = "drs-serve"


@dataclass(frozen=True)
class ClusterLoads:
    cpu: dict[str, float]
    memory: dict[str, float]
    vms: dict[str, int]
    stale: tuple[str, ...]
    imbalance_cpu: float
    imbalance_memory: float
    imbalance: float
    target: float
    eligible_hosts: int


def cluster_loads(snapshot: ClusterSnapshot, policy: Policy) -> ClusterLoads:
    """Per-host loads and the imbalance as the planner computes them (balancer.scoring)."""
    index = {h.name: i for i, h in enumerate(snapshot.hosts)}
    vms = tuple(v for v in snapshot.vms if v.host in index)
    vm_host = np.array([index[v.host] for v in vms], dtype=np.int64)
    cluster = build_cluster(snapshot, vms, policy, vm_host)
    cpu, mem = host_loads(cluster)
    eligible = cluster.host_eligible
    names = cluster.host_names
    counts = np.bincount(vm_host, minlength=len(names))
    n_eligible = int(eligible.sum())
    return ClusterLoads(
        cpu={n: float(cpu[i]) for i, n in enumerate(names)},
        memory={n: float(mem[i]) for i, n in enumerate(names)},
        vms={n: int(counts[i]) for i, n in enumerate(names)},
        stale=tuple(h.name for h in snapshot.hosts if h.stale),
        imbalance_cpu=float(np.std(cpu[eligible])) if n_eligible else 0.0,
        imbalance_memory=float(np.std(mem[eligible])) if n_eligible else 0.0,
        imbalance=imbalance(cluster, policy),
        target=target_imbalance(policy.aggressiveness, n_eligible),
        eligible_hosts=n_eligible)


def publish_loads(metrics: DrsMetrics, loads: ClusterLoads) -> None:
    metrics.set_host_gauges(loads.cpu, loads.memory, loads.vms, loads.stale)
    metrics.cluster_vms.set(sum(loads.vms.values()))
    metrics.cluster_hosts.set(loads.eligible_hosts)
    metrics.imbalance.labels("cpu").set(loads.imbalance_cpu)
    metrics.imbalance.labels("memory").set(loads.imbalance_memory)
    metrics.imbalance.labels("combined").set(loads.imbalance)
    if np.isfinite(loads.target):
        metrics.imbalance_target.set(loads.target)


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
    results: dict[str, str] = field(default_factory=dict)  # vm -> job state

    def carried_out(self) -> tuple[Move, ...]:
        """The planned moves whose migration succeeded."""
        if self.plan is None:
            return ()
        return tuple(m for m in self.plan.moves if self.results.get(m.vm) == "succeeded")


def record_plan(engine: Engine, plan: Plan, mode: str, plan_ms: float, now_s: float,
                trigger: str = "balance") -> int:
    """Store the plan and its moves (the recommendation) with an audit event; returns its id."""
    with Session(engine) as session, session.begin():
        row = PlanRow(created_s=now_s, trigger=trigger, mode=mode,
                      imbalance_before=plan.imbalance_before,
                      imbalance_after=plan.imbalance_after,
                      target=plan.target if np.isfinite(plan.target) else -1.0, plan_ms=plan_ms)
        session.add(row)
        session.flush()
        for seq, m in enumerate(plan.moves):
            session.add(PlannedMoveRow(plan_id=row.id, seq=seq, vm_name=m.vm, source=m.source,
                                       destination=m.destination, kind=m.kind, reason=m.reason,
                                       imbalance_before=m.imbalance_before,
                                       imbalance_after=m.imbalance_after, cost=m.cost_s))
        session.add(AuditEvent(
            ts_s=now_s, actor=ACTOR, action=f"plan.{mode}", subject=f"plan {row.id}",
            detail=f"{len(plan.moves)} move(s); imbalance {plan.imbalance_before:.4f} -> "
                   f"{plan.imbalance_after:.4f} (target {plan.target:.4f})"))
        return int(row.id)


ROUNDS_KEPT = 64


class BalanceJob:
    """Callable for the scheduler; `rounds` keeps what the last ROUNDS_KEPT runs did."""

    def __init__(self, engine: Engine, load_snapshot: Callable[[], ClusterSnapshot],
                 policy: Policy, mode: str, metrics: DrsMetrics,
                 migrations: ServiceMigrations, runner: Runner | None,
                 is_leader: Callable[[], bool] = lambda: True,
                 settle_timeout_s: float = 60.0, clock: Callable[[], float] = time.time,
                 on_round: Callable[[Round], None] | None = None,
                 copy_storage: Callable[[str, str], bool] = lambda _s, _d: False) -> None:
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
        self.on_round = on_round
        self.copy_storage = copy_storage
        self.rounds: deque[Round] = deque(maxlen=ROUNDS_KEPT)

    def __call__(self) -> Round | None:
        if self.migrations.stopping:
            return None
        started = self.clock()
        snapshot = self.load_snapshot()
        loads = cluster_loads(snapshot, self.policy)
        publish_loads(self.metrics, loads)
        t0 = time.perf_counter()
        plan = plan_moves(snapshot, self.policy)
        plan_s = time.perf_counter() - t0
        self.metrics.planner_duration.observe(plan_s)
        self.metrics.planner_runs.labels(self.mode).inc()
        for move in plan.moves:
            self.metrics.planner_moves.labels(move.kind).inc()
        plan_id = record_plan(self.engine, plan, self.mode, plan_s * 1000.0, started)
        log.info("plan %d (%s): imbalance %.4f -> %.4f, target %.4f, %d move(s)%s", plan_id,
                 self.mode, plan.imbalance_before, plan.imbalance_after, plan.target,
                 len(plan.moves), "".join(f"; {m.vm} {m.source}->{m.destination}"
                                          for m in plan.moves))
        results: dict[str, str] = {}
        if self.mode == "automatic" and plan.moves and self.runner is not None:
            if not self.is_leader():  # lost leadership while planning: someone else acts
                log.warning("plan %d not executed: leadership lost", plan_id)
            else:
                results = self._execute(plan, plan_id)
        outcomes: dict[str, int] = {}
        for state in results.values():
            outcomes[state] = outcomes.get(state, 0) + 1
        rnd = Round(plan_id, started, plan.imbalance_before, plan.imbalance_after, plan.target,
                    len(plan.moves), outcomes, loads, snapshot, plan, results)
        self.rounds.append(rnd)
        if self.on_round is not None:
            self.on_round(rnd)
        return rnd

    def _execute(self, plan: Plan, plan_id: int) -> dict[str, str]:
        """Run the plan's moves; returns each moved VM's job state."""
        assert self.runner is not None
        requests = [MoveRequest(vm_name=m.vm, source=m.source, destination=m.destination,
                                copy_storage=self.copy_storage(m.source, m.destination),
                                plan_id=plan_id) for m in plan.moves]
        outcomes = run_moves(self.runner, self.migrations, requests, on_finish=self._finished)
        results = {vm: str(o.state) for vm, o in outcomes.items()}
        if str(JobState.SUCCEEDED) in results.values():
            hosts = {m.source for m in plan.moves} | {m.destination for m in plan.moves}
            self._wait_collected(hosts, self.clock())
        return results

    def _finished(self, job: Job, outcome: Outcome) -> None:
        log.info("migration %s %s -> %s: %s%s", job.vm_name, job.source, job.destination,
                 outcome.state, f" ({outcome.error})" if outcome.error else "")

    def _wait_collected(self, hosts: set[str], after_s: float) -> bool:
        """Wait until every host in `hosts` was collected after `after_s` (bounded)."""
        deadline = time.monotonic() + self.settle_timeout_s
        while time.monotonic() < deadline and not self.migrations.stopping:
            with self.engine.connect() as conn:
                seen = conn.execute(select(func.count()).select_from(Host).where(
                    Host.name.in_(hosts), Host.last_seen_s > after_s)).scalar_one()
            if seen >= len(hosts):
                return True
            time.sleep(0.5)
        log.warning("hosts %s not collected again within %.0f s after the migrations",
                    ", ".join(sorted(hosts)), self.settle_timeout_s)
        return False
