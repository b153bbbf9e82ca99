"""Admission: which queued job may start now under the concurrency limits.

The limits are per host (outgoing, incoming) and cluster-wide. `choose()` is the pure
decision; a JobStore runs it inside one exclusive transaction (advisory lock on
PostgreSQL, BEGIN IMMEDIATE on SQLite) so that every process sharing the database
shares the limits.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from libvirt_drs.migrator.model import CompletedStats, Job, JobState, MoveRequest, Progress


@dataclass(frozen=True)
class Limits:
    """Concurrent migrations: the [migrator] limit settings (declared in the metadata, see
    migrator.model.MigrationOptions) and the per-host overrides from [[hosts]]."""

    max_outgoing_per_host: int = field(default=2, metadata={"section": "migrator", "ge": 1})
    max_incoming_per_host: int = field(default=2, metadata={"section": "migrator", "ge": 1})
    max_cluster: int = field(default=8, metadata={"section": "migrator", "ge": 1})
    outgoing_overrides: Mapping[str, int] = field(default_factory=dict)
    incoming_overrides: Mapping[str, int] = field(default_factory=dict)

    def outgoing(self, host: str) -> int:
        return self.outgoing_overrides.get(host, self.max_outgoing_per_host)

    def incoming(self, host: str) -> int:
        return self.incoming_overrides.get(host, self.max_incoming_per_host)


class Blocker(enum.StrEnum):
    """Why a queued job is not admitted now (typed, as the descheduler does)."""

    CLUSTER_LIMIT = "cluster_limit"
    OUTGOING_LIMIT = "outgoing_limit"
    INCOMING_LIMIT = "incoming_limit"
    VM_BUSY = "vm_busy"  # an earlier job for the same VM is queued or running


@dataclass(frozen=True)
class Decision:
    admitted: Job | None
    blocked: tuple[tuple[int, Blocker], ...] = ()


def choose(queued: Sequence[Job], running: Iterable[Job], limits: Limits,
           candidates: Collection[int] | None = None) -> Decision:
    """The oldest queued job (among `candidates`, if given) that fits every limit.

    `queued` must be in queue order (oldest first) and hold every queued job, so that a
    VM's later job never overtakes its earlier one.
    """
    running = list(running)
    outgoing = Counter(j.source for j in running)
    incoming = Counter(j.destination for j in running)
    busy_vms = {j.vm_name for j in running}
    blocked: list[tuple[int, Blocker]] = []
    for job in queued:
        blocker = _blocker(job, len(running), outgoing, incoming, busy_vms, limits)
        busy_vms.add(job.vm_name)
        if candidates is not None and job.id not in candidates:
            continue
        if blocker is None:
            return Decision(job, tuple(blocked))
        blocked.append((job.id, blocker))
    return Decision(None, tuple(blocked))


def _blocker(job: Job, n_running: int, outgoing: Counter[str], incoming: Counter[str],
             busy_vms: set[str], limits: Limits) -> Blocker | None:
    if job.vm_name in busy_vms:
        return Blocker.VM_BUSY
    if n_running >= limits.max_cluster:
        return Blocker.CLUSTER_LIMIT
    if outgoing[job.source] >= limits.outgoing(job.source):
        return Blocker.OUTGOING_LIMIT
    if incoming[job.destination] >= limits.incoming(job.destination):
        return Blocker.INCOMING_LIMIT
    return None


class JobStore(Protocol):
    """Where jobs live; implemented over SQLAlchemy in libvirt_drs/db/jobs.py and in memory in tests."""

    def enqueue(self, moves: Sequence[MoveRequest], owner: str) -> list[Job]: ...

    def admit(self, limits: Limits, owner: str, candidates: Collection[int] | None) -> Decision:
        """Atomically flip the chosen queued job to running (owned by `owner`)."""

    def get(self, job_id: int) -> Job: ...

    def jobs(self, states: Collection[JobState] | None = None,
             limit: int | None = None) -> list[Job]: ...

    def record_progress(self, job_id: int, progress: Progress) -> None: ...

    def adopt(self, job_id: int, owner: str) -> None:
        """Take over a running job left by a dead process (reconcile)."""

    def finish(self, job_id: int, state: JobState, error: str | None,
               stats: CompletedStats) -> Job: ...

    def in_maintenance(self, host: str) -> bool: ...

    def set_host_state(self, host: str, state: str, reason: str | None) -> None: ...

    def audit(self, actor: str, action: str, subject: str, detail: str = "") -> None: ...
