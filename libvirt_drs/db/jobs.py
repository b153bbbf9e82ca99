"""SQLAlchemy implementation of migrator.admission.JobStore.

Admission runs in one exclusive transaction: a transaction-scoped advisory lock on
PostgreSQL, BEGIN IMMEDIATE on SQLite. Every process sharing the database (the daemon,
a manual `drs migrate`) therefore sees and respects the same running jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from libvirt_drs.db import audit
from libvirt_drs.db.models import HostStateRow, MigrationJob
from libvirt_drs.migrator.admission import Decision, Limits, choose
from libvirt_drs.migrator.model import CompletedStats, Job, JobState, MoveRequest, Progress

ADMISSION_LOCK_KEY = 0x6D696772  # "migr": the advisory lock serialising admission


def to_job(row: MigrationJob) -> Job:
    return Job(
        id=row.id, vm_name=row.vm_name, source=row.source, destination=row.destination,
        state=JobState(row.state), copy_storage=bool(row.copy_storage), owner=row.owner,
        vm_uuid=row.vm_uuid, plan_id=row.plan_id, queued_s=row.queued_s,
        started_s=row.started_s, finished_s=row.finished_s, updated_s=row.updated_s,
        error=row.error, bytes_processed=row.bytes_processed,
        bytes_remaining=row.bytes_remaining, bytes_total=row.bytes_total,
        dirty_rate_bps=row.dirty_rate_bps, iteration=row.iteration,
        downtime_ms=row.downtime_ms, total_ms=row.total_ms,
    )


class SqlJobStore:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _exclusive(self) -> Iterator[Session]:
        """A transaction no other admission can interleave with, on either backend."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": ADMISSION_LOCK_KEY})
            with Session(bind=conn, expire_on_commit=False) as session:
                try:
                    yield session
                    session.flush()
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise

    def enqueue(self, moves: Sequence[MoveRequest], owner: str) -> list[Job]:
        now = self.clock()
        with self._exclusive() as session:
            rows = [MigrationJob(vm_name=m.vm_name, vm_uuid=m.vm_uuid, source=m.source,
                                 destination=m.destination, state=JobState.QUEUED.value,
                                 copy_storage=m.copy_storage, owner=owner, queued_s=now,
                                 updated_s=now, plan_id=m.plan_id) for m in moves]
            session.add_all(rows)
            session.flush()
            return [to_job(r) for r in rows]

    def admit(self, limits: Limits, owner: str, candidates: Collection[int] | None) -> Decision:
        with self._exclusive() as session:
            running = session.scalars(select(MigrationJob).where(
                MigrationJob.state == JobState.RUNNING.value)).all()
            queued = session.scalars(select(MigrationJob).where(
                MigrationJob.state == JobState.QUEUED.value).order_by(MigrationJob.id)).all()
            decision = choose([to_job(r) for r in queued], [to_job(r) for r in running],
                              limits, candidates)
            if decision.admitted is None:
                return decision
            row = session.get_one(MigrationJob, decision.admitted.id)
            now = self.clock()
            row.state, row.owner, row.started_s, row.updated_s = (
                JobState.RUNNING.value, owner, now, now)
            session.flush()
            return Decision(to_job(row), decision.blocked)

    def get(self, job_id: int) -> Job:
        with self._session() as session:
            return to_job(session.get_one(MigrationJob, job_id))

    def find(self, job_id: int) -> Job | None:
        with self._session() as session:
            row = session.get(MigrationJob, job_id)
            return None if row is None else to_job(row)

    def jobs(self, states: Collection[JobState] | None = None,
             limit: int | None = None) -> list[Job]:
        query = select(MigrationJob).order_by(MigrationJob.id.desc())
        if states is not None:
            query = query.where(MigrationJob.state.in_([s.value for s in states]))
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [to_job(r) for r in reversed(session.scalars(query).all())]

    def record_progress(self, job_id: int, progress: Progress) -> None:
        with self._session() as session:
            row = session.get_one(MigrationJob, job_id)
            row.bytes_processed = progress.bytes_processed
            row.bytes_remaining = progress.bytes_remaining
            row.bytes_total = progress.bytes_total
            row.dirty_rate_bps = progress.dirty_rate_bps
            row.iteration = progress.iteration
            row.updated_s = self.clock()

    def adopt(self, job_id: int, owner: str) -> None:
        with self._session() as session:
            row = session.get_one(MigrationJob, job_id)
            row.owner, row.updated_s = owner, self.clock()

    def finish(self, job_id: int, state: JobState, error: str | None,
               stats: CompletedStats) -> Job:
        with self._exclusive() as session:
            row = session.get_one(MigrationJob, job_id)
            now = self.clock()
            row.state, row.error, row.finished_s, row.updated_s = state.value, error, now, now
            if row.started_s is None:
                row.started_s = now
            if stats.downtime_ms is not None:
                row.downtime_ms = stats.downtime_ms
            if stats.bytes_transferred is not None:
                row.bytes_processed = stats.bytes_transferred
            if stats.total_ms is not None:
                row.total_ms = stats.total_ms
            elif state is not JobState.SKIPPED:
                row.total_ms = (now - row.started_s) * 1000.0
            if state is JobState.SUCCEEDED:
                row.bytes_remaining = 0
            session.flush()
            return to_job(row)

    def in_maintenance(self, host: str) -> bool:
        with self._session() as session:
            row = session.get(HostStateRow, host)
            return row is not None and row.state == "maintenance"

    def set_host_state(self, host: str, state: str, reason: str | None) -> None:
        with self._session() as session:
            row = session.get(HostStateRow, host)
            if row is None:
                row = HostStateRow(host_name=host)
                session.add(row)
            row.state, row.reason, row.changed_s = state, reason, self.clock()

    def audit(self, actor: str, action: str, subject: str, detail: str = "") -> None:
        with self._session() as session:
            audit.add(session, self.clock(), actor, action, subject, detail)
