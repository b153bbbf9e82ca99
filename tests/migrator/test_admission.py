from __future__ import annotations

from libvirt_drs.migrator.admission import Blocker, Limits, choose
from libvirt_drs.migrator.model import Job, JobState


def job(i: int, vm: str, src: str, dst: str, state: JobState = JobState.QUEUED) -> Job:
    return Job(id=i, vm_name=vm, source=src, destination=dst, state=state)


def test_oldest_admissible_job_first() -> None:
    queued = [job(1, "a", "h1", "h2"), job(2, "b", "h1", "h3")]
    assert choose(queued, [], Limits()).admitted == queued[0]


def test_outgoing_limit_blocks_and_later_job_for_other_hosts_proceeds() -> None:
    running = [job(1, "a", "h1", "h2", JobState.RUNNING)]
    queued = [job(2, "b", "h1", "h3"), job(3, "c", "h2", "h3")]
    d = choose(queued, running, Limits(max_outgoing_per_host=1))
    assert d.admitted is not None and d.admitted.id == 3
    assert d.blocked == ((2, Blocker.OUTGOING_LIMIT),)


def test_incoming_and_cluster_limits() -> None:
    running = [job(1, "a", "h1", "h2", JobState.RUNNING)]
    d = choose([job(2, "b", "h3", "h2")], running, Limits(max_incoming_per_host=1))
    assert d.admitted is None and d.blocked == ((2, Blocker.INCOMING_LIMIT),)
    d = choose([job(2, "b", "h3", "h4")], running, Limits(max_cluster=1))
    assert d.blocked == ((2, Blocker.CLUSTER_LIMIT),)


def test_per_host_override() -> None:
    running = [job(1, "a", "h1", "h2", JobState.RUNNING)]
    limits = Limits(max_outgoing_per_host=1, outgoing_overrides={"h1": 2})
    assert choose([job(2, "b", "h1", "h3")], running, limits).admitted is not None
    assert limits.outgoing("h9") == 1 and limits.incoming("h1") == 2


def test_same_vm_never_overtakes_its_earlier_job() -> None:
    running = [job(1, "x", "h1", "h2", JobState.RUNNING)]
    queued = [job(2, "a", "h1", "h3"), job(3, "a", "h3", "h4")]
    d = choose(queued, running, Limits(max_outgoing_per_host=1))
    assert d.admitted is None
    assert d.blocked == ((2, Blocker.OUTGOING_LIMIT), (3, Blocker.VM_BUSY))


def test_candidates_restrict_but_others_still_count() -> None:
    queued = [job(1, "a", "h1", "h2"), job(2, "b", "h3", "h4")]
    assert choose(queued, [], Limits(), candidates={2}).admitted == queued[1]
    assert choose(queued, [], Limits(), candidates=set()).admitted is None
