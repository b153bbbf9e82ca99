"""Migration metrics come from the job rows: counted once, cluster-wide, from the start."""

from __future__ import annotations

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from libvirt_drs.db.models import Host, MigrationJob
from libvirt_drs.service.metrics import DrsMetrics
from libvirt_drs.service.observe import MigrationObserver


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def _job(session: Session, state: str, started: float | None, finished: float | None,
         **kw: object) -> MigrationJob:
    row = MigrationJob(vm_name=kw.pop("vm", "vm1"), source=kw.pop("source", "h1"),
                       destination=kw.pop("destination", "h2"), state=state, queued_s=0.0,
                       started_s=started, finished_s=finished, **kw)
    session.add(row)
    session.flush()
    return row


def test_counts_each_job_once_and_keeps_started_equal_finished_plus_running(
        db_engine: Engine) -> None:
    clock, m = Clock(), DrsMetrics()
    obs = MigrationObserver(db_engine, m, clock=clock)
    with Session(db_engine) as s, s.begin():
        s.add_all([Host(name="h1", uri="u"), Host(name="h2", uri="u"), Host(name="h3", uri="u")])
        _job(s, "succeeded", 10.0, 20.0, total_ms=900.0, downtime_ms=40.0)  # before we started
    obs.observe()
    get = m.registry.get_sample_value
    assert get("drs_migrations_started_total") == 0
    with Session(db_engine) as s, s.begin():
        running = _job(s, "running", 1001.0, None, vm="vm2", source="h1", destination="h3")
        _job(s, "succeeded", 1001.0, 1002.0, vm="vm3", total_ms=1500.0, downtime_ms=35.0)
        _job(s, "skipped", 1001.5, 1001.5, vm="vm4")
        running_id = running.id
    clock.t = 1003.0
    obs.observe()
    obs.observe()  # observing again counts nothing twice
    assert get("drs_migrations_started_total") == 3
    assert get("drs_migrations_finished_total", {"result": "succeeded"}) == 1
    assert get("drs_migrations_finished_total", {"result": "skipped"}) == 1
    assert get("drs_host_running_migrations", {"host": "h1", "direction": "outgoing"}) == 1
    assert get("drs_host_running_migrations", {"host": "h3", "direction": "incoming"}) == 1
    assert get("drs_host_running_migrations", {"host": "h2", "direction": "incoming"}) == 0
    assert get("drs_migration_duration_seconds_count") == 1
    assert get("drs_migration_downtime_seconds_sum") == 0.035
    with Session(db_engine) as s, s.begin():
        s.execute(update(MigrationJob).where(MigrationJob.id == running_id)
                  .values(state="aborted", finished_s=1004.0))
    clock.t = 1005.0
    obs.observe()
    assert get("drs_migrations_started_total") == 3  # = 3 finished + 0 running
    assert get("drs_migrations_finished_total", {"result": "aborted"}) == 1
    assert get("drs_host_running_migrations", {"host": "h1", "direction": "outgoing"}) == 0
