"""The store of plans: record a planner run (the recommendation) and wait until the
collector has seen the hosts a plan touched again.

Every writer of a plan (the service's balance job, `drs rebalance`, `drs maintenance
enter`, `drs evacuate`) goes through `record_plan`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from libvirt_drs.balancer.model import Plan
from libvirt_drs.db.models import AuditEvent, Host, PlannedMoveRow, PlanRow


def record_plan(engine: Engine, plan: Plan, *, mode: str, plan_ms: float, now_s: float,
                trigger: str, actor: str) -> int:
    """Store the plan and its moves (the recommendation) with an audit event; returns its id."""
    with Session(engine) as session, session.begin():
        row = PlanRow(created_s=now_s, trigger=trigger, mode=mode,
                      imbalance_before=plan.imbalance_before,
                      imbalance_after=plan.imbalance_after,
                      target=plan.target if math.isfinite(plan.target) else -1.0,
                      plan_ms=plan_ms)
        session.add(row)
        session.flush()
        for seq, m in enumerate(plan.moves):
            session.add(PlannedMoveRow(plan_id=row.id, seq=seq, vm_name=m.vm, source=m.source,
                                       destination=m.destination, kind=m.kind, reason=m.reason,
                                       imbalance_before=m.imbalance_before,
                                       imbalance_after=m.imbalance_after, cost=m.cost_s))
        session.add(AuditEvent(
            ts_s=now_s, actor=actor, action=f"plan.{mode}", subject=f"plan {row.id}",
            detail=f"{len(plan.moves)} move(s); imbalance {plan.imbalance_before:.4f} -> "
                   f"{plan.imbalance_after:.4f} (target {plan.target:.4f})"))
        return int(row.id)


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
