from __future__ import annotations

import pytest

from libvirt_drs.migrator.hypervisor import CpuCompare, Disk, DomainRunState, Nic
from libvirt_drs.migrator.prechecks import CheckInput, CheckStatus, SkipReason, first_failure, run_checks
from tests.migrator.fakes import FakeHypervisor

DISK = Disk("vda", "/images/a.qcow2", "qcow2")


def make(**kw: object) -> tuple[FakeHypervisor, CheckInput]:
    hv = FakeHypervisor(["h1", "h2"])
    hv.add_vm("h1", "a", disks=[DISK], nics=[Nic("network", "default"), Nic("bridge", "br0")])
    hv.hosts["h2"].paths.add(DISK.path)
    args = {"vm_name": "a", "source": "h1", "destination": "h2", "copy_storage": False,
            "destination_in_maintenance": False}
    args.update(kw)
    return hv, CheckInput(**args)  # type: ignore[arg-type]


def reason(hv: FakeHypervisor, req: CheckInput) -> SkipReason | None:
    results, _ = run_checks(hv, req)
    failure = first_failure(results)
    return failure.reason if failure else None


def test_all_pass() -> None:
    hv, req = make()
    results, dom = run_checks(hv, req)
    assert [r.status for r in results] == [CheckStatus.PASS] * 6
    assert dom is not None and dom.name == "a"


def test_vm_elsewhere_or_not_running() -> None:
    hv, req = make(source="h2", destination="h1")
    assert reason(hv, req) is SkipReason.VM_NOT_ON_SOURCE
    hv, req = make()
    hv.add_vm("h1", "a", state=DomainRunState.PAUSED)
    assert reason(hv, req) is SkipReason.VM_NOT_RUNNING


def test_every_check_with_known_inputs_runs_after_a_failure() -> None:
    hv, req = make(destination_in_maintenance=True)
    hv.hosts["h2"].free_mem_mib = 100
    results, _ = run_checks(hv, req)
    assert results[1].reason is SkipReason.DEST_MAINTENANCE
    assert results[2].reason is SkipReason.NOT_ENOUGH_MEMORY  # reported too, not hidden
    assert [r.status for r in results[3:]] == [CheckStatus.PASS] * 3
    assert first_failure(results) is results[1]


def test_checks_without_their_inputs_are_not_run() -> None:
    hv, req = make(source="h2", destination="h1")  # the VM is not on h2: no definition
    results, _ = run_checks(hv, req)
    assert results[0].reason is SkipReason.VM_NOT_ON_SOURCE
    assert results[1].reason is SkipReason.DEST_ALREADY_HAS_VM  # it runs on h1: said as well
    assert all(r.status is CheckStatus.NOT_RUN and "definition" in r.detail for r in results[2:])
    hv, req = make()
    hv.hosts["h2"].reachable = False
    results, _ = run_checks(hv, req)
    assert results[1].reason is SkipReason.DEST_UNREACHABLE
    assert all(r.status is CheckStatus.NOT_RUN and "destination" in r.detail for r in results[2:])


@pytest.mark.parametrize("tweak, expected", [
    (lambda hv: setattr(hv.hosts["h2"], "reachable", False), SkipReason.DEST_UNREACHABLE),
    (lambda hv: setattr(hv.hosts["h2"], "free_mem_mib", 100), SkipReason.NOT_ENOUGH_MEMORY),
    (lambda hv: setattr(hv.hosts["h2"], "cpu", CpuCompare.INCOMPATIBLE),
     SkipReason.CPU_INCOMPATIBLE),
    (lambda hv: hv.hosts["h2"].paths.clear(), SkipReason.DISK_UNREACHABLE),
    (lambda hv: setattr(hv.hosts["h2"], "networks", frozenset()), SkipReason.NETWORK_MISSING),
    (lambda hv: setattr(hv.hosts["h2"], "bridges", frozenset()), SkipReason.NETWORK_MISSING),
    (lambda hv: hv.add_vm("h2", "a"), SkipReason.DEST_ALREADY_HAS_VM),
])
def test_each_failure_has_its_typed_reason(tweak, expected) -> None:  # type: ignore[no-untyped-def]
    hv, req = make()
    tweak(hv)
    assert reason(hv, req) is expected


def test_copy_storage_warns_before_overwriting_a_stale_image() -> None:
    hv, req = make(copy_storage=True)
    results, _ = run_checks(hv, req)
    assert results[4].status is CheckStatus.WARN and "overwrite" in results[4].detail
    hv.hosts["h2"].paths.clear()
    results, _ = run_checks(hv, req)
    assert results[4].status is CheckStatus.PASS


def test_unlistable_bridges_warn_not_fail() -> None:
    hv, req = make()
    hv.hosts["h2"].bridges = None
    results, _ = run_checks(hv, req)
    assert results[-1].status is CheckStatus.WARN and first_failure(results) is None


def test_same_host() -> None:
    hv, req = make(destination="h1")
    assert reason(hv, req) is SkipReason.SAME_HOST
