"""Typed values shared by the migrator: jobs, options, progress, outcomes.

Pure data: no libvirt, no SQLAlchemy. Times are epoch seconds (`*_s`), durations carry
their unit in the name (`downtime_ms`, `total_ms`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class Job:
    """One migration job as the store returns it."""

    id: int
    vm_name: str
    source: str
    destination: str
    state: JobState
    copy_storage: bool = False
    owner: str | None = None
    vm_uuid: str | None = None
    plan_id: int | None = None
    queued_s: float = 0.0
    started_s: float | None = None
    finished_s: float | None = None
    updated_s: float | None = None
    error: str | None = None
    bytes_processed: int | None = None
    bytes_remaining: int | None = None
    bytes_total: int | None = None
    dirty_rate_bps: float | None = None
    iteration: int | None = None
    downtime_ms: float | None = None
    total_ms: float | None = None


@dataclass(frozen=True)
class MoveRequest:
    """What a caller asks for: move `vm_name` from `source` to `destination`."""

    vm_name: str
    source: str
    destination: str
    copy_storage: bool = False
    vm_uuid: str | None = None
    plan_id: int | None = None


@dataclass(frozen=True)
class MigrationOptions:
    """libvirt migration tuning, from [migrator] in the config (plus per-job copy_storage)."""

    bandwidth_mib_s: int = 0  # 0 = unlimited
    max_downtime_ms: int = 300
    auto_converge: bool = True
    compression: bool = False
    postcopy_after_iterations: int = 0  # 0 = never
    copy_storage: bool = False
    timeout_s: float = 600.0
    stall_timeout_s: float = 60.0
    poll_interval_s: float = 0.25


@dataclass(frozen=True)
class Progress:
    """One poll of the source's job statistics."""

    bytes_processed: int = 0
    bytes_remaining: int = 0
    bytes_total: int = 0
    dirty_rate_bps: float = 0.0
    iteration: int = 0
    elapsed_ms: float = 0.0

    @property
    def percent(self) -> float:
        if self.bytes_total <= 0:
            return 0.0
        return min(100.0, 100.0 * (self.bytes_total - self.bytes_remaining) / self.bytes_total)


@dataclass(frozen=True)
class CompletedStats:
    """Statistics of a finished migration (libvirt's completed job on the destination)."""

    total_ms: float | None = None
    downtime_ms: float | None = None
    bytes_transferred: int | None = None


@dataclass(frozen=True)
class Outcome:
    """How one job ended: the final state and a readable reason."""

    state: JobState
    error: str | None = None
    stats: CompletedStats = field(default_factory=CompletedStats)
