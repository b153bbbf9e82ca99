"""Pre-conditions re-checked against live state just before a migration starts.

Each check is a small function returning a typed CheckResult (Watcher's
`pre_condition`); any failure makes the job `skipped` with the first reason, and
nothing is attempted. Every check whose inputs are known runs, so `--check-only` and the
console's migrate dialog show every verdict, not only the first failure.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from libvirt_drs.migrator.hypervisor import (
    CpuCompare,
    DomainInfo,
    DomainRunState,
    HostFacts,
    Hypervisor,
    HypervisorError,
)


class SkipReason(enum.StrEnum):
    SAME_HOST = "same_host"
    SOURCE_UNREACHABLE = "source_unreachable"
    VM_NOT_ON_SOURCE = "vm_not_on_source"
    VM_NOT_RUNNING = "vm_not_running"
    VM_BUSY = "vm_busy"
    DEST_UNREACHABLE = "destination_unreachable"
    DEST_MAINTENANCE = "destination_in_maintenance"
    DEST_ALREADY_HAS_VM = "destination_has_vm"
    NOT_ENOUGH_MEMORY = "not_enough_memory"
    CPU_INCOMPATIBLE = "cpu_incompatible"
    DISK_UNREACHABLE = "disk_unreachable"
    NETWORK_MISSING = "network_missing"


class CheckStatus(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"  # could not be verified; not a reason to skip
    FAIL = "fail"
    NOT_RUN = "not_run"  # an earlier failure made this check meaningless


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    detail: str
    reason: SkipReason | None = None

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.FAIL


@dataclass(frozen=True)
class CheckInput:
    vm_name: str
    source: str
    destination: str
    copy_storage: bool
    destination_in_maintenance: bool
    mem_reserve_mib: int = 0


@dataclass
class _Context:
    hv: Hypervisor
    req: CheckInput
    dom: DomainInfo | None = None
    facts: HostFacts | None = None


def _ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, CheckStatus.PASS, detail)


def _fail(name: str, reason: SkipReason, detail: str) -> CheckResult:
    return CheckResult(name, CheckStatus.FAIL, detail, reason)


def check_vm_on_source(ctx: _Context) -> CheckResult:
    name, req = "vm_on_source", ctx.req
    if req.source == req.destination:
        return _fail(name, SkipReason.SAME_HOST, f"{req.vm_name} is already on {req.source}")
    try:
        ctx.dom = ctx.hv.domain(req.source, req.vm_name)
    except HypervisorError as exc:
        return _fail(name, SkipReason.SOURCE_UNREACHABLE, f"source {req.source}: {exc}")
    if ctx.dom is None:
        return _fail(name, SkipReason.VM_NOT_ON_SOURCE, f"{req.vm_name} is not on {req.source}")
    if ctx.dom.state is not DomainRunState.RUNNING:
        return _fail(name, SkipReason.VM_NOT_RUNNING,
                     f"{req.vm_name} is {ctx.dom.state} on {req.source}, not running")
    if ctx.dom.job_active:
        return _fail(name, SkipReason.VM_BUSY, f"{req.vm_name} already has a libvirt job running")
    return _ok(name, f"{req.vm_name} running on {req.source}")


def check_destination(ctx: _Context) -> CheckResult:
    name, req = "destination", ctx.req
    try:
        ctx.facts = ctx.hv.host_facts(req.destination)
        there = ctx.hv.domain(req.destination, req.vm_name)
    except HypervisorError as exc:
        return _fail(name, SkipReason.DEST_UNREACHABLE, f"destination {req.destination}: {exc}")
    if req.destination_in_maintenance:
        return _fail(name, SkipReason.DEST_MAINTENANCE, f"{req.destination} is in maintenance")
    if there is not None:
        return _fail(name, SkipReason.DEST_ALREADY_HAS_VM,
                     f"{req.destination} already has a domain named {req.vm_name} ({there.state})")
    return _ok(name, f"{req.destination} reachable, active")


def check_memory(ctx: _Context) -> CheckResult:
    assert ctx.dom is not None and ctx.facts is not None
    need_mib = ctx.dom.mem_mib + ctx.req.mem_reserve_mib
    free_mib = ctx.facts.free_mem_mib
    if free_mib < need_mib:
        return _fail("memory", SkipReason.NOT_ENOUGH_MEMORY,
                     f"{ctx.req.destination} has {free_mib} MiB free, {ctx.req.vm_name} needs "
                     f"{need_mib} MiB")
    return _ok("memory", f"{free_mib} MiB free >= {need_mib} MiB needed")


def check_cpu(ctx: _Context) -> CheckResult:
    assert ctx.dom is not None
    try:
        verdict = ctx.hv.compare_cpu(ctx.req.destination, ctx.dom.cpu)
    except HypervisorError as exc:
        return _fail("cpu", SkipReason.CPU_INCOMPATIBLE, f"CPU comparison failed: {exc}")
    if verdict is CpuCompare.INCOMPATIBLE:
        return _fail("cpu", SkipReason.CPU_INCOMPATIBLE,
                     f"{ctx.req.destination} cannot provide the CPU of {ctx.req.vm_name}")
    if verdict is CpuCompare.UNKNOWN:
        return _ok("cpu", "guest defines no CPU model (hypervisor default)")
    return _ok("cpu", f"{ctx.req.destination} provides the guest CPU")


def check_disks(ctx: _Context) -> CheckResult:
    assert ctx.dom is not None
    paths = tuple(d.path for d in ctx.dom.disks)
    if not paths:
        return _ok("disks", "no disks")
    try:
        missing = ctx.hv.missing_paths(ctx.req.destination, paths)
    except HypervisorError as exc:
        return _fail("disks", SkipReason.DISK_UNREACHABLE, f"cannot check disks: {exc}")
    if ctx.req.copy_storage:
        present = [p for p in paths if p not in missing]
        if present:  # a stale copy from an earlier move; QEMU's image locks refuse a live one
            return CheckResult("disks", CheckStatus.WARN,
                               f"copy-storage will overwrite {', '.join(present)} on "
                               f"{ctx.req.destination}")
        return _ok("disks", f"{len(paths)} disk(s) will be copied (copy-storage)")
    if missing:
        return _fail("disks", SkipReason.DISK_UNREACHABLE,
                     f"not reachable on {ctx.req.destination}: {', '.join(missing)} "
                     "(shared storage missing; use copy-storage)")
    return _ok("disks", f"{len(paths)} disk(s) reachable at the same paths")


def check_networks(ctx: _Context) -> CheckResult:
    assert ctx.dom is not None and ctx.facts is not None
    facts = ctx.facts
    missing = [f"network {n.source}" for n in ctx.dom.nics
               if n.kind == "network" and n.source not in facts.networks]
    bridges = [n.source for n in ctx.dom.nics if n.kind == "bridge"]
    if facts.bridges is not None:
        missing += [f"bridge {b}" for b in bridges if b not in facts.bridges]
    if missing:
        return _fail("networks", SkipReason.NETWORK_MISSING,
                     f"missing on {ctx.req.destination}: {', '.join(missing)}")
    if bridges and facts.bridges is None:
        return CheckResult("networks", CheckStatus.WARN,
                           f"cannot list bridges on {ctx.req.destination}; not verified: "
                           f"{', '.join(bridges)}")
    return _ok("networks", f"{len(ctx.dom.nics)} interface(s) have their network")


# name, check, what it needs: "dom" (the VM's definition, from its source) and "facts"
# (the destination answered)
CHECKS: tuple[tuple[str, Callable[[_Context], CheckResult], tuple[str, ...]], ...] = (
    ("vm_on_source", check_vm_on_source, ()),
    ("destination", check_destination, ()),
    ("memory", check_memory, ("dom", "facts")),
    ("cpu", check_cpu, ("dom", "facts")),
    ("disks", check_disks, ("dom", "facts")),
    ("networks", check_networks, ("dom", "facts")),
)
_NEEDS = {"dom": "the VM's definition on its source", "facts": "an answer from the destination"}


def run_checks(hv: Hypervisor, req: CheckInput) -> tuple[list[CheckResult], DomainInfo | None]:
    """Every check in order; one whose inputs an earlier failure left unknown is NOT_RUN."""
    ctx = _Context(hv, req)
    results: list[CheckResult] = []
    for name, check, needs in CHECKS:
        unknown = [_NEEDS[n] for n in needs if getattr(ctx, n) is None]
        if unknown:
            results.append(CheckResult(name, CheckStatus.NOT_RUN,
                                       f"not checked: needs {' and '.join(unknown)}"))
            continue
        results.append(check(ctx))
    return results, ctx.dom


def first_failure(results: list[CheckResult]) -> CheckResult | None:
    return next((r for r in results if r.failed), None)
