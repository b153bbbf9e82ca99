"""The periodic jobs of `drs serve` on an APScheduler BackgroundScheduler.

Each job is a plain callable injected through a JobSpec, so the scheduling rules are
tested with fakes: a job never overlaps itself (max_instances=1; a run due while the
previous one still runs is skipped and counted), late runs are coalesced into one, and
a failing run is logged and counted but never stops the schedule: the next run happens
on time. Leader-only jobs return at once on a process that does not lead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from libvirt_drs.service.metrics import DrsMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: Callable[[], object]
    interval_s: float
    leader_only: bool = True
    first_delay_s: float = 0.0  # delay of the first run after start


class ServiceScheduler:
    """Runs JobSpecs on their intervals; `stop()` stops scheduling, running jobs go on."""

    def __init__(self, jobs: Sequence[JobSpec], metrics: DrsMetrics,
                 is_leader: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time) -> None:
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate job names in {names}")
        self.jobs = {j.name: j for j in jobs}
        self.metrics = metrics
        self._is_leader = is_leader
        self._clock = clock
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._idle = threading.Condition(self._lock)
        self.last_error: dict[str, str] = {}
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=len(jobs) + 1)},
            timezone=UTC)
        self._scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        now = datetime.now(UTC)
        for spec in jobs:
            self._scheduler.add_job(
                self._run, IntervalTrigger(seconds=spec.interval_s, timezone=UTC),
                args=(spec,), id=spec.name, name=spec.name,
                next_run_time=now + timedelta(seconds=spec.first_delay_s),
                max_instances=1, coalesce=True,
                # a run late by less than one interval still happens; later ones are skipped
                misfire_grace_time=max(1, int(spec.interval_s)))

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        """Stop scheduling new runs; runs in progress go on (see wait_idle)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def running_jobs(self) -> set[str]:
        with self._lock:
            return set(self._running)

    def wait_idle(self, timeout_s: float, names: Sequence[str] | None = None) -> bool:
        """Wait until none of `names` (default: any job) is running; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._running & set(names or self.jobs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def run_now(self, name: str) -> None:
        """Run one job synchronously in the calling thread, with the same bookkeeping."""
        self._run(self.jobs[name])

    def _run(self, spec: JobSpec) -> None:
        if spec.leader_only and not self._is_leader():
            return
        with self._lock:
            if spec.name in self._running:  # run_now racing a scheduled run
                self.metrics.job_skipped.labels(spec.name).inc()
                return
            self._running.add(spec.name)
        started = time.monotonic()
        try:
            spec.func()
        except Exception as exc:  # noqa: BLE001 - one failing run must not stop the schedule
            self.metrics.job_failures.labels(spec.name).inc()
            self.last_error[spec.name] = f"{exc.__class__.__name__}: {exc}"
            log.exception("job %s failed; next run in %.0f s", spec.name, spec.interval_s)
        else:
            self.metrics.job_last_success.labels(spec.name).set(self._clock())
            self.last_error.pop(spec.name, None)
        finally:
            self.metrics.job_runs.labels(spec.name).inc()
            self.metrics.job_duration.labels(spec.name).observe(time.monotonic() - started)
            with self._idle:
                self._running.discard(spec.name)
                self._idle.notify_all()

    def _on_skipped(self, event: JobEvent) -> None:
        self.metrics.job_skipped.labels(event.job_id).inc()
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("job %s: previous run still going, this run is skipped", event.job_id)
        else:
            log.warning("job %s: run missed its start time, skipped", event.job_id)
