"""Operations that move VMs: roles, typed refusals (nothing half-done), audit with the
caller's name, recorded plans applied once."""

from __future__ import annotations

import pytest

from libvirt_drs.db import audit
from libvirt_drs.migrator.model import JobState
from libvirt_drs.operations import moves, planning, reads
from libvirt_drs.operations.errors import Conflict, Forbidden, Invalid, NotFound
from tests.support.fake_cluster import OPERATOR, VIEWER, Lab


def _events(lab: Lab, actor: str) -> list[str]:
    return [e.action for e in audit.events(lab.cl.engine, actor=actor)]


def test_a_viewer_reads_but_may_not_migrate(fake: Lab) -> None:
    status = reads.cluster_status(fake.cl, VIEWER)
    assert {h.view.name for h in status.hosts} == {"h1", "h2", "h3"}
    check = moves.check_migration(fake.cl, VIEWER, "vm1", "h2")
    assert check.ok and check.source == "h1"
    with pytest.raises(Forbidden, match="needs the operator role"):
        moves.request_migration(fake.cl, VIEWER, "vm1", "h2")
    assert fake.hv.migrations == [] and reads.jobs(fake.cl, VIEWER) == []


def test_a_migration_is_audited_with_the_caller(fake: Lab) -> None:
    jobs = moves.request_migration(fake.cl, OPERATOR, "vm1", "h2")
    [done] = moves.run_jobs(fake.cl, jobs)
    assert done.state is JobState.SUCCEEDED and fake.hv.where("vm1") == ["h2"]
    assert "migration.requested" in _events(fake, "token:ops")


def test_unknown_names_and_failed_prechecks_are_typed_and_queue_nothing(fake: Lab) -> None:
    with pytest.raises(NotFound):
        moves.request_migration(fake.cl, OPERATOR, "nope", "h2")
    with pytest.raises(NotFound, match="unknown host"):
        moves.request_migration(fake.cl, OPERATOR, "vm1", "h9")
    with pytest.raises(Invalid) as same:
        moves.request_migration(fake.cl, OPERATOR, "vm1", "h1")
    assert same.value.field == "destination"
    fake.hv.hosts["h2"].free_mem_mib = 10
    with pytest.raises(Conflict) as exc:
        moves.request_migration(fake.cl, OPERATOR, "vm1", "h2")
    assert exc.value.reason == "not_enough_memory"
    assert reads.jobs(fake.cl, VIEWER) == []


def test_a_vm_with_a_job_is_not_queued_twice_and_limits_refuse_when_asked(fake: Lab) -> None:
    first = moves.request_migration(fake.cl, OPERATOR, "vm1", "h2")
    with pytest.raises(Conflict) as busy:
        moves.request_migration(fake.cl, OPERATOR, "vm1", "h3")
    assert busy.value.reason == "vm_busy"
    moves.run_jobs(fake.cl, first)
    # two running out of h1 fill its outgoing limit (2): a third is refused, not queued
    store = fake.cl.migrator.store
    running = store.enqueue([moves.MoveRequest(v, "h1", "h3") for v in ("vm2", "vm3")], "x")
    for j in running:
        store.admit(fake.cfg.migrator.limits, "x", {j.id})
    with pytest.raises(Conflict) as held:
        moves.request_migration(fake.cl, OPERATOR, "vm4", "h2", wait_for_slot=False)
    assert held.value.reason == "outgoing_limit"
    assert [j.vm_name for j in store.jobs(states=(JobState.QUEUED,))] == []


def test_a_recorded_plan_is_applied_once_and_checked_first(fake: Lab) -> None:
    planned = moves.recommend(fake.cl, VIEWER)
    assert planned.plan.moves
    plan_id = planning.record(fake.cl, planned, mode="manual", trigger="balance",
                              actor="drs-serve")
    first_vm = planned.plan.moves[0].vm
    one = moves.apply_plan(fake.cl, OPERATOR, plan_id, vm=first_vm)
    assert [j.vm_name for j in one.jobs] == [first_vm]
    moves.run_jobs(fake.cl, one.jobs)
    rest = moves.apply_plan(fake.cl, OPERATOR, plan_id)
    assert first_vm not in [j.vm_name for j in rest.jobs]
    assert rest.skipped[0][0] == first_vm and "already applied" in rest.skipped[0][1]
    moves.run_jobs(fake.cl, rest.jobs)
    with pytest.raises(Conflict) as again:
        moves.apply_plan(fake.cl, OPERATOR, plan_id)
    assert again.value.reason == "nothing_to_apply"
    record = reads.plan(fake.cl, VIEWER, plan_id)
    assert record.applied_by == "token:ops"
    assert all(pm.job_state is JobState.SUCCEEDED for pm in record.moves)
    assert _events(fake, "token:ops").count("plan.applied") == 2


def test_outdated_plans_and_moved_vms_are_refused(fake: Lab) -> None:
    planned = moves.recommend(fake.cl, VIEWER)
    plan_id = planning.record(fake.cl, planned, mode="manual", trigger="balance",
                              actor="drs-serve")
    fake.clock_s[0] += moves.plan_max_age_s(fake.cl) + 1
    with pytest.raises(Conflict) as old:
        moves.apply_plan(fake.cl, OPERATOR, plan_id)
    assert old.value.reason == "plan_outdated"
    fake.clock_s[0] -= moves.plan_max_age_s(fake.cl) + 1
    mv = planned.plan.moves[0]
    fake.hv.hosts[mv.source].domains.pop(mv.vm)  # the VM left by other means
    fake.hv.add_vm("h3" if mv.destination != "h3" else "h2", mv.vm)
    applied = moves.apply_plan(fake.cl, OPERATOR, plan_id)
    assert mv.vm in dict(applied.skipped) and "no longer on" in dict(applied.skipped)[mv.vm]
    with pytest.raises(NotFound):
        moves.apply_plan(fake.cl, OPERATOR, 9999)
    with pytest.raises(Forbidden):
        moves.apply_plan(fake.cl, VIEWER, plan_id)
