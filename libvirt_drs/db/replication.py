"""Replication state at the database edge: recovery points and per-VM attempts."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from libvirt_drs.db.models import ReplicaPoint, ReplicaState


@dataclass(frozen=True)
class Point:
    vm: str
    seq: int
    policy: str
    kind: str  # full | incremental
    source_host: str
    recovery_host: str
    checkpoint: str
    taken_s: float
    completed_s: float
    volumes: dict[str, str]  # disk target -> recovery-point file on recovery_host
    bytes_sent: int
    domain_xml: str


@dataclass(frozen=True)
class Attempts:
    vm: str
    last_attempt_s: float
    failures: int
    last_error: str
    last_error_s: float | None


def _point(r: ReplicaPoint) -> Point:
    return Point(r.vm_name, r.seq, r.policy, r.kind, r.source_host, r.recovery_host,
                 r.checkpoint, r.taken_s, r.completed_s, json.loads(r.volumes), int(r.bytes_sent),
                 r.domain_xml)


def add_point(engine: Engine, p: Point) -> None:
    with Session(engine) as session, session.begin():
        session.add(ReplicaPoint(
            vm_name=p.vm, seq=p.seq, policy=p.policy, kind=p.kind, source_host=p.source_host,
            recovery_host=p.recovery_host, checkpoint=p.checkpoint, taken_s=p.taken_s,
            completed_s=p.completed_s, volumes=json.dumps(p.volumes, sort_keys=True),
            bytes_sent=p.bytes_sent, domain_xml=p.domain_xml))
        state = session.get(ReplicaState, p.vm)
        if state is None:
            session.add(ReplicaState(vm_name=p.vm, last_attempt_s=p.completed_s, failures=0,
                                     last_error=""))
        else:
            state.last_attempt_s = p.completed_s
            state.last_error = ""


def record_failure(engine: Engine, vm: str, error: str, now_s: float) -> None:
    with Session(engine) as session, session.begin():
        state = session.get(ReplicaState, vm)
        if state is None:
            session.add(ReplicaState(vm_name=vm, last_attempt_s=now_s, failures=1,
                                     last_error=error, last_error_s=now_s))
            return
        state.last_attempt_s = now_s
        state.failures += 1
        state.last_error = error
        state.last_error_s = now_s


def chain(engine: Engine, vm: str) -> list[Point]:
    """The VM's recovery points from the last full one on, oldest first: the chain whose
    last entry is its recovery point (empty: it has none)."""
    with Session(engine) as session:
        rows = [_point(r) for r in session.scalars(
            select(ReplicaPoint).where(ReplicaPoint.vm_name == vm).order_by(ReplicaPoint.seq))]
    fulls = [i for i, p in enumerate(rows) if p.kind == "full"]
    return rows[fulls[-1]:] if fulls else []


def newest(engine: Engine, vm: str, on_hosts: Collection[str] | None = None) -> Point | None:
    """The VM's newest point (held on one of `on_hosts`: one site), if it has one."""
    query = select(ReplicaPoint).where(ReplicaPoint.vm_name == vm)
    if on_hosts is not None:
        query = query.where(ReplicaPoint.recovery_host.in_(list(on_hosts)))
    with Session(engine) as session:
        row = session.scalars(query.order_by(ReplicaPoint.seq.desc()).limit(1)).first()
    return _point(row) if row is not None else None


def chain_lengths(engine: Engine) -> dict[str, int]:
    """Per VM, the points from its last full one on: the files its recovery point reads."""
    with Session(engine) as session:
        last_full = (select(ReplicaPoint.vm_name, func.max(ReplicaPoint.seq).label("seq"))
                     .where(ReplicaPoint.kind == "full").group_by(ReplicaPoint.vm_name)
                     .subquery())
        rows = session.execute(
            select(ReplicaPoint.vm_name, func.count())
            .join(last_full, (ReplicaPoint.vm_name == last_full.c.vm_name)
                  & (ReplicaPoint.seq >= last_full.c.seq))
            .group_by(ReplicaPoint.vm_name))
        return {vm: int(n) for vm, n in rows}


def latest(engine: Engine, on_hosts: Collection[str] | None = None) -> dict[str, Point]:
    """Every VM's newest point (of those held on `on_hosts`: the recovery point a failover
    to that site would use)."""
    query = select(ReplicaPoint.vm_name, func.max(ReplicaPoint.seq).label("seq"))
    if on_hosts is not None:
        query = query.where(ReplicaPoint.recovery_host.in_(list(on_hosts)))
    with Session(engine) as session:
        newest = query.group_by(ReplicaPoint.vm_name).subquery()
        rows = session.scalars(select(ReplicaPoint).join(
            newest, (ReplicaPoint.vm_name == newest.c.vm_name) & (ReplicaPoint.seq == newest.c.seq)))
        return {r.vm_name: _point(r) for r in rows}


def next_seq(engine: Engine, vm: str) -> int:
    with Session(engine) as session:
        top = session.scalar(select(func.max(ReplicaPoint.seq)).where(ReplicaPoint.vm_name == vm))
    return int(top or 0) + 1


def bytes_sent(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {vm: int(total) for vm, total in session.execute(
            select(ReplicaPoint.vm_name, func.sum(ReplicaPoint.bytes_sent))
            .group_by(ReplicaPoint.vm_name))}


def attempts(engine: Engine) -> dict[str, Attempts]:
    with Session(engine) as session:
        return {r.vm_name: Attempts(r.vm_name, r.last_attempt_s, r.failures, r.last_error or "",
                                    r.last_error_s)
                for r in session.scalars(select(ReplicaState))}
