"""HA state at the database edge: hosts that failed, VMs to restart, saved definitions."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from libvirt_drs.db import audit
from libvirt_drs.db.models import HaHost, HaRestart, VmDefinition

HOST_STATES = ("suspected", "fenced", "fence_failed")
RESTART_STATES = ("waiting", "running", "failed")


@dataclass(frozen=True)
class HaHostRecord:
    host: str
    state: str  # suspected | fenced | fence_failed
    since_s: float
    detail: str
    fence_attempts: int


@dataclass(frozen=True)
class RestartRecord:
    id: int
    vm: str
    failed_host: str
    destination: str | None
    priority: str
    state: str  # waiting | running | failed
    detail: str
    created_s: float
    updated_s: float
    running_s: float | None


def _host(r: HaHost) -> HaHostRecord:
    return HaHostRecord(r.host_name, r.state, r.since_s, r.detail or "", r.fence_attempts)


def _restart(r: HaRestart) -> RestartRecord:
    return RestartRecord(int(r.id), r.vm_name, r.failed_host, r.destination, r.priority, r.state,
                         r.detail or "", r.created_s, r.updated_s, r.running_s)


def hosts(engine: Engine) -> dict[str, HaHostRecord]:
    with Session(engine) as session:
        return {r.host_name: _host(r) for r in session.scalars(select(HaHost))}


def set_host(engine: Engine, host: str, state: str, detail: str, now_s: float, actor: str,
             fence_attempt: bool = False) -> None:
    """Record the host's HA state (an audit event when it changes)."""
    assert state in HOST_STATES, state
    with Session(engine) as session, session.begin():
        row = session.get(HaHost, host)
        changed = row is None or row.state != state
        if row is None:
            row = HaHost(host_name=host, state=state, since_s=now_s, detail=detail,
                         fence_attempts=0)
            session.add(row)
        if changed:
            row.state, row.since_s = state, now_s
        row.detail = detail
        if fence_attempt:
            row.fence_attempts = (row.fence_attempts or 0) + 1
        if changed:
            audit.add(session, now_s, actor, f"ha.{state}", host, detail)


def clear_host(engine: Engine, host: str, now_s: float, actor: str, detail: str) -> bool:
    with Session(engine) as session, session.begin():
        gone = session.execute(delete(HaHost).where(HaHost.host_name == host)).rowcount  # type: ignore[attr-defined]
        if gone:
            audit.add(session, now_s, actor, "ha.cleared", host, detail)
        return bool(gone)


def restarts(engine: Engine, states: Collection[str] | None = None,
             limit: int | None = None) -> list[RestartRecord]:
    query = select(HaRestart).order_by(HaRestart.id.desc())
    if states is not None:
        query = query.where(HaRestart.state.in_(list(states)))
    if limit is not None:
        query = query.limit(limit)
    with Session(engine) as session:
        return [_restart(r) for r in reversed(session.scalars(query).all())]


def add_restarts(engine: Engine, failed_host: str, vms: list[tuple[str, str]],
                 now_s: float) -> None:
    """A waiting restart per (vm, priority) not already waiting."""
    with Session(engine) as session, session.begin():
        pending = set(session.scalars(select(HaRestart.vm_name).where(
            HaRestart.state == "waiting")))
        for vm, priority in vms:
            if vm not in pending:
                session.add(HaRestart(vm_name=vm, failed_host=failed_host, priority=priority,
                                      state="waiting", detail="waiting for a host",
                                      created_s=now_s, updated_s=now_s))


def update_restart(engine: Engine, restart_id: int, state: str, detail: str, now_s: float,
                   actor: str, destination: str | None = None) -> None:
    assert state in RESTART_STATES, state
    with Session(engine) as session, session.begin():
        row = session.get_one(HaRestart, restart_id)
        changed = row.state != state
        row.state, row.detail, row.updated_s = state, detail, now_s
        if destination is not None:
            row.destination = destination
        if state == "running" and row.running_s is None:
            row.running_s = now_s
        if changed:
            audit.add(session, now_s, actor, f"ha.restart_{state}", row.vm_name, detail)


def save_definition(engine: Engine, vm: str, host: str, xml: str, now_s: float) -> bool:
    """Keep the VM's latest definition; False when it is unchanged."""
    digest = hashlib.sha256(xml.encode()).hexdigest()
    with Session(engine) as session, session.begin():
        row = session.get(VmDefinition, vm)
        if row is not None and row.xml_sha256 == digest and row.host_name == host:
            return False
        if row is None:
            session.add(VmDefinition(vm_name=vm, host_name=host, xml=xml, xml_sha256=digest,
                                     updated_s=now_s))
        else:
            row.host_name, row.xml, row.xml_sha256, row.updated_s = host, xml, digest, now_s
        return True


def definitions(engine: Engine) -> dict[str, tuple[str, str, float]]:
    """vm -> (host it was read from, XML, when)."""
    with Session(engine) as session:
        return {r.vm_name: (r.host_name, r.xml, r.updated_s)
                for r in session.scalars(select(VmDefinition))}
