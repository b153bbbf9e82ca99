"""libvirt_drs.db.plans: the one plan writer, and the bounded wait for the collector (fake clock)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from libvirt_drs.balancer.model import Move, Plan
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import AuditEvent, Host, PlannedMoveRow, PlanRow
from libvirt_drs.db.plans import record_plan, wait_collected


def _engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'drs.sqlite'}")
    schema.upgrade(engine)
    return engine


def test_record_plan_stores_moves_and_audit(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    move = Move("vm1", "h1", "h2", "balancing", "balance", 0.3, 0.2, 4.0)
    plan_id = record_plan(engine, Plan((move,), 0.3, 0.2, float("inf")), mode="manual",
                          plan_ms=5.0, now_s=100.0, trigger="recommend", actor="cli")
    with Session(engine) as s:
        row = s.get(PlanRow, plan_id)
        assert row is not None and (row.trigger, row.mode, row.target) == ("recommend", "manual",
                                                                           -1.0)
        [pm] = s.scalars(select(PlannedMoveRow)).all()
        assert (pm.plan_id, pm.vm_name, pm.destination, pm.cost) == (plan_id, "vm1", "h2", 4.0)
        [event] = s.scalars(select(AuditEvent)).all()
        assert (event.actor, event.action, event.subject) == ("cli", "plan.manual",
                                                              f"plan {plan_id}")


def test_wait_collected_is_bounded_by_the_injected_clock(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with Session(engine) as s, s.begin():
        s.add_all([Host(name="h1", uri="x", last_seen_s=50.0, stale=False),
                   Host(name="h2", uri="x", last_seen_s=150.0, stale=False)])
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    assert not wait_collected(engine, {"h1", "h2"}, 100.0, 2.0, monotonic=lambda: now[0],
                              sleep=sleep)
    assert slept == [0.5] * 4  # no real time passed
    assert wait_collected(engine, {"h2"}, 100.0, 2.0, monotonic=lambda: now[0], sleep=sleep)
    assert not wait_collected(engine, {"h2", "h1"}, 100.0, 2.0, stopping=lambda: True)
