from __future__ import annotations

import threading

from libvirt_drs.migrator.admission import Limits
from libvirt_drs.migrator.executor import Executor
from libvirt_drs.migrator.model import JobState, MigrationOptions, MoveRequest
from libvirt_drs.migrator.runner import Runner
from tests.migrator.fakes import Behaviour, FakeHypervisor, MemoryJobStore

OPTS = MigrationOptions(poll_interval_s=0.01)


def cluster(n_vms: int) -> FakeHypervisor:
    hv = FakeHypervisor(["h1", "h2", "h3"])
    for i in range(n_vms):
        hv.add_vm(["h1", "h2", "h3"][i % 3], f"vm{i}")
        hv.behaviour[f"vm{i}"] = Behaviour(duration_s=0.05)
    return hv


def ring_moves(n: int) -> list[MoveRequest]:
    hosts = ["h1", "h2", "h3"]
    return [MoveRequest(f"vm{i}", hosts[i % 3], hosts[(i + 1) % 3]) for i in range(n)]


def test_limits_hold_across_workers_and_every_job_succeeds() -> None:
    hv, store = cluster(12), MemoryJobStore()
    limits = Limits(max_outgoing_per_host=1, max_incoming_per_host=1, max_cluster=8)
    runner = Runner(store, Executor(hv, store, OPTS), limits, "me", workers=8,
                    poll_interval_s=0.005)
    jobs = runner.submit(ring_moves(12))
    outcomes = runner.run([j.id for j in jobs])
    assert {o.state for o in outcomes.values()} == {JobState.SUCCEEDED}
    assert max(hv.max_outgoing.values()) == 1 and max(hv.max_incoming.values()) == 1
    assert hv.max_total >= 2  # workers did run in parallel on distinct hosts


def test_cluster_limit_across_two_runners_sharing_the_store() -> None:
    hv, store = cluster(12), MemoryJobStore()
    limits = Limits(max_outgoing_per_host=4, max_incoming_per_host=4, max_cluster=2)
    runners = [Runner(store, Executor(hv, store, OPTS), limits, f"p{i}", workers=4,
                      poll_interval_s=0.005) for i in range(2)]
    moves = ring_moves(12)
    batches = [runners[0].submit(moves[:6]), runners[1].submit(moves[6:])]
    threads = [threading.Thread(target=r.run, args=([j.id for j in b],))
               for r, b in zip(runners, batches, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hv.max_total <= 2
    assert all(j.state is JobState.SUCCEEDED for j in store.jobs())


def test_queue_order_with_one_slot() -> None:
    hv, store = cluster(6), MemoryJobStore()
    runner = Runner(store, Executor(hv, store, OPTS), Limits(max_cluster=1), "me", workers=3,
                    poll_interval_s=0.005)
    jobs = runner.submit(ring_moves(6))
    runner.run([j.id for j in jobs])
    assert [m[0] for m in hv.migrations] == [f"vm{i}" for i in range(6)]


def test_blocked_jobs_are_audited_once() -> None:
    hv, store = cluster(3), MemoryJobStore()
    runner = Runner(store, Executor(hv, store, OPTS), Limits(max_cluster=1), "me", workers=3,
                    poll_interval_s=0.005)
    jobs = runner.submit(ring_moves(3))
    runner.run([j.id for j in jobs])
    waits = [e for e in store.events if e[1] == "migration.waiting"]
    assert len(waits) == len(set(waits)) and waits


def test_a_crash_in_the_executor_fails_the_job_instead_of_leaving_it_running() -> None:
    hv, store = cluster(1), MemoryJobStore()

    def broken(*_args: object) -> None:
        raise RuntimeError("bug")

    ex = Executor(hv, store, OPTS)
    ex.post_check = broken  # type: ignore[assignment,method-assign]
    runner = Runner(store, ex, Limits(), "me", workers=1, poll_interval_s=0.005)
    jobs = runner.submit(ring_moves(1))
    [outcome] = runner.run([j.id for j in jobs]).values()
    assert outcome.state is JobState.FAILED and "bug" in (outcome.error or "")
    assert store.get(jobs[0].id).state is JobState.FAILED
