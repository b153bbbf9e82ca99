"""`drs serve`: wire the collect, balance, retention and observe jobs, the leader lock,
the metrics server and the shutdown sequence into one process.

Which jobs a process runs:
- default: every job, but only while it holds the leader lock; a second process on the
  same database stands by (its /metrics shows drs_leader 0) and takes over.
- `--collect-shard I/N`: the collect job runs regardless of leadership, over the hosts
  whose stable hash (CRC-32 of the name) mod N is I; balance, observe and retention
  still need the lock. Several such processes split collection between them.
- `--no-balance`: never contends for the lock (a collector-only process).
- `--no-collect`: never collects (a balancer-only process beside shard collectors).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from libvirt_drs.collect import CollectJob, summary_line
from libvirt_drs.config import Config, HostConfig
from libvirt_drs.db.jobs import SqlJobStore
from libvirt_drs.db.retention import apply_retention
from libvirt_drs.db.snapshot import load_snapshot
from libvirt_drs.errors import UserError
from libvirt_drs.migrator.hypervisor import Hypervisor
from libvirt_drs.migrator.runner import process_owner
from libvirt_drs.migrator_builder import build
from libvirt_drs.operations.planning import balancing_window, move_requests
from libvirt_drs.policy import policy_from_config
from libvirt_drs.service.balance import ACTOR, BalanceJob, Round, cluster_loads, publish_loads
from libvirt_drs.service.job_control import ServiceMigrations
from libvirt_drs.service.leader import LeaderLock, NeverLeader, make_leader_lock
from libvirt_drs.service.metrics import DrsMetrics, MetricsServer
from libvirt_drs.service.observe import MigrationObserver
from libvirt_drs.service.scheduler import JobSpec, ServiceScheduler
from libvirt_drs.service.shutdown import ShutdownReport, StopSignal, graceful_stop

if TYPE_CHECKING:
    from libvirt_drs.ha.job import HaJob
    from libvirt_drs.web.server import WebServer

log = logging.getLogger("libvirt_drs.serve")
DAY_S = 86400.0
REPLICATE_POLL_S = 2.0  # how often the leader looks for protected VMs whose point is due


@dataclass(frozen=True)
class ServeOptions:
    """Command-line overrides of the config; None = the config's value."""

    mode: str | None = None
    collect_interval_s: float | None = None
    balance_interval_s: float | None = None
    retention_interval_s: float | None = None
    observe_interval_s: float = 5.0
    lease_s: float | None = None
    shutdown_grace_s: float | None = None
    metrics_listen: str | None = None
    shard: tuple[int, int] | None = None  # (index, count)
    balance: bool = True
    collect: bool = True
    first_balance_delay_s: float | None = None
    web_listen: str | None = None  # the console and API; "" = not served


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N."""
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise UserError(f"--collect-shard {text!r}: expected I/N with 0 <= I < N, such as 0/2")
    return int(index), int(count)


def shard_of(host_name: str, count: int) -> int:
    """Stable across processes and releases (Python's hash() is salted per process)."""
    return zlib.crc32(host_name.encode()) % count


def shard_hosts(hosts: tuple[HostConfig, ...], shard: tuple[int, int] | None
                ) -> tuple[HostConfig, ...]:
    if shard is None:
        return hosts
    return tuple(h for h in hosts if shard_of(h.name, shard[1]) == shard[0])


def effective_config(cfg: Config, opts: ServeOptions) -> Config:
    """The config with the command-line overrides applied."""
    balancer = dataclasses.replace(
        cfg.balancer, mode=opts.mode or cfg.balancer.mode,
        interval_s=opts.balance_interval_s or cfg.balancer.interval_s)
    collector = dataclasses.replace(
        cfg.collector, interval_s=opts.collect_interval_s or cfg.collector.interval_s)
    service = dataclasses.replace(
        cfg.service,
        retention_interval_s=opts.retention_interval_s or cfg.service.retention_interval_s,
        lease_s=opts.lease_s or cfg.service.lease_s,
        shutdown_grace_s=(cfg.service.shutdown_grace_s if opts.shutdown_grace_s is None
                          else opts.shutdown_grace_s),
        metrics_listen=opts.metrics_listen or cfg.service.metrics_listen)
    web = cfg.web if opts.web_listen is None else dataclasses.replace(cfg.web, listen=opts.web_listen)
    return dataclasses.replace(cfg, balancer=balancer, collector=collector, service=service,
                               web=web)


class Service:
    """Everything one `drs serve` process runs; parts are injectable for tests."""

    def __init__(self, cfg: Config, engine: Engine, opts: ServeOptions = ServeOptions(),
                 metrics: DrsMetrics | None = None, leader: LeaderLock | None = None,
                 hv: Hypervisor | None = None, collect_job: CollectJob | None = None,
                 on_round: Callable[[Round], None] | None = None) -> None:
        self.cfg = cfg = effective_config(cfg, opts)
        self.opts = opts
        self.engine = engine
        self.metrics = metrics or DrsMetrics()
        self.owner = process_owner()
        self.store = SqlJobStore(engine)
        self.migrations = ServiceMigrations(self.store, self.owner)
        # the one migrator builder (checks the schema version first)
        self.migrator = build(cfg, engine, hv, actor=ACTOR, owner=self.owner, store=self.store,
                              control=self.migrations)
        self.hv, self.runner = self.migrator.hv, self.migrator.runner
        self.leader: LeaderLock = leader or (
            make_leader_lock(engine, cfg.service.lease_s, self.owner) if opts.balance
            else NeverLeader(self.owner))
        self.policy = policy_from_config(cfg)
        collect_hosts = shard_hosts(cfg.hosts, opts.shard) if opts.collect else ()
        if opts.shard is not None:
            log.info("collect shard %d/%d: %s", *opts.shard,
                     ", ".join(h.name for h in collect_hosts) or "no host (nothing to collect)")
        self.collect_job = collect_job or (
            CollectJob(dataclasses.replace(cfg, hosts=collect_hosts), engine)
            if collect_hosts else None)
        self.observer = MigrationObserver(engine, self.metrics)
        self.balance = BalanceJob(
            engine, lambda: load_snapshot(engine, cfg), self.policy, cfg.balancer.mode,
            self.metrics, self.migrations, self.runner, is_leader=lambda: self.leader.is_leader,
            settle_timeout_s=3 * cfg.collector.interval_s + cfg.collector.timeout_s,
            on_round=on_round,
            move_requests=lambda moves, plan_id: move_requests(cfg, moves, plan_id),
            window=lambda now_s: balancing_window(cfg, now_s))
        self.ha = self._ha_job() if cfg.ha.enabled else None
        self._reconcile_pending = True
        self._last_loads_s = 0.0
        self.scheduler = ServiceScheduler(self._jobs(), self.metrics,
                                          is_leader=lambda: self.leader.is_leader)
        self.stop_signal = StopSignal()
        self._leader_stop = threading.Event()  # leadership is kept until shutdown is done
        self._leader_thread = threading.Thread(target=self._keep_leadership, name="drs-leader",
                                               daemon=True)
        self.server: MetricsServer | None = None
        self.web: WebServer | None = None

    # --- jobs ----------------------------------------------------------------

    def _jobs(self) -> list[JobSpec]:
        c = self.cfg
        jobs = []
        if self.collect_job is not None:
            # a shard (or a collector-only process) collects whether it leads or not
            jobs.append(JobSpec("collect", self.collect, c.collector.interval_s,
                                leader_only=self.opts.shard is None and self.opts.balance))
        if self.opts.balance:
            first = self.opts.first_balance_delay_s
            if first is None:  # let the collector gather a few CPU rates first
                first = min(c.balancer.interval_s, 3 * c.collector.interval_s)
            jobs += [
                JobSpec("balance", self.balance_round, c.balancer.interval_s, first_delay_s=first),
                JobSpec("observe", self.observe, self.opts.observe_interval_s),
                JobSpec("retention", self.retention, c.service.retention_interval_s,
                        first_delay_s=min(60.0, c.service.retention_interval_s)),
            ]
            if self.ha is not None:  # the leader watches the hosts each collector interval
                jobs.append(JobSpec("ha", self.ha, c.collector.interval_s))
            if c.replication.enabled and c.replication.policies:
                jobs.append(JobSpec("replicate", self.replicate, REPLICATE_POLL_S))
        return jobs

    def _ha_job(self) -> HaJob:
        from libvirt_drs.ha.fence import CommandFencer  # noqa: PLC0415
        from libvirt_drs.ha.job import HaJob  # noqa: PLC0415

        fencer = CommandFencer({h.name: h.fence_command for h in self.cfg.hosts},
                               self.cfg.ha.fence_timeout_s)
        return HaJob(self.cfg, self.engine, self.migrator.hv, fencer, self.metrics)

    def collect(self) -> None:
        assert self.collect_job is not None
        outcome = self.collect_job.run_cycle()
        r = outcome.result
        self.metrics.collector_cycle.observe(r.duration_ms / 1000.0 + outcome.write_ms / 1000.0)
        self.metrics.collector_stale_hosts.set(len(r.stale_hosts))
        self.metrics.collector_last_cycle.set(time.time())
        log.info("%s", summary_line(outcome))

    def balance_round(self) -> None:
        if self._reconcile_pending:
            self.reconcile()
        self.balance()

    def _publish_replication(self) -> None:
        from libvirt_drs.operations import replication as ops  # noqa: PLC0415
        from libvirt_drs.operations.caller import SERVICE  # noqa: PLC0415
        from libvirt_drs.operations.context import Cluster  # noqa: PLC0415

        rows = ops.status(Cluster(self.cfg, self.engine, actor=ACTOR), SERVICE)
        self.metrics.record_replication({(r.vm, r.policy): r.age_s for r in rows},
                                        {(r.vm, r.policy): r.rpo_s for r in rows})

    def reconcile(self) -> None:
        """Settle jobs a dead process left running (e.g. the previous leader)."""
        for r in self.migrator.reconcile():
            log.warning("reconciled job %d of %s: %s %s", r.job_id, r.vm_name, r.state, r.detail)
        self._reconcile_pending = False

    def observe(self) -> None:
        self.observer.observe()
        from libvirt_drs.ha.job import publish  # noqa: PLC0415

        publish(self.cfg, self.engine, self.metrics)
        if self.cfg.replication.policies:
            self._publish_replication()
        now = time.monotonic()
        # a snapshot reads the demand window of every VM: once per collect cycle is enough
        if now - self._last_loads_s >= self.cfg.collector.interval_s:
            self._last_loads_s = now
            publish_loads(self.metrics, cluster_loads(load_snapshot(self.engine, self.cfg),
                                                      self.policy))

    def replicate(self) -> None:
        """Recovery points of the protected VMs that are due (each every half RPO), the
        same operation as `drs replicate`; a VM that fails is retried later."""
        from libvirt_drs.operations import replication as ops  # noqa: PLC0415
        from libvirt_drs.operations.caller import SERVICE  # noqa: PLC0415
        from libvirt_drs.operations.context import Cluster  # noqa: PLC0415

        cl = Cluster(self.cfg, self.engine, actor=ACTOR, migrator=self.migrator)
        for vm in ops.due(cl, SERVICE):
            if self.stop_signal.event.is_set():
                return
            for outcome in ops.replicate(cl, SERVICE, (vm,)):
                self.metrics.count_replication(outcome.point is not None,
                                               outcome.point.bytes_sent if outcome.point else 0)
                if outcome.point is None:
                    log.warning("replication: %s", outcome.error)

    def retention(self) -> None:
        c = self.cfg.collector
        stats = apply_retention(self.engine, time.time(), c.raw_retention_days * DAY_S,
                                c.rollup_retention_days * DAY_S)
        if stats.raw_deleted or stats.rollups_deleted or stats.vms_deleted:
            log.info("retention: %d buckets rolled up; deleted %d raw samples, %d rollups, "
                     "%d gone VMs", stats.buckets_rolled, stats.raw_deleted,
                     stats.rollups_deleted, stats.vms_deleted)

    # --- leadership ----------------------------------------------------------

    def _keep_leadership(self) -> None:
        was = False
        while not self._leader_stop.is_set():
            try:
                now = self.leader.poll()
            except Exception:  # noqa: BLE001 - this thread must outlive any one failure
                log.exception("leader lock poll failed; standing by")
                now = False
            if now != was:
                self._leadership_changed(now)
                was = now
            self._leader_stop.wait(self.leader.poll_interval_s)

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        self.metrics.leader_changes.inc()
        if leading:
            log.info("leader: %s now leads the cluster's balancer", self.owner)
            self.observer.reset()
            self._reconcile_pending = True
        else:
            log.info("leader: %s stands by", self.owner)
        try:
            self.store.audit(ACTOR, "leader.gained" if leading else "leader.lost", self.owner)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not kill the leader thread
            log.warning("cannot record the leadership change: %s", exc)

    # --- lifecycle -----------------------------------------------------------

    def _release_leadership(self) -> None:
        self._leader_stop.set()
        if self._leader_thread.is_alive():
            self._leader_thread.join(timeout=2)
        self.leader.release()

    def health(self) -> tuple[bool, str]:
        if self.stop_signal.requested:
            return False, "shutting down"
        if not self.scheduler.running:
            return False, "scheduler not running"
        if not self._leader_thread.is_alive():
            return False, "leader thread died"
        return True, "leader" if self.leader.is_leader else "standby"

    def start(self, serve_metrics: bool = True) -> None:
        s = self.cfg.service
        if serve_metrics:
            self.server = MetricsServer(s.metrics_host, s.metrics_port, self.metrics.registry,
                                        self.health).start()
        if self.cfg.web.listen:
            self.web = self._start_web()
        self._leader_thread.start()
        self.scheduler.start()
        log.info("serving: mode %s, collect every %g s (%d hosts), balance every %g s, "
                 "metrics on http://%s:%d/metrics, console on %s", self.cfg.balancer.mode,
                 self.cfg.collector.interval_s,
                 len(self.collect_job.cfg.hosts) if self.collect_job else 0,
                 self.cfg.balancer.interval_s, s.metrics_host,
                 self.server.port if self.server else 0,
                 self.web.url if self.web else "- (web.listen is empty)")

    def _start_web(self) -> WebServer:
        """The console and API: the same operations as the CLI, on this process's migrator
        (its shutdown control aborts their migrations too)."""
        from libvirt_drs.operations.context import Cluster  # noqa: PLC0415
        from libvirt_drs.web.app import create_app  # noqa: PLC0415
        from libvirt_drs.web.server import WebServer  # noqa: PLC0415

        w = self.cfg.web
        cluster = Cluster(self.cfg, self.engine, actor=ACTOR, migrator=self.migrator)
        app = create_app(cluster, session_ttl_s=w.session_ttl_s)
        return WebServer(app, w.host, w.port, w.tls_cert, w.tls_key).start()

    def stop(self) -> ShutdownReport:
        self.stop_signal.set("stop()")
        if self.web is not None:  # no new actions from the console while stopping
            self.web.stop()
        report = graceful_stop(self.scheduler, self.migrations, self.cfg.service.shutdown_grace_s,
                               self._release_leadership)
        self.metrics.leader.set(0)
        if self.collect_job is not None and not self.scheduler.running_jobs():
            self.collect_job.close()
        if self.server is not None:
            self.server.stop()
        close = getattr(self.hv, "close", None)
        if close is not None and not self.migrations.running_count():
            close()
        try:
            self.store.audit(ACTOR, "service.stopped", self.owner,
                             f"in {report.duration_s:.1f} s; {report.aborted} migration(s) "
                             f"aborted, {report.left_running} left running")
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot record the shutdown: %s", exc)
        return report

    def run_until_signal(self) -> ShutdownReport:
        """Serve until SIGTERM or SIGINT, then shut down within the grace period."""
        self.stop_signal.install()
        self.start()
        try:
            self.stop_signal.wait()
        finally:
            log.info("%s: stopping (grace period %.0f s)", self.stop_signal.signal_name,
                     self.cfg.service.shutdown_grace_s)
            report = self.stop()
            self.stop_signal.restore()
        log.info("stopped in %.1f s: %d migration(s) aborted, %d left running",
                 report.duration_s, report.aborted, report.left_running)
        return report

