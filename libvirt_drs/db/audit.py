"""The audit log at the database edge: who did what to which host or VM, and why.

Every writer goes through `record` (the migrator's job store too); `events` is the one
reader (`drs audit`, the API, the console).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from libvirt_drs.db.models import AuditEvent


@dataclass(frozen=True)
class AuditRecord:
    id: int
    ts_s: float
    actor: str  # "cli:alice", "token:ci-bot", "drs-serve"
    action: str  # e.g. host.maintenance, migration.succeeded, plan.applied
    subject: str
    detail: str


def add(session: Session, ts_s: float, actor: str, action: str, subject: str,
        detail: str = "") -> None:
    """Add one event to an open session (it commits with the change it records)."""
    session.add(AuditEvent(ts_s=ts_s, actor=actor, action=action, subject=subject,
                           detail=detail))


def record(engine: Engine, ts_s: float, actor: str, action: str, subject: str,
           detail: str = "") -> None:
    with Session(engine) as session, session.begin():
        add(session, ts_s, actor, action, subject, detail)


def events(engine: Engine, limit: int = 100, *, actor: str | None = None,
           action_prefix: str | None = None, subject: str | None = None,
           before_id: int | None = None) -> list[AuditRecord]:
    """The newest `limit` events matching the filters, oldest first."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if action_prefix is not None:
        query = query.where(AuditEvent.action.startswith(action_prefix, autoescape=True))
    if subject is not None:
        query = query.where(AuditEvent.subject == subject)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    with Session(engine) as session:
        rows = session.scalars(query).all()
        return [AuditRecord(int(r.id), r.ts_s, r.actor, r.action, r.subject, r.detail or "")
                for r in reversed(rows)]
