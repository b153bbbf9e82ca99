"""In-memory fakes of the collectors' HostSource Protocol, driven by a fake clock."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from libvirt_drs.collectors.hypervisor import (
    STATE_RUNNING,
    DomainStats,
    HostPoll,
    HostUnavailable,
    NodeInfo,
)


@dataclass
class FakeClock:
    wall_s: float = 1_800_000_000.0
    mono_s: float = 1000.0

    def wall(self) -> float:
        return self.wall_s

    def mono(self) -> float:
        return self.mono_s

    def advance(self, dt_s: float) -> None:
        self.wall_s += dt_s
        self.mono_s += dt_s


@dataclass
class FakeVm:
    uuid: str
    name: str
    burn_cores: float = 0.0  # CPU used per second of clock
    cpu_time_ns: int = 10**9
    state: int = STATE_RUNNING
    reason: int = 1
    vcpus: int = 1
    mem_max_kib: int = 262144
    rss_kib: int | None = 131072
    wait_cores: float | None = None  # run-queue wait per second of clock; None: unreported
    delay_ns: int = 0

    def stats(self) -> DomainStats:
        return DomainStats(self.uuid, self.name, self.state, self.reason, self.cpu_time_ns,
                           self.vcpus, self.mem_max_kib, self.mem_max_kib, self.rss_kib,
                           vcpu_delay_ns=None if self.wait_cores is None else self.delay_ns)


@dataclass
class FakeHost:
    """A host whose VMs burn `burn_cores` each; `tick()` advances their counters."""

    name: str
    clock: FakeClock
    cpus: int = 4
    mem_mib: int = 8192
    vms: dict[str, FakeVm] = field(default_factory=dict)
    error: str | None = None  # poll raises HostUnavailable(error)
    hang: threading.Event | None = None  # poll blocks until set
    polls: int = 0
    closed: int = 0

    def add(self, vm: FakeVm) -> FakeVm:
        self.vms[vm.uuid] = vm
        return vm

    def tick(self, dt_s: float) -> None:
        for vm in self.vms.values():
            vm.cpu_time_ns += int(vm.burn_cores * dt_s * 1e9)
            vm.delay_ns += int((vm.wait_cores or 0.0) * dt_s * 1e9)

    def poll(self) -> HostPoll:
        self.polls += 1
        if self.hang is not None:
            self.hang.wait(30)
        if self.error:
            raise HostUnavailable(self.error)
        domains = tuple(vm.stats() for vm in self.vms.values())
        return HostPoll(self.name, self.clock.wall(), self.clock.mono(),
                        NodeInfo(self.cpus, self.mem_mib, "FakeModel", "<cpu><model>FakeModel"
                                 "</model><feature name='sse4_2'/></cpu>"), domains)

    def close(self) -> None:
        self.closed += 1


def clone_vm(vm: FakeVm, **changes: object) -> FakeVm:
    return replace(vm, **changes)  # type: ignore[arg-type]


def advance(clock: FakeClock, hosts: list[FakeHost], dt_s: float) -> None:
    clock.advance(dt_s)
    for host in hosts:
        host.tick(dt_s)
