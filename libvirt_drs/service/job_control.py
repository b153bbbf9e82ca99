"""The service's control of its migrations: run a plan's moves, and stop them on shutdown.

`ServiceMigrations` is both the JobControl the migrator's Executor asks (it refuses to
start a migration once the service is stopping: the job ends `aborted`, the VM never left
its host; it asks running ones to abort when the grace period is over: libvirt abortJob
on the source, then the executor's usual failure path checks the VM still runs on the
source and removes any leftover on the destination) and the shutdown.MigrationControl
that graceful_stop() drives. Admission, limits, pre- and post-checks stay the migrator's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from libvirt_drs.migrator.admission import JobStore
from libvirt_drs.migrator.hypervisor import Clock
from libvirt_drs.migrator.model import CompletedStats, Job, JobState, MoveRequest, Outcome
from libvirt_drs.migrator.runner import Runner

NOT_STARTED = "not started: drs serve is shutting down"


class ServiceMigrations:
    """Tracks this process's migrations; a migrator.control.JobControl and a
    shutdown.MigrationControl."""

    def __init__(self, store: JobStore, owner: str, monotonic: Clock = time.monotonic) -> None:
        self.store = store
        self.owner = owner
        self._monotonic = monotonic
        self._stopping = threading.Event()
        self._abort_reason: str | None = None
        self._running: dict[int, Job] = {}
        self._cond = threading.Condition()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # --- JobControl (asked by the executor) ----------------------------------

    def start(self, job: Job) -> str | None:
        with self._cond:
            if self.stopping:
                return NOT_STARTED
            self._running[job.id] = job
        return None

    def abort_reason(self, job: Job) -> str | None:
        return self._abort_reason

    def finished(self, job: Job) -> None:
        with self._cond:
            self._running.pop(job.id, None)
            self._cond.notify_all()

    # --- MigrationControl (driven by graceful_stop) --------------------------

    def running_jobs(self) -> list[Job]:
        with self._cond:
            return list(self._running.values())

    def running_count(self) -> int:
        with self._cond:
            return len(self._running)

    def stop_admitting(self) -> None:
        self._stopping.set()
        for job in self.store.jobs([JobState.QUEUED]):
            if job.owner == self.owner:
                self.store.finish(job.id, JobState.ABORTED, NOT_STARTED, CompletedStats())
                self.store.audit("service", "migration.aborted", job.vm_name,
                                 f"job {job.id}: {NOT_STARTED}")

    def abort_running(self, reason: str) -> int:
        self._abort_reason = reason
        return self.running_count()

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = self._monotonic() + timeout_s
        with self._cond:
            while self._running:
                left = deadline - self._monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


def run_moves(runner: Runner, control: ServiceMigrations, moves: Sequence[MoveRequest],
              on_finish: Callable[[Job, Outcome], None] | None = None) -> dict[str, Outcome]:
    """Queue `moves` and run them to their end under the limits; returns each VM's outcome
    (nothing if the service is stopping)."""
    if control.stopping or not moves:
        return {}
    jobs = runner.submit(moves)
    outcomes = runner.run([j.id for j in jobs], on_finish=on_finish)
    return {j.vm_name: outcomes[j.id] for j in jobs if j.id in outcomes}
