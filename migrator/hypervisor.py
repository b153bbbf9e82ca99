"""The narrow view of libvirt the migrator needs, as a Protocol (fakes in tests).

Hosts are named as in the config; the implementation maps names to URIs. Every call
that talks to a host may raise HypervisorError (unreachable host, libvirt error).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from libvirt_drs.migrator.model import CompletedStats, MigrationOptions, Progress


class HypervisorError(Exception):
    """libvirt (or the connection) failed; the message is libvirt's, one line."""


class DomainRunState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # includes an incoming migration on the destination
    SHUTOFF = "shutoff"
    OTHER = "other"


@dataclass(frozen=True)
class Disk:
    target: str  # vda
    path: str  # file or block device on the host
    fmt: str = "raw"  # qcow2 | raw
    readonly: bool = False


@dataclass(frozen=True)
class Nic:
    kind: str  # network | bridge | other
    source: str  # network name or bridge name


@dataclass(frozen=True)
class CpuModel:
    """What the CPU comparison needs from the guest definition."""

    xml: str | None  # the <cpu> element; None = none defined (hypervisor default)
    arch: str | None = None
    machine: str | None = None
    virt_type: str | None = None  # kvm | qemu
    emulator: str | None = None


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: DomainRunState
    persistent: bool
    mem_mib: int
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    cpu: CpuModel = CpuModel(xml=None)
    job_active: bool = False  # a libvirt job (e.g. outgoing migration) is running


class CpuCompare(enum.StrEnum):
    COMPATIBLE = "compatible"  # identical or superset
    INCOMPATIBLE = "incompatible"
    UNKNOWN = "unknown"  # nothing to compare (no <cpu> in the guest)


@dataclass(frozen=True)
class HostFacts:
    """What the prechecks need from a destination host."""

    free_mem_mib: int
    networks: frozenset[str]  # active libvirt networks
    bridges: frozenset[str] | None  # None = libvirt cannot list host interfaces


class Hypervisor(Protocol):
    def domain(self, host: str, vm_name: str) -> DomainInfo | None:
        """The domain `vm_name` on `host`, or None if that host does not have it."""

    def host_facts(self, host: str) -> HostFacts: ...

    def compare_cpu(self, host: str, cpu: CpuModel) -> CpuCompare: ...

    def missing_paths(self, host: str, paths: tuple[str, ...]) -> tuple[str, ...]:
        """The paths of `paths` that do not exist on `host` (as seen by its libvirtd)."""

    def prepare_storage(self, host: str, disks: tuple[Disk, ...]) -> None:
        """Make `host` able to receive a copy of `disks` (copy-storage) at the same paths."""

    def migrate(self, source: str, destination: str, vm_name: str,
                options: MigrationOptions) -> None:
        """Blocking live migration; raises HypervisorError when libvirt reports failure."""

    def job_progress(self, host: str, vm_name: str) -> Progress | None:
        """Statistics of the active job of the domain, None when no job is active."""

    def completed_stats(self, host: str, vm_name: str) -> CompletedStats: ...

    def abort_job(self, host: str, vm_name: str) -> None: ...

    def start_postcopy(self, host: str, vm_name: str) -> None: ...

    def remove_leftover(self, host: str, vm_name: str) -> bool:
        """Destroy and undefine a non-running copy of the domain on `host`; True if one was."""

    def domain_xml(self, host: str, vm_name: str) -> str | None:
        """The VM's definition (no secrets), None if the host does not have it (HA keeps
        it to restart the VM elsewhere)."""

    def define_and_start(self, host: str, xml: str) -> None:
        """Define the VM on `host` and start it (HA's restart); the lock manager refuses a
        disk in use elsewhere."""


Sleep = Callable[[float], None]
Clock = Callable[[], float]
