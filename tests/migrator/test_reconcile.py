from __future__ import annotations

import os
import socket
import threading

from libvirt_drs.migrator.admission import Limits
from libvirt_drs.migrator.executor import Executor
from libvirt_drs.migrator.hypervisor import DomainRunState
from libvirt_drs.migrator.model import JobState, MigrationOptions, MoveRequest
from libvirt_drs.migrator.reconcile import Reconciler, owner_alive
from tests.migrator.fakes import Behaviour, FakeHypervisor, MemoryJobStore

DEAD = "elsewhere:1"


def running_job(store: MemoryJobStore, vm: str = "a"):  # type: ignore[no-untyped-def]
    store.enqueue([MoveRequest(vm, "h1", "h2")], DEAD)
    job = store.admit(Limits(), DEAD, None).admitted
    assert job is not None
    return job


def reconciler(hv: FakeHypervisor, store: MemoryJobStore) -> Reconciler:
    ex = Executor(hv, store, MigrationOptions(poll_interval_s=0.01))
    return Reconciler(store, hv, ex, "me", is_alive=lambda owner, updated, now: False)


def test_finished_migration_becomes_succeeded() -> None:
    hv, store = FakeHypervisor(["h1", "h2"]), MemoryJobStore()
    hv.add_vm("h2", "a")  # the migration completed while nobody watched
    job = running_job(store)
    [r] = reconciler(hv, store).run()
    assert r.state is JobState.SUCCEEDED and store.get(job.id).state is JobState.SUCCEEDED


def test_interrupted_migration_fails_and_leftover_is_removed() -> None:
    hv, store = FakeHypervisor(["h1", "h2"]), MemoryJobStore()
    hv.add_vm("h1", "a")
    hv.add_vm("h2", "a", state=DomainRunState.PAUSED)
    job = running_job(store)
    [r] = reconciler(hv, store).run()
    assert r.state is JobState.FAILED and "removed the leftover" in r.detail
    assert hv.where("a") == ["h1"] and store.get(job.id).error


def test_still_running_migration_is_monitored_to_its_end() -> None:
    hv, store = FakeHypervisor(["h1", "h2"]), MemoryJobStore()
    hv.add_vm("h1", "a")
    hv.behaviour["a"] = Behaviour(duration_s=0.3)
    from libvirt_drs.migrator.model import MigrationOptions as O  # noqa: PLC0415

    t = threading.Thread(target=hv.migrate, args=("h1", "h2", "a", O()))
    t.start()  # libvirt keeps migrating although its client died
    running_job(store)
    [r] = reconciler(hv, store).run()
    t.join()
    assert r.state is JobState.SUCCEEDED and store.progress  # it was watched again


def test_queued_jobs_of_dead_owner_are_aborted_and_live_owners_left_alone() -> None:
    hv, store = FakeHypervisor(["h1", "h2"]), MemoryJobStore()
    store.enqueue([MoveRequest("a", "h1", "h2")], DEAD)
    store.enqueue([MoveRequest("b", "h1", "h2")], "alive:2")
    ex = Executor(hv, store, MigrationOptions())
    rec = Reconciler(store, hv, ex, "me", is_alive=lambda o, u, n: o == "alive:2")
    [r] = rec.run()
    assert r.state is JobState.ABORTED
    assert store.get(2).state is JobState.QUEUED


def test_owner_alive_uses_pid_on_this_host() -> None:
    me = f"{socket.gethostname()}:{os.getpid()}"
    assert owner_alive(me, None, 0.0)
    assert not owner_alive(f"{socket.gethostname()}:999999999", None, 0.0)
    assert owner_alive("other-host:1", 100.0, 150.0)
    assert not owner_alive("other-host:1", 100.0, 1000.0)
    assert not owner_alive(None, None, 0.0)
