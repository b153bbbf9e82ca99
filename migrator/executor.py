"""One migration job from pre-checks to post-checks.

The libvirt migrate call blocks, so it runs in a worker thread while this thread polls
the source's job statistics into the job row, aborts on timeout or stall, switches to
post-copy when configured, and finally verifies where the VM runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from libvirt_drs.libvirt_errors import first_line
from libvirt_drs.migrator.admission import JobStore
from libvirt_drs.migrator.control import UNRESTRICTED, JobControl
from libvirt_drs.migrator.hypervisor import Clock, DomainRunState, Hypervisor, HypervisorError
from libvirt_drs.migrator.model import Job, JobState, MigrationOptions, Outcome, Progress
from libvirt_drs.migrator.prechecks import CheckInput, first_failure, run_checks

log = logging.getLogger(__name__)

ProgressCallback = Callable[[Job, Progress], None]


@dataclass
class _Watch:
    """Monitor state of one running migration."""

    started_s: float
    last_progress_s: float
    best_processed: int = -1
    abort_reason: str | None = None
    postcopy: bool = False


class _MigrateThread(threading.Thread):
    def __init__(self, hv: Hypervisor, job: Job, options: MigrationOptions) -> None:
        super().__init__(name=f"migrate-{job.vm_name}", daemon=True)
        self.hv, self.job, self.options = hv, job, options
        self.error: HypervisorError | None = None
        self.crash: Exception | None = None

    def run(self) -> None:
        try:
            self.hv.migrate(self.job.source, self.job.destination, self.job.vm_name, self.options)
        except HypervisorError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - re-raised in the monitoring thread
            self.crash = exc


class Executor:
    """Runs admitted jobs; `control` (injected) may refuse a start or abort a migration."""

    def __init__(self, hv: Hypervisor, store: JobStore, options: MigrationOptions,
                 actor: str = "migrator", clock: Clock = time.monotonic,
                 mem_reserve_mib: int = 0, control: JobControl = UNRESTRICTED,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.hv, self.store, self.options, self.actor = hv, store, options, actor
        self.clock, self.sleep = clock, sleep
        self.mem_reserve_mib = mem_reserve_mib
        self.control = control

    def run(self, job: Job, on_progress: ProgressCallback | None = None) -> Outcome:
        """Run an admitted (`running`) job to its end and record the outcome."""
        refused = self.control.start(job)
        if refused is not None:
            return self._finish(job, Outcome(JobState.ABORTED, refused))
        try:
            return self._run(job, on_progress)
        finally:
            self.control.finished(job)

    def _run(self, job: Job, on_progress: ProgressCallback | None) -> Outcome:
        copy_storage = job.copy_storage or self.options.copy_storage
        req = CheckInput(job.vm_name, job.source, job.destination, copy_storage,
                         self.store.in_maintenance(job.destination), self.mem_reserve_mib)
        results, dom = run_checks(self.hv, req)
        failure = first_failure(results)
        if failure is not None:
            assert failure.reason is not None
            return self._finish(job, Outcome(JobState.SKIPPED,
                                             f"{failure.reason}: {failure.detail}"))
        assert dom is not None
        options = _with_copy_storage(self.options, copy_storage)
        if copy_storage:
            try:
                self.hv.prepare_storage(job.destination, dom.disks)
            except HypervisorError as exc:
                return self._finish(job, Outcome(JobState.FAILED, f"preparing storage: {exc}"))
        self.store.audit(self.actor, "migration.start", job.vm_name,
                         f"job {job.id}: {job.source} -> {job.destination}"
                         f"{' (copy-storage)' if copy_storage else ''}")
        return self._finish(job, self.migrate_and_watch(job, options, on_progress))

    def migrate_and_watch(self, job: Job, options: MigrationOptions,
                          on_progress: ProgressCallback | None = None) -> Outcome:
        worker = _MigrateThread(self.hv, job, options)
        worker.start()
        watch = self.watch(job, options, worker.is_alive, on_progress)
        worker.join()
        if worker.crash is not None:
            raise worker.crash
        if worker.error is None:
            return self.post_check(job)
        return self.failure_outcome(job, worker.error, watch.abort_reason)

    def watch(self, job: Job, options: MigrationOptions, alive: Callable[[], bool],
              on_progress: ProgressCallback | None = None) -> _Watch:
        """Poll job statistics while `alive()`; abort on timeout or stall."""
        now = self.clock()
        watch = _Watch(started_s=now, last_progress_s=now)
        while alive():
            self.sleep(options.poll_interval_s)
            progress = self._poll(job)
            now = self.clock()
            if progress is not None:
                try:
                    self.store.record_progress(job.id, progress)
                except Exception as exc:  # noqa: BLE001 - progress rows are best effort
                    log.warning("job %s: cannot record progress (%s); migration goes on",
                                job.id, first_line(exc))
                if on_progress is not None:
                    on_progress(job, progress)
                if progress.bytes_processed > watch.best_processed:
                    watch.best_processed = progress.bytes_processed
                    watch.last_progress_s = now
                self._maybe_postcopy(job, options, progress, watch)
            if watch.abort_reason is None and not watch.postcopy and alive():
                self._maybe_abort(job, options, watch, now)
        return watch

    def _poll(self, job: Job) -> Progress | None:
        try:
            return self.hv.job_progress(job.source, job.vm_name)
        except HypervisorError as exc:
            log.debug("job stats of %s on %s: %s", job.vm_name, job.source, exc)
            return None

    def _maybe_postcopy(self, job: Job, options: MigrationOptions, progress: Progress,
                        watch: _Watch) -> None:
        after = options.postcopy_after_iterations
        if watch.postcopy or after <= 0 or progress.iteration < after:
            return
        try:
            self.hv.start_postcopy(job.source, job.vm_name)
        except HypervisorError as exc:
            log.warning("post-copy switch of %s failed: %s", job.vm_name, exc)
            return
        watch.postcopy = True
        self.store.audit(self.actor, "migration.postcopy", job.vm_name,
                         f"job {job.id}: switched to post-copy at iteration {progress.iteration}")

    def _maybe_abort(self, job: Job, options: MigrationOptions, watch: _Watch, now: float) -> None:
        watch.abort_reason = self.control.abort_reason(job) or _over_limit(options, watch, now)
        if watch.abort_reason is None:
            return
        log.warning("aborting migration of %s (%s -> %s): %s", job.vm_name, job.source,
                    job.destination, watch.abort_reason)
        try:
            self.hv.abort_job(job.source, job.vm_name)
        except HypervisorError as exc:
            # Usually: it completed in the meantime. The post-check tells.
            log.warning("abort of %s on %s failed: %s", job.vm_name, job.source, exc)

    def post_check(self, job: Job) -> Outcome:
        """After libvirt reported success: running on the destination, gone from the source."""
        try:
            there = self.hv.domain(job.destination, job.vm_name)
            here = self.hv.domain(job.source, job.vm_name)
            stats = self.hv.completed_stats(job.destination, job.vm_name)
        except HypervisorError as exc:
            return Outcome(JobState.FAILED, f"post-check: {exc}")
        if there is None or there.state is not DomainRunState.RUNNING:
            state = "absent" if there is None else str(there.state)
            return Outcome(JobState.FAILED, f"post-check: {job.vm_name} is {state} on "
                                            f"{job.destination}", stats)
        if here is not None:
            return Outcome(JobState.FAILED, f"post-check: {job.vm_name} still defined on "
                                            f"{job.source} ({here.state})", stats)
        return Outcome(JobState.SUCCEEDED, None, stats)

    def failure_outcome(self, job: Job, error: HypervisorError,
                        abort_reason: str | None) -> Outcome:
        """libvirt failed: make sure the VM still runs on the source and nothing is left behind."""
        state = JobState.ABORTED if abort_reason else JobState.FAILED
        message = f"{abort_reason}; libvirt: {error}" if abort_reason else str(error)
        try:
            here = self.hv.domain(job.source, job.vm_name)
        except HypervisorError as exc:
            return Outcome(state, f"{message}; source {job.source} unreachable after: {exc}")
        if here is None or here.state is not DomainRunState.RUNNING:
            where = "absent" if here is None else str(here.state)
            return Outcome(state, f"{message}; WARNING: {job.vm_name} is {where} on {job.source}")
        try:
            if self.hv.remove_leftover(job.destination, job.vm_name):
                message += f"; removed the leftover domain on {job.destination}"
        except HypervisorError as exc:
            message += f"; cannot check {job.destination} for a leftover domain ({exc})"
        return Outcome(state, message)

    def _finish(self, job: Job, outcome: Outcome) -> Outcome:
        durably(f"job {job.id}: recording {outcome.state}",
                lambda: self.store.finish(job.id, outcome.state, outcome.error, outcome.stats),
                clock=self.clock, sleep=self.sleep)
        try:
            self.store.audit(self.actor, f"migration.{outcome.state}", job.vm_name,
                             f"job {job.id}: {job.source} -> {job.destination}"
                             + (f": {outcome.error}" if outcome.error else
                                f": downtime {outcome.stats.downtime_ms} ms, "
                                f"total {outcome.stats.total_ms} ms"))
        except Exception as exc:  # noqa: BLE001 - the job row is what matters
            log.warning("job %s: cannot write the audit event (%s)", job.id, first_line(exc))
        log.info("job %s %s -> %s of %s: %s %s", job.id, job.source, job.destination,
                 job.vm_name, outcome.state, outcome.error or "")
        return outcome


def _over_limit(options: MigrationOptions, watch: _Watch, now: float) -> str | None:
    if now - watch.started_s > options.timeout_s:
        return f"timeout: not finished after {options.timeout_s:g} s"
    if now - watch.last_progress_s > options.stall_timeout_s:
        return f"stalled: no progress for {options.stall_timeout_s:g} s"
    return None


def _with_copy_storage(options: MigrationOptions, copy_storage: bool) -> MigrationOptions:
    if options.copy_storage == copy_storage:
        return options
    return replace(options, copy_storage=copy_storage)


FINISH_RETRY_S = 600.0  # how long a finished job keeps trying to reach the job store


def durably(what: str, call: Callable[[], object], budget_s: float = FINISH_RETRY_S,
            clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Run a job-store write, retrying with backoff while the store is unreachable (a
    database restart): a finished migration must not leave its row `running`, which would
    hold its hosts' migration slots until the next start."""
    delay_s = 0.5
    deadline = clock() + budget_s
    while True:
        try:
            call()
            return
        except Exception as exc:  # noqa: BLE001 - the store's errors are its own types
            if clock() >= deadline:
                raise
            log.warning("%s: job store unavailable (%s); retrying in %.1f s", what,
                        first_line(exc), delay_s)
            sleep(delay_s)
            delay_s = min(delay_s * 2, 10.0)
