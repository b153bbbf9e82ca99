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


# How a job can end (the `result` label of drs_migrations_finished_total), in report order.
JOB_RESULTS: tuple[JobState, ...] = tuple(s for s in JobState if s.terminal)


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
    """libvirt migration tuning: the [migrator] settings, plus per-job copy_storage.

    A setting's metadata declares it (see balancer.model.Policy): `section` (its TOML
    table), bounds (`gt`, `ge`, `le`), `unit` and `note`; libvirt_drs.config validates from them.
    """

    bandwidth_mib_s: int = field(default=0, metadata={
        "section": "migrator", "ge": 0, "unit": "MiB/s", "note": "0 = unlimited"})
    # QEMU switches over once it expects the rest to take this long; its estimate runs 2-3x
    # short on uncapped migrations (zero pages inflate the measured bandwidth): a 300 ms
    # target gave up to 0.8 s pauses on the lab, 100 ms at most 0.33 s (docs/migrator.md)
    max_downtime_ms: int = field(default=100, metadata={
        "section": "migrator", "ge": 1, "unit": "milliseconds"})
    auto_converge: bool = field(default=True, metadata={"section": "migrator"})
    compression: bool = field(default=False, metadata={"section": "migrator"})
    postcopy_after_iterations: int = field(default=0, metadata={
        "section": "migrator", "ge": 0, "note": "0 = never"})
    copy_storage: bool = False  # per job (needs_copy_storage), not [migrator] copy_storage
    timeout_s: float = field(default=600.0, metadata={
        "section": "migrator", "gt": 0, "unit": "seconds"})
    stall_timeout_s: float = field(default=60.0, metadata={
        "section": "migrator", "gt": 0, "unit": "seconds"})
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
