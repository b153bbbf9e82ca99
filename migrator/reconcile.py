"""Crash safety: settle jobs left `running` (or `queued`) by a process that died.

For each such job, libvirt is asked where the VM is: a migration still in progress is
monitored again to its end; otherwise the job becomes `succeeded` (the VM runs on the
destination only) or `failed` (it runs on the source; any leftover on the destination
is removed). Nothing here ever starts or stops a running VM.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from libvirt_drs.migrator.admission import JobStore
from libvirt_drs.migrator.executor import Executor
from libvirt_drs.migrator.hypervisor import DomainInfo, DomainRunState, Hypervisor, HypervisorError
from libvirt_drs.migrator.model import CompletedStats, Job, JobState, Outcome

log = logging.getLogger(__name__)

STALE_OWNER_S = 120.0  # a job of another machine's process without updates for this long


def owner_alive(owner: str | None, updated_s: float | None, now_s: float) -> bool:
    """Whether the process named `host:pid` still runs (or, remote, updated recently)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return updated_s is not None and now_s - updated_s < STALE_OWNER_S
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Reconciled:
    job_id: int
    vm_name: str
    state: JobState
    detail: str


class Reconciler:
    def __init__(self, store: JobStore, hv: Hypervisor, executor: Executor, owner: str,
                 is_alive: Callable[[str | None, float | None, float], bool] = owner_alive,
                 clock: Callable[[], float] = time.time, actor: str = "migrator") -> None:
        self.store, self.hv, self.executor, self.owner = store, hv, executor, owner
        self.is_alive, self.clock, self.actor = is_alive, clock, actor

    def run(self) -> list[Reconciled]:
        done: list[Reconciled] = []
        now = self.clock()
        for job in self.store.jobs([JobState.QUEUED, JobState.RUNNING]):
            if job.owner == self.owner or self.is_alive(job.owner, job.updated_s, now):
                continue
            self.store.adopt(job.id, self.owner)
            if job.state is JobState.QUEUED:
                outcome = Outcome(JobState.ABORTED,
                                  f"queued by {job.owner}, which exited before it started")
            else:
                outcome = self.settle(job)
            self.store.finish(job.id, outcome.state, outcome.error, outcome.stats)
            self.store.audit(self.actor, "migration.reconciled", job.vm_name,
                             f"job {job.id} of {job.owner}: {outcome.state}"
                             + (f": {outcome.error}" if outcome.error else ""))
            done.append(Reconciled(job.id, job.vm_name, outcome.state, outcome.error or ""))
        return done

    def settle(self, job: Job) -> Outcome:
        try:
            here = self.hv.domain(job.source, job.vm_name)
        except HypervisorError as exc:
            return Outcome(JobState.FAILED, f"interrupted; source {job.source} unreachable: {exc}")
        if here is not None and here.job_active:
            log.info("job %s: migration of %s still running, monitoring it again", job.id,
                     job.vm_name)
            self.executor.watch(job, self.executor.options, lambda: self._active(job))
        return self.classify(job)

    def _active(self, job: Job) -> bool:
        try:
            return self.hv.job_progress(job.source, job.vm_name) is not None
        except HypervisorError:
            return False

    def classify(self, job: Job) -> Outcome:
        """Decide the job's end from where libvirt says the VM runs now."""
        try:
            here = self.hv.domain(job.source, job.vm_name)
            there = self.hv.domain(job.destination, job.vm_name)
        except HypervisorError as exc:
            return Outcome(JobState.FAILED, f"interrupted; cannot reach a host: {exc}")
        on_source, on_dest = _running(here), _running(there)
        if on_dest and not on_source:
            return Outcome(JobState.SUCCEEDED, None, self._stats(job))
        if on_source and on_dest:
            return Outcome(JobState.FAILED,
                           f"interrupted; {job.vm_name} reported running on both {job.source} "
                           f"and {job.destination}: needs an operator")
        if on_source:
            detail = (f"interrupted (owner {job.owner} died); {job.vm_name} still runs on "
                      f"{job.source}")
            try:
                if self.hv.remove_leftover(job.destination, job.vm_name):
                    detail += f"; removed the leftover domain on {job.destination}"
            except HypervisorError as exc:
                detail += f"; cannot check {job.destination} for a leftover: {exc}"
            return Outcome(JobState.FAILED, detail)
        return Outcome(JobState.FAILED, f"interrupted; {job.vm_name} is running on neither "
                                        f"{job.source} nor {job.destination}")

    def _stats(self, job: Job) -> CompletedStats:
        try:
            return self.hv.completed_stats(job.destination, job.vm_name)
        except HypervisorError:
            return CompletedStats()


def _running(dom: DomainInfo | None) -> bool:
    return dom is not None and dom.state is DomainRunState.RUNNING
