"""Drain a set of queued jobs in order under the limits, with N concurrent workers."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from libvirt_drs.migrator.admission import Blocker, JobStore, Limits
from libvirt_drs.migrator.executor import Executor, ProgressCallback, durably
from libvirt_drs.migrator.model import CompletedStats, Job, JobState, MoveRequest, Outcome

log = logging.getLogger(__name__)

FinishCallback = Callable[[Job, Outcome], None]


def process_owner() -> str:
    """How job rows name this process: `hostname:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Shared:
    pending: set[int]
    outcomes: dict[int, Outcome]
    lock: threading.Lock
    blocked_seen: set[tuple[int, Blocker]]


class Runner:
    def __init__(self, store: JobStore, executor: Executor, limits: Limits, owner: str,
                 workers: int | None = None, poll_interval_s: float = 0.2,
                 actor: str = "migrator") -> None:
        self.store, self.executor, self.limits = store, executor, limits
        self.owner, self.actor = owner, actor
        self.workers = workers or limits.max_cluster
        self.poll_interval_s = poll_interval_s

    def submit(self, moves: Sequence[MoveRequest]) -> list[Job]:
        jobs = self.store.enqueue(moves, self.owner)
        for job in jobs:
            self.store.audit(self.actor, "migration.queued", job.vm_name,
                             f"job {job.id}: {job.source} -> {job.destination}")
        return jobs

    def run(self, job_ids: Sequence[int], on_progress: ProgressCallback | None = None,
            on_finish: FinishCallback | None = None) -> dict[int, Outcome]:
        """Run `job_ids` (queued) to their end; returns each job's outcome."""
        shared = _Shared(set(job_ids), {}, threading.Lock(), set())
        threads = [threading.Thread(target=self._work, args=(shared, on_progress, on_finish),
                                    name=f"migrator-worker-{i}", daemon=True)
                   for i in range(min(self.workers, len(job_ids)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return shared.outcomes

    def _work(self, shared: _Shared, on_progress: ProgressCallback | None,
              on_finish: FinishCallback | None) -> None:
        wake = threading.Event()
        while True:
            with shared.lock:
                candidates = set(shared.pending)
            if not candidates:
                return
            decision = self.store.admit(self.limits, self.owner, candidates)
            job = decision.admitted
            if job is None:
                self._note_blocked(shared, decision.blocked)
                if self._drop_not_queued(shared, candidates):
                    continue
                wake.wait(self.poll_interval_s)
                continue
            with shared.lock:
                shared.pending.discard(job.id)
            self.store.audit(self.actor, "migration.admitted", job.vm_name,
                             f"job {job.id}: {job.source} -> {job.destination}")
            outcome = self._execute(job, on_progress)
            with shared.lock:
                shared.outcomes[job.id] = outcome
            if on_finish is not None:
                on_finish(self.store.get(job.id), outcome)

    def _execute(self, job: Job, on_progress: ProgressCallback | None) -> Outcome:
        """Run one job; a bug below must not leave its row `running` with a live owner."""
        try:
            return self.executor.run(job, on_progress)
        except Exception as exc:
            log.exception("job %s (%s) crashed", job.id, job.vm_name)
            outcome = Outcome(JobState.FAILED, f"internal error: {exc!r}")
            durably(f"job {job.id}: recording the crash",
                    lambda: self.store.finish(job.id, outcome.state, outcome.error,
                                              CompletedStats()),
                    clock=self.executor.clock, sleep=self.executor.sleep)
            return outcome

    def _drop_not_queued(self, shared: _Shared, candidates: set[int]) -> bool:
        """Forget candidates that left the queue by other means (e.g. reconciled)."""
        gone = [i for i in candidates if self.store.get(i).state is not JobState.QUEUED]
        with shared.lock:
            for job_id in gone:
                if job_id in shared.pending:
                    shared.pending.discard(job_id)
                    job = self.store.get(job_id)
                    shared.outcomes[job_id] = Outcome(job.state, job.error)
        return bool(gone)

    def _note_blocked(self, shared: _Shared, blocked: Sequence[tuple[int, Blocker]]) -> None:
        for item in blocked:
            with shared.lock:
                if item in shared.blocked_seen:
                    continue
                shared.blocked_seen.add(item)
            self.store.audit(self.actor, "migration.waiting", f"job {item[0]}", str(item[1]))
