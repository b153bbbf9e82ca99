"""The observe job: turn the database's view of the cluster into metrics.

Migrations are observed from the `migration_jobs` table rather than from this process's
own runner, so the leader's metrics cover every migration in the cluster, including
those run by a manual `drs migrate`. Only the leader runs this job, so the counters of
the cluster are never counted twice. Counting starts when this process starts leading:
`drs_migrations_started_total` counts jobs that left the queue (admitted), so at any
time started = sum of finished + running, for jobs seen since then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, or_, select

from libvirt_drs.db.models import Host, MigrationJob
from libvirt_drs.migrator.model import JOB_RESULTS, JobState
from libvirt_drs.service.metrics import DrsMetrics

log = logging.getLogger(__name__)

_RECHECK_S = 300.0  # rows are looked at until this long after they started or finished


@dataclass
class _Seen:
    started: dict[int, float]
    finished: dict[int, float]


class MigrationObserver:
    """Feeds the migration counters, histograms and per-host running gauges."""

    def __init__(self, engine: Engine, metrics: DrsMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.metrics = metrics
        self._clock = clock
        self._since_s: float | None = None
        self._seen = _Seen({}, {})

    def reset(self) -> None:
        """Start counting afresh (on gaining leadership)."""
        self._since_s = None
        self._seen = _Seen({}, {})

    def observe(self) -> None:
        now = self._clock()
        if self._since_s is None:
            self._since_s = now
        since = self._since_s
        window_start = max(since, now - _RECHECK_S)
        with self.engine.connect() as conn:
            hosts = [r[0] for r in conn.execute(select(Host.name))]
            rows = conn.execute(
                select(MigrationJob.id, MigrationJob.state, MigrationJob.source,
                       MigrationJob.destination, MigrationJob.started_s,
                       MigrationJob.finished_s, MigrationJob.total_ms,
                       MigrationJob.downtime_ms, MigrationJob.bytes_processed)
                .where(or_(MigrationJob.state == JobState.RUNNING,
                           MigrationJob.finished_s >= window_start,
                           MigrationJob.started_s >= window_start))).all()
        running: list[tuple[str, str]] = []
        for row in rows:
            if row.state == JobState.RUNNING:
                running.append((row.source, row.destination))
            self._count(row, since, now)
        self.metrics.set_running_migrations(hosts, running)
        self._prune(now, {row.id for row in rows})

    def _count(self, row, since: float, now: float) -> None:  # type: ignore[no-untyped-def]
        m = self.metrics
        admitted = row.state == JobState.RUNNING or (row.state in JOB_RESULTS
                                              and row.started_s is not None)
        if admitted and row.id not in self._seen.started and (row.started_s or now) >= since:
            self._seen.started[row.id] = now
            m.migrations_started.inc()
        if row.state not in JOB_RESULTS or row.id in self._seen.finished:
            return
        if row.finished_s is None or row.finished_s < since:
            return
        self._seen.finished[row.id] = now
        if row.id not in self._seen.started:  # finished between two observations
            self._seen.started[row.id] = now
            if (row.started_s or now) >= since:
                m.migrations_started.inc()
        m.migrations_finished.labels(row.state).inc()
        m.host_migrations.labels(row.source, "outgoing", row.state).inc()
        m.host_migrations.labels(row.destination, "incoming", row.state).inc()
        if row.bytes_processed:
            m.migration_bytes.inc(row.bytes_processed)
        if row.state == JobState.SUCCEEDED:
            if row.total_ms is not None:
                m.migration_duration.observe(row.total_ms / 1000.0)
            if row.downtime_ms is not None:
                m.migration_downtime.observe(row.downtime_ms / 1000.0)

    def _prune(self, now: float, current: set[int]) -> None:
        """Forget ids that the query no longer returns (they can never be counted again)."""
        for seen in (self._seen.started, self._seen.finished):
            for job_id in [i for i, t in seen.items()
                           if i not in current and now - t > 2 * _RECHECK_S]:
                del seen[job_id]
