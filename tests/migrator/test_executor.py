from __future__ import annotations

import pytest

from libvirt_drs.migrator.executor import Executor
from libvirt_drs.migrator.hypervisor import DomainRunState
from libvirt_drs.migrator.model import JobState, MigrationOptions, MoveRequest
from tests.migrator.fakes import Behaviour, FakeHypervisor, MemoryJobStore

FAST = MigrationOptions(poll_interval_s=0.01, timeout_s=5, stall_timeout_s=5)


def setup(options: MigrationOptions = FAST) -> tuple[FakeHypervisor, MemoryJobStore, Executor]:
    hv = FakeHypervisor(["h1", "h2"])
    hv.add_vm("h1", "a")
    store = MemoryJobStore()
    return hv, store, Executor(hv, store, options)


def admitted(store: MemoryJobStore, copy: bool = False):  # type: ignore[no-untyped-def]
    from libvirt_drs.migrator.admission import Limits  # noqa: PLC0415

    store.enqueue([MoveRequest("a", "h1", "h2", copy_storage=copy)], "me")
    job = store.admit(Limits(), "me", None).admitted
    assert job is not None
    return job


def test_success_records_progress_downtime_and_moves_vm() -> None:
    hv, store, ex = setup()
    hv.behaviour["a"] = Behaviour(duration_s=0.1, downtime_ms=37)
    job = admitted(store)
    seen = []
    outcome = ex.run(job, lambda j, p: seen.append(p.percent))
    assert outcome.state is JobState.SUCCEEDED, outcome.error
    assert hv.where("a") == ["h2"]
    row = store.get(job.id)
    assert row.state is JobState.SUCCEEDED and row.downtime_ms == 37 and row.total_ms
    assert seen and store.progress
    assert [e[1] for e in store.events] == ["migration.start", "migration.succeeded"]


def test_failed_check_skips_without_migrating() -> None:
    hv, store, ex = setup()
    store.maintenance.add("h2")
    job = admitted(store)
    outcome = ex.run(job)
    assert outcome.state is JobState.SKIPPED
    assert outcome.error and outcome.error.startswith("destination_in_maintenance:")
    assert hv.migrations == [] and hv.where("a") == ["h1"]


def test_libvirt_failure_keeps_vm_on_source_and_removes_leftover() -> None:
    hv, store, ex = setup()
    hv.behaviour["a"] = Behaviour(fail="Unable to read from monitor: Connection reset by peer")
    hv.add_vm("h2", "other")
    job = admitted(store)
    # a paused incoming copy the failed migration left on the destination
    original = hv.migrate

    def migrate_leaving_copy(*args, **kw):  # type: ignore[no-untyped-def]
        hv.add_vm("h2", "a", state=DomainRunState.PAUSED)
        original(*args, **kw)

    hv.migrate = migrate_leaving_copy  # type: ignore[method-assign]
    outcome = ex.run(job)
    assert outcome.state is JobState.FAILED
    assert outcome.error and "Connection reset by peer" in outcome.error
    assert "removed the leftover" in outcome.error
    assert hv.where("a") == ["h1"]


def test_stall_aborts() -> None:
    hv, store, ex = setup(MigrationOptions(poll_interval_s=0.01, timeout_s=30,
                                           stall_timeout_s=0.2))
    hv.behaviour["a"] = Behaviour(stall=True)
    outcome = ex.run(admitted(store))
    assert outcome.state is JobState.ABORTED
    assert outcome.error and outcome.error.startswith("stalled")
    assert hv.aborted == ["a"] and hv.where("a") == ["h1"]


def test_timeout_aborts_a_migration_that_never_converges() -> None:
    hv, store, ex = setup(MigrationOptions(poll_interval_s=0.01, timeout_s=0.3,
                                           stall_timeout_s=30))
    hv.behaviour["a"] = Behaviour(hang=True)
    outcome = ex.run(admitted(store))
    assert outcome.state is JobState.ABORTED
    assert outcome.error and outcome.error.startswith("timeout")
    assert hv.where("a") == ["h1"]


def test_postcopy_switch_after_n_iterations_and_no_abort_after() -> None:
    hv, store, ex = setup(MigrationOptions(poll_interval_s=0.01, postcopy_after_iterations=2,
                                           timeout_s=0.15, stall_timeout_s=30))
    hv.behaviour["a"] = Behaviour(duration_s=0.5)
    outcome = ex.run(admitted(store))
    assert hv.postcopy == ["a"]
    assert outcome.state is JobState.SUCCEEDED  # post-copy cannot be aborted: timeout ignored


def test_options_reach_libvirt_with_copy_storage_per_job() -> None:
    hv, store, ex = setup()
    ex.run(admitted(store, copy=True))
    assert hv.migrations[0][3].copy_storage is True
    assert hv.migrations[0][3].max_downtime_ms == 100


def test_finish_survives_a_job_store_outage() -> None:
    """A database restart while a migration ends: the outcome is written once it is back."""
    from libvirt_drs.migrator.executor import durably

    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("server closed the connection unexpectedly")

    durably("job 1: recording succeeded", flaky, budget_s=30)
    assert len(calls) == 3


def test_finish_gives_up_after_its_budget() -> None:
    from libvirt_drs.migrator.executor import durably

    def down() -> None:
        raise ConnectionError("connection refused")

    with pytest.raises(ConnectionError):
        durably("job 1", down, budget_s=0.0)


class Control:
    """A JobControl: refuses starts with `refuse`, aborts with `abort`."""

    def __init__(self, refuse: str | None = None, abort: str | None = None) -> None:
        self.refuse, self.abort = refuse, abort
        self.started: list[int] = []
        self.ended: list[int] = []

    def start(self, job):  # type: ignore[no-untyped-def]
        if self.refuse is None:
            self.started.append(job.id)
        return self.refuse

    def abort_reason(self, job):  # type: ignore[no-untyped-def]
        return self.abort

    def finished(self, job):  # type: ignore[no-untyped-def]
        self.ended.append(job.id)


def test_control_refusing_the_start_aborts_without_migrating() -> None:
    hv, store, _ = setup()
    control = Control(refuse="not started: shutting down")
    ex = Executor(hv, store, FAST, control=control)
    outcome = ex.run(admitted(store))
    assert outcome.state is JobState.ABORTED and outcome.error == "not started: shutting down"
    assert hv.migrations == [] and hv.where("a") == ["h1"]
    assert control.started == [] and control.ended == []


def test_control_abort_reason_aborts_a_running_migration() -> None:
    hv, store, _ = setup()
    hv.behaviour["a"] = Behaviour(hang=True)
    control = Control(abort="shutting down: grace period over")
    ex = Executor(hv, store, FAST, control=control)
    job = admitted(store)
    outcome = ex.run(job)
    assert outcome.state is JobState.ABORTED
    assert outcome.error and outcome.error.startswith("shutting down: grace period over")
    assert hv.aborted == ["a"] and hv.where("a") == ["h1"]
    assert control.started == [job.id] and control.ended == [job.id]
