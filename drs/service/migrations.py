"""The service's side of the migrator: run a plan's moves, and stop them on shutdown.

`ServiceMigrations` is the MigrationControl that graceful_stop() drives. It hands the
migrator's Runner an executor that refuses to start a migration once the service is
stopping (the job ends `aborted`, the VM never left its host) and aborts running ones
when the grace period is over (libvirt abortJob on the source; the executor's usual
failure path then checks the VM still runs on the source and removes any leftover on
the destination). Admission, limits, pre- and post-checks stay the migrator's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from migrator.admission import JobStore
from migrator.executor import Executor, ProgressCallback, _Watch
from migrator.hypervisor import HypervisorError
from migrator.model import CompletedStats, Job, JobState, MigrationOptions, MoveRequest, Outcome
from migrator.runner import Runner

log = logging.getLogger(__name__)

NOT_STARTED = "not started: drs serve is shutting down"


class ServiceMigrations:
    """Tracks this process's migrations; implements shutdown.MigrationControl."""

    def __init__(self, store: JobStore, owner: str) -> None:
        self.store = store
        self.owner = owner
        self._stopping = threading.Event()
        self._abort_reason: str | None = None
        self._running: dict[int, Job] = {}
        self._cond = threading.Condition()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def abort_reason(self) -> str | None:
        return self._abort_reason

    def started(self, job: Job) -> None:
        with self._cond:
            self._running[job.id] = job

    def ended(self, job: Job) -> None:
        with self._cond:
            self._running.pop(job.id, None)
            self._cond.notify_all()

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
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


class ServiceExecutor(Executor):
    """The migrator's Executor, plus: no start while stopping, abort when told to."""

    def __init__(self, *args: object, control: ServiceMigrations, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.control = control

    def run(self, job: Job, on_progress: ProgressCallback | None = None) -> Outcome:
        if self.control.stopping:
            return self._finish(job, Outcome(JobState.ABORTED, NOT_STARTED))
        self.control.started(job)
        try:
            return super().run(job, on_progress)
        finally:
            self.control.ended(job)

    def _maybe_abort(self, job: Job, options: MigrationOptions, watch: _Watch,
                     now: float) -> None:
        reason = self.control.abort_reason
        if reason is None:
            super()._maybe_abort(job, options, watch, now)
            return
        watch.abort_reason = reason
        log.warning("aborting migration of %s (%s -> %s): %s", job.vm_name, job.source,
                    job.destination, reason)
        try:
            self.hv.abort_job(job.source, job.vm_name)
        except HypervisorError as exc:
            # Usually: it completed in the meantime. The post-check tells.
            log.warning("abort of %s on %s failed: %s", job.vm_name, job.source, exc)


def run_moves(runner: Runner, control: ServiceMigrations, moves: Sequence[MoveRequest],
              on_finish: Callable[[Job, Outcome], None] | None = None) -> dict[str, Outcome]:
    """Queue `moves` and run them to their end under the limits; returns each VM's outcome
    (nothing if the service is stopping)."""
    if control.stopping or not moves:
        return {}
    jobs = runner.submit(moves)
    outcomes = runner.run([j.id for j in jobs], on_finish=on_finish)
    return {j.vm_name: outcomes[j.id] for j in jobs if j.id in outcomes}
