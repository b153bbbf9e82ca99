"""The store of plans: record a planner run (the recommendation), read recorded plans
with their moves and the jobs that carried them out, mark a plan applied, and wait until
the collector has seen the hosts a plan touched again.

Every writer of a plan (the service's balance job, `drs rebalance`, `drs maintenance
enter`, `drs evacuate`) goes through `record_plan`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from libvirt_drs.balancer.model import Move, Plan
from libvirt_drs.db import audit
from libvirt_drs.db.models import Host, MigrationJob, PlannedMoveRow, PlanRow
from libvirt_drs.migrator.model import JobState


@dataclass(frozen=True)
class PlannedMove:
    """One recorded move and the latest migration job that carried it out, if any."""

    move: Move
    job_id: int | None = None
    job_state: JobState | None = None
    job_error: str | None = None


@dataclass(frozen=True)
class PlanRecord:
    id: int
    created_s: float
    trigger: str  # balance | maintenance | evacuate | rebalance
    mode: str  # automatic | manual
    imbalance_before: float
    imbalance_after: float
    target: float | None  # None: aggressiveness 1 (never balances)
    plan_ms: float
    notes: tuple[str, ...]
    applied_s: float | None
    applied_by: str | None
    moves: tuple[PlannedMove, ...] = ()


def record_plan(engine: Engine, plan: Plan, *, mode: str, plan_ms: float, now_s: float,
                trigger: str, actor: str) -> int:
    """Store the plan and its moves (the recommendation) with an audit event; returns its id."""
    with Session(engine) as session, session.begin():
        row = PlanRow(created_s=now_s, trigger=trigger, mode=mode,
                      imbalance_before=plan.imbalance_before,
                      imbalance_after=plan.imbalance_after,
                      target=plan.target if math.isfinite(plan.target) else -1.0,
                      plan_ms=plan_ms, notes="\n".join(plan.notes),
                      applied_s=now_s if mode == "automatic" else None,
                      applied_by=actor if mode == "automatic" else None)
        session.add(row)
        session.flush()
        for seq, m in enumerate(plan.moves):
            session.add(PlannedMoveRow(plan_id=row.id, seq=seq, vm_name=m.vm, source=m.source,
                                       destination=m.destination, kind=m.kind, reason=m.reason,
                                       imbalance_before=m.imbalance_before,
                                       imbalance_after=m.imbalance_after, cost=m.cost_s))
        audit.add(session, now_s, actor, f"plan.{mode}", f"plan {row.id}",
                  f"{trigger}: {len(plan.moves)} move(s); imbalance "
                  f"{plan.imbalance_before:.4f} -> {plan.imbalance_after:.4f} "
                  f"(target {plan.target:.4f})")
        return int(row.id)


def _record(row: PlanRow, moves: tuple[PlannedMove, ...] = ()) -> PlanRecord:
    return PlanRecord(int(row.id), row.created_s, row.trigger, row.mode, row.imbalance_before,
                      row.imbalance_after, None if row.target < 0 else row.target, row.plan_ms,
                      tuple(n for n in (row.notes or "").split("\n") if n), row.applied_s,
                      row.applied_by, moves)


def plans(engine: Engine, limit: int = 20, *, with_moves: bool = True,
          mode: str | None = None) -> list[PlanRecord]:
    """The newest `limit` recorded plans (newest first), with their moves if asked."""
    query = select(PlanRow).order_by(PlanRow.id.desc()).limit(limit)
    if mode is not None:
        query = query.where(PlanRow.mode == mode)
    with Session(engine) as session:
        rows = session.scalars(query).all()
        if not with_moves:
            return [_record(r) for r in rows]
        return [_record(r, _moves(session, [int(r.id)]).get(int(r.id), ())) for r in rows]


def plan(engine: Engine, plan_id: int) -> PlanRecord | None:
    with Session(engine) as session:
        row = session.get(PlanRow, plan_id)
        if row is None:
            return None
        return _record(row, _moves(session, [plan_id]).get(plan_id, ()))


def _moves(session: Session, plan_ids: list[int]) -> dict[int, tuple[PlannedMove, ...]]:
    jobs: dict[tuple[int, str], MigrationJob] = {}
    for job in session.scalars(select(MigrationJob).where(MigrationJob.plan_id.in_(plan_ids))
                               .order_by(MigrationJob.id)):
        jobs[(int(job.plan_id or 0), job.vm_name)] = job  # the latest job per VM wins
    out: dict[int, list[PlannedMove]] = {}
    for r in session.scalars(select(PlannedMoveRow).where(PlannedMoveRow.plan_id.in_(plan_ids))
                             .order_by(PlannedMoveRow.plan_id, PlannedMoveRow.seq)):
        move = Move(r.vm_name, r.source, r.destination, r.kind,  # type: ignore[arg-type]
                    r.reason, r.imbalance_before, r.imbalance_after, r.cost)
        found = jobs.get((int(r.plan_id), r.vm_name))
        out.setdefault(int(r.plan_id), []).append(
            PlannedMove(move, int(found.id), JobState(found.state), found.error)
            if found is not None else PlannedMove(move))
    return {k: tuple(v) for k, v in out.items()}


def mark_applied(engine: Engine, plan_id: int, actor: str, now_s: float) -> bool:
    """Mark a recorded plan applied; False if it was already (someone else was first)."""
    with Session(engine) as session, session.begin():
        done = session.execute(update(PlanRow).where(PlanRow.id == plan_id,
                                                     PlanRow.applied_s.is_(None))
                               .values(applied_s=now_s, applied_by=actor))
        return bool(done.rowcount)  # type: ignore[attr-defined]


def hosts_collected_since(engine: Engine, hosts: Collection[str], after_s: float) -> int:
    """How many of `hosts` the collector polled successfully after `after_s`."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Host).where(
            Host.name.in_(hosts), Host.last_seen_s > after_s)).scalar_one())


def wait_collected(engine: Engine, hosts: Collection[str], after_s: float, timeout_s: float,
                   stopping: Callable[[], bool] = lambda: False,
                   monotonic: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep,
                   poll_s: float = 0.5) -> bool:
    """Wait (at most `timeout_s`, less if `stopping()`) until every host in `hosts` was
    collected after `after_s`; False when it did not happen in time."""
    deadline = monotonic() + timeout_s
    while monotonic() < deadline and not stopping():
        if hosts_collected_since(engine, hosts, after_s) >= len(hosts):
            return True
        sleep(poll_s)
    return False
