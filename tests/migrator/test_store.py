"""The SQLAlchemy JobStore on SQLite and PostgreSQL: admission is atomic across connections."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from libvirt_drs.db.jobs import SqlJobStore
from libvirt_drs.db.models import AuditEvent
from libvirt_drs.migrator.admission import Blocker, Limits
from libvirt_drs.migrator.model import CompletedStats, JobState, MoveRequest, Progress


def test_lifecycle(db_engine: Engine) -> None:
    store = SqlJobStore(db_engine)
    [job] = store.enqueue([MoveRequest("a", "h1", "h2", copy_storage=True)], "me:1")
    assert job.state is JobState.QUEUED and job.copy_storage
    decision = store.admit(Limits(), "me:2", None)
    assert decision.admitted is not None and decision.admitted.state is JobState.RUNNING
    assert decision.admitted.owner == "me:2" and decision.admitted.started_s
    store.record_progress(job.id, Progress(10, 90, 100, 5.0, 2, 1.0))
    assert store.get(job.id).bytes_remaining == 90
    done = store.finish(job.id, JobState.SUCCEEDED, None, CompletedStats(800.0, 40.0, 123))
    assert (done.state, done.downtime_ms, done.total_ms, done.bytes_processed) == (
        JobState.SUCCEEDED, 40.0, 800.0, 123)
    assert [j.id for j in store.jobs([JobState.SUCCEEDED])] == [job.id]
    store.audit("test", "migration.succeeded", "a", "ok")
    with Session(db_engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_limits_and_blockers(db_engine: Engine) -> None:
    store = SqlJobStore(db_engine)
    store.enqueue([MoveRequest("a", "h1", "h2"), MoveRequest("b", "h1", "h3")], "me:1")
    limits = Limits(max_outgoing_per_host=1)
    assert store.admit(limits, "me:1", None).admitted is not None
    d = store.admit(limits, "me:1", None)
    assert d.admitted is None and d.blocked == ((2, Blocker.OUTGOING_LIMIT),)


def test_maintenance_state(db_engine: Engine) -> None:
    store = SqlJobStore(db_engine)
    assert not store.in_maintenance("h1")
    store.set_host_state("h1", "maintenance", "test")
    assert store.in_maintenance("h1")
    store.set_host_state("h1", "active", None)
    assert not store.in_maintenance("h1")


def test_concurrent_admission_never_exceeds_limits(db_engine: Engine) -> None:
    """Eight threads (each its own connection) race to admit 24 jobs under 1/1 limits."""
    store = SqlJobStore(db_engine)
    hosts = ["h1", "h2", "h3"]
    store.enqueue([MoveRequest(f"vm{i}", hosts[i % 3], hosts[(i + 1) % 3]) for i in range(24)],
                  "me:1")
    limits = Limits(max_outgoing_per_host=1, max_incoming_per_host=1)
    lock = threading.Lock()
    active: list[tuple[str, str]] = []
    worst = {"out": 0, "in": 0}
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while store.jobs([JobState.QUEUED]):
                job = store.admit(limits, "me:1", None).admitted
                if job is None:
                    time.sleep(0.005)
                    continue
                with lock:
                    active.append((job.source, job.destination))
                    worst["out"] = max(worst["out"], max(
                        sum(1 for s, _ in active if s == h) for h in hosts))
                    worst["in"] = max(worst["in"], max(
                        sum(1 for _, d in active if d == h) for h in hosts))
                time.sleep(0.01)
                with lock:
                    active.remove((job.source, job.destination))
                store.finish(job.id, JobState.SUCCEEDED, None, CompletedStats())
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert worst == {"out": 1, "in": 1}
    assert all(j.state is JobState.SUCCEEDED for j in store.jobs())
    assert_no_overlap_beyond(store, limits)


def assert_no_overlap_beyond(store: SqlJobStore, limits: Limits) -> None:
    """From the job rows alone: at no instant more running jobs than the limits allow."""
    jobs = [j for j in store.jobs() if j.started_s is not None and j.finished_s is not None]
    for j in jobs:
        t = j.started_s
        assert t is not None
        now = [k for k in jobs if k.started_s <= t < k.finished_s]  # type: ignore[operator]
        assert sum(1 for k in now if k.source == j.source) <= limits.outgoing(j.source)
        assert sum(1 for k in now if k.destination == j.destination) <= limits.incoming(
            j.destination)
        assert len(now) <= limits.max_cluster
