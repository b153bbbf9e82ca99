"""The narrow hypervisor Protocol the collectors need, and the raw stats it returns.

One `HostSource` per configured host. `poll()` makes one round of calls (the bulk
domain stats call plus node info and node CPU/memory stats) and returns raw,
cumulative values; turning them into rates is `collectors.rates`' job. Tests use
in-memory fakes of this Protocol; production uses `collectors.libvirt_source`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

# libvirt's virDomainState values (kept here so the pure code needs no libvirt import).
STATE_NOSTATE = 0
STATE_RUNNING = 1
STATE_BLOCKED = 2
STATE_PAUSED = 3
STATE_SHUTDOWN = 4
STATE_SHUTOFF = 5
STATE_CRASHED = 6
STATE_PMSUSPENDED = 7
STATE_NAMES = {
    STATE_NOSTATE: "nostate", STATE_RUNNING: "running", STATE_BLOCKED: "blocked",
    STATE_PAUSED: "paused", STATE_SHUTDOWN: "shutdown", STATE_SHUTOFF: "shutoff",
    STATE_CRASHED: "crashed", STATE_PMSUSPENDED: "pmsuspended",
}
# virDomainPausedReason / virDomainRunningReason values that matter for migrations.
PAUSED_MIGRATION = 2  # either side of a pre-copy migration while the VM is paused
PAUSED_POSTCOPY = 12  # source side once post-copy started: the VM runs on the destination
RUNNING_MIGRATED = 2  # destination side after the switch-over
RUNNING_POSTCOPY = 10  # destination side during post-copy


class HostUnavailable(Exception):
    """The host could not be polled (unreachable, refused, hung, protocol error)."""


@dataclass(frozen=True, slots=True)
class DomainStats:
    """One domain's raw values from one bulk stats call (memory in KiB, CPU in ns)."""

    uuid: str
    name: str
    state: int
    state_reason: int = 0
    cpu_time_ns: int | None = None  # cumulative; None when the driver did not report it
    vcpus: int = 1
    mem_max_kib: int = 0  # balloon.maximum: the configured memory
    mem_current_kib: int = 0  # balloon.current: what the balloon currently allows
    rss_kib: int | None = None  # balloon.rss: QEMU process resident set
    guest_available_kib: int | None = None  # guest-reported (balloon driver + stats period)
    guest_unused_kib: int | None = None
    guest_usable_kib: int | None = None
    vcpu_delay_ns: int | None = None  # cumulative run-queue wait of all vCPUs (steal), or None
    swap_in_kib: int | None = None  # guest-reported, cumulative since its boot, or None

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "unknown")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the host offers: physical capacity, CPU model and definition."""

    cpus: int
    mem_mib: int
    cpu_model: str | None = None
    cpu_xml: str | None = None  # the <cpu> element of the host capabilities (model + features)


@dataclass(frozen=True, slots=True)
class HostPoll:
    """One poll of one host. `mono_s` is a monotonic clock reading taken at the stats call
    and is what rates are computed from; `wall_s` is only the timestamp stored."""

    host: str
    wall_s: float
    mono_s: float
    node: NodeInfo
    domains: tuple[DomainStats, ...]
    node_cpu_ns: Mapping[str, int] = field(default_factory=dict)  # user/kernel/idle/iowait
    node_mem_kib: Mapping[str, int] = field(default_factory=dict)  # total/free/buffers/cached
    poll_ms: float = 0.0


class HostSource(Protocol):
    """One configured host. Implementations keep their connection between polls."""

    name: str

    def poll(self) -> HostPoll:
        """Raises HostUnavailable on any failure to reach or read the host."""
        ...

    def close(self) -> None: ...
