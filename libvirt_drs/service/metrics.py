"""Every Prometheus metric of `drs serve`, in one place, on its own registry.

Names follow the Prometheus conventions: `drs_` prefix, base units in the name
(`_seconds`, `_ratio`), `_total` on counters. Label values are host names, job names
and outcome words only: never VM names (unbounded) and never database URLs.
docs/service.md lists each metric with its meaning; the Grafana dashboards under
deploy/grafana/ are built on these names, so renaming one is a breaking change.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)

from libvirt_drs import __version__
from libvirt_drs.migrator.model import JOB_RESULTS

JOB_NAMES = ("collect", "balance", "retention", "observe", "ha", "replicate")
MOVE_KINDS = ("mandatory", "balancing")
RESOURCES = ("cpu", "memory", "combined")
DIRECTIONS = ("outgoing", "incoming")

# Live migrations on the lab take about a second; on real hosts minutes.
_MIGRATION_BUCKETS_S = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
_DOWNTIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5)
_CYCLE_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_PLANNER_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_JOB_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)
MIB_BYTES = 1024 * 1024

# The client library's `*_created` series (one per counter and histogram child) would
# double the series count and no dashboard or alert reads them.
disable_created_metrics()


class DrsMetrics:
    """The metrics of one `drs serve` process (a fresh registry per instance, for tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.build_info = Gauge("drs_build_info", "Always 1; the version label names the release.",
                                ["version"], registry=r)
        self.build_info.labels(__version__).set(1)

        # cluster state, refreshed by the leader from the database (observe job)
        self.host_cpu_load = Gauge(
            "drs_host_cpu_load_ratio",
            "Host CPU load: VM CPU demand on the host / host CPU capacity (over 1: overcommitted).",
            ["host"], registry=r)
        self.host_memory_load = Gauge(
            "drs_host_memory_load_ratio",
            "Host memory load: VM memory on the host / host memory capacity.", ["host"], registry=r)
        self.host_vms = Gauge("drs_host_vms", "VMs running on the host.", ["host"], registry=r)
        self.host_stale = Gauge("drs_host_stale",
                                "1 if the host's last collection failed or is too old, else 0 "
                                "(a stale host has no load series: its load is unknown).",
                                ["host"], registry=r)
        self.host_maintenance = Gauge("drs_host_maintenance",
                                      "1 if the host is in maintenance (receives no VMs), else 0.",
                                      ["host"], registry=r)
        self.host_cpu_capacity = Gauge("drs_host_cpu_capacity_cores",
                                       "CPU capacity the balancer plans with (cores).", ["host"],
                                       registry=r)
        self.host_memory_capacity = Gauge("drs_host_memory_capacity_bytes",
                                          "Memory capacity the balancer plans with (bytes).",
                                          ["host"], registry=r)
        self.cluster_vms = Gauge("drs_cluster_vms", "VMs known to be running in the cluster.",
                                 registry=r)
        self.cluster_hosts = Gauge("drs_cluster_hosts", "Hosts eligible for placement.", registry=r)
        self.imbalance = Gauge(
            "drs_cluster_imbalance_ratio",
            "Population standard deviation of host load (cpu, memory; combined = weighted root "
            "of the variances).", ["resource"], registry=r)
        self.imbalance_target = Gauge(
            "drs_cluster_imbalance_target_ratio",
            "Target imbalance for the configured aggressiveness: 0.1 * (5 - L) / sqrt(hosts).",
            registry=r)

        self.vm_cpu_wait_max = Gauge(
            "drs_host_vm_cpu_wait_max_ratio",
            "The most any VM on the host waited for a host CPU, as a share of its vCPU time "
            "(run-queue delay, seen by the guest as steal), over the balancer's demand window. "
            "Per-VM figures: drs status (metrics carry no VM names).", ["host"], registry=r)
        self.host_cpu_wait = Gauge(
            "drs_host_cpu_wait_cores",
            "CPU the host's VMs waited for, in cores (demand the host did not serve).",
            ["host"], registry=r)
        self.cpu_served = Gauge(
            "drs_cluster_cpu_served_ratio",
            "CPU the VMs got / CPU they asked for (used + waited); 1 when no VM waits.",
            registry=r)

        # collector
        self.collector_cycle = Histogram(
            "drs_collector_cycle_duration_seconds",
            "Wall time of one collection cycle over this process's hosts.",
            buckets=_CYCLE_BUCKETS_S, registry=r)
        self.collector_stale_hosts = Gauge(
            "drs_collector_stale_hosts",
            "Hosts of this process's share whose collection failed in the last cycle.", registry=r)
        self.collector_last_cycle = Gauge(
            "drs_collector_last_cycle_timestamp_seconds",
            "UNIX time at which the last collection cycle finished.", registry=r)

        # planner
        self.planner_duration = Histogram(
            "drs_planner_duration_seconds", "Wall time of one planner run (plan()).",
            buckets=_PLANNER_BUCKETS_S, registry=r)
        self.planner_moves = Counter(
            "drs_planner_moves_proposed_total", "Moves proposed by the planner, by kind.",
            ["kind"], registry=r)
        self.planner_runs = Counter("drs_planner_runs_total", "Planner runs, by balancer mode.",
                                    ["mode"], registry=r)
        self.recommendations_pending = Gauge(
            "drs_recommendations_pending",
            "Moves of the latest recorded plan that are not carried out yet (manual mode, or "
            "automatic mode outside a balancing window).", registry=r)
        self.balancing_window_open = Gauge(
            "drs_balancing_window_open",
            "1 if automatic balancing may move VMs now (inside a balancing window, or no "
            "window configured), else 0. Mandatory moves are never held back.", registry=r)

        # migrations (observed from the migration_jobs table: the cluster-wide truth)
        self.migrations_started = Counter(
            "drs_migrations_started_total", "Live migrations started.", registry=r)
        self.migrations_finished = Counter(
            "drs_migrations_finished_total", "Live migrations finished, by result.",
            ["result"], registry=r)
        self.migration_duration = Histogram(
            "drs_migration_duration_seconds", "Wall time of a successful live migration.",
            buckets=_MIGRATION_BUCKETS_S, registry=r)
        self.migration_downtime = Histogram(
            "drs_migration_downtime_seconds",
            "Guest downtime (paused time at switch-over) of a successful live migration.",
            buckets=_DOWNTIME_BUCKETS_S, registry=r)
        self.migration_bytes = Counter(
            "drs_migration_transferred_bytes_total",
            "Bytes transferred by finished live migrations (memory, and disks when copied).",
            registry=r)
        self.host_migrations = Counter(
            "drs_host_migrations_total",
            "Finished live migrations per host, as source (outgoing) or destination (incoming), "
            "by result.", ["host", "direction", "result"], registry=r)
        self.running_migrations = Gauge(
            "drs_host_running_migrations", "Live migrations running now, per host and direction.",
            ["host", "direction"], registry=r)

        # high availability (libvirt_drs/ha)
        self.ha_host_state = Gauge(
            "drs_ha_host_state",
            "1 for each host's HA state: ok, suspected (not answering), fenced (off; its VMs "
            "restarted elsewhere; out of service until cleared) or fence_failed.",
            ["host", "state"], registry=r)
        self.ha_fences = Counter("drs_ha_fences_total", "Fence attempts, by result.",
                                 ["result"], registry=r)
        self.ha_restarts = Counter("drs_ha_restarts_total",
                                   "HA restarts of protected VMs, by result.", ["result"],
                                   registry=r)
        self.ha_waiting = Gauge("drs_ha_restarts_waiting",
                                "Protected VMs of fenced hosts waiting for a host that fits.",
                                registry=r)
        self.ha_protected = Gauge("drs_ha_protected_vms", "VMs in an HA group.", registry=r)

        # disaster recovery replication (libvirt_drs/replication)
        self.replication_lag = Gauge(
            "drs_replication_lag_seconds",
            "Age of each protected VM's recovery point: the data a failover now would lose "
            "at most (+Inf: no recovery point yet).", ["vm", "policy"], registry=r)
        self.replication_rpo = Gauge("drs_replication_rpo_seconds",
                                     "Each protected VM's recovery point objective.",
                                     ["vm", "policy"], registry=r)
        self.replication_points = Counter("drs_replication_points_total",
                                          "Replication attempts of this process, by result.",
                                          ["result"], registry=r)
        self.replication_bytes = Counter("drs_replication_sent_bytes_total",
                                         "Bytes of recovery points sent to recovery sites.",
                                         registry=r)

        # service
        self.leader = Gauge("drs_leader",
                            "1 if this process holds the cluster's balancer leader lock, else 0.",
                            registry=r)
        self.leader_changes = Counter("drs_leader_transitions_total",
                                      "Times this process gained or lost leadership.", registry=r)
        self.job_runs = Counter("drs_job_runs_total", "Scheduled job runs, by job.", ["job"],
                                registry=r)
        self.job_failures = Counter("drs_job_failures_total",
                                    "Scheduled job runs that raised an error, by job.", ["job"],
                                    registry=r)
        self.job_skipped = Counter(
            "drs_job_skipped_total",
            "Job runs skipped because the previous run was still going or the run was missed.",
            ["job"], registry=r)
        self.job_duration = Histogram("drs_job_duration_seconds", "Wall time of a job run, by job.",
                                      ["job"], buckets=_JOB_BUCKETS_S, registry=r)
        self.job_last_success = Gauge("drs_job_last_success_timestamp_seconds",
                                      "UNIX time of the last successful run, by job.", ["job"],
                                      registry=r)
        self._init_labels()

    def _init_labels(self) -> None:
        """Expose zero-valued series up front so rate() and dashboards have data from the start."""
        for job in JOB_NAMES:
            for metric in (self.job_runs, self.job_failures, self.job_skipped):
                metric.labels(job)
        for result in JOB_RESULTS:
            self.migrations_finished.labels(result)
        for kind in MOVE_KINDS:
            self.planner_moves.labels(kind)
        for mode in ("automatic", "manual"):
            self.planner_runs.labels(mode)
        for outcome in ("running", "failed"):
            self.ha_restarts.labels(outcome)
        for outcome in ("succeeded", "failed"):
            self.ha_fences.labels(outcome)
            self.replication_points.labels(outcome)
        self.leader.set(0)

    def set_host_gauges(self, cpu: Mapping[str, float], memory: Mapping[str, float],
                        vms: Mapping[str, int], stale: Iterable[str] = (),
                        maintenance: Iterable[str] = (),
                        capacity: Mapping[str, tuple[float, float]] | None = None) -> None:
        """Replace the per-host series (hosts that left the cluster disappear). A stale
        host gets no load series (unknown, not 0); `capacity` is (cores, MiB) per host."""
        stale_set, maint = set(stale), set(maintenance)
        capacity = capacity or {}
        for gauge in (self.host_cpu_load, self.host_memory_load, self.host_vms, self.host_stale,
                      self.host_maintenance, self.host_cpu_capacity, self.host_memory_capacity):
            gauge.clear()
        for host in sorted(set(cpu) | set(memory) | set(vms) | stale_set | set(capacity)):
            if host in cpu and host not in stale_set:
                self.host_cpu_load.labels(host).set(cpu[host])
            if host in memory and host not in stale_set:
                self.host_memory_load.labels(host).set(memory[host])
            self.host_vms.labels(host).set(vms.get(host, 0))
            self.host_stale.labels(host).set(1 if host in stale_set else 0)
            self.host_maintenance.labels(host).set(1 if host in maint else 0)
            if host in capacity:
                cores, mib = capacity[host]
                self.host_cpu_capacity.labels(host).set(cores)
                self.host_memory_capacity.labels(host).set(mib * MIB_BYTES)

    def set_contention(self, host_wait_cores: Mapping[str, float],
                       host_worst_wait: Mapping[str, float], served: float | None) -> None:
        """Replace the contention series: host -> cores waited, host -> the highest wait
        ratio of its VMs, and the cluster's served ratio (None, no CPU demand at all:
        nothing waits, 1.0)."""
        self.vm_cpu_wait_max.clear()
        self.host_cpu_wait.clear()
        for host, ratio in sorted(host_worst_wait.items()):
            self.vm_cpu_wait_max.labels(host).set(ratio)
        for host, cores in sorted(host_wait_cores.items()):
            self.host_cpu_wait.labels(host).set(cores)
        self.cpu_served.set(1.0 if served is None else served)

    def record_ha(self, host_states: Mapping[str, str], waiting: int, protected: int) -> None:
        """`host_states`: every host's HA state (ok when nothing happened to it)."""
        self.ha_host_state.clear()
        for host, state in sorted(host_states.items()):
            self.ha_host_state.labels(host, state).set(1)
        self.ha_waiting.set(waiting)
        self.ha_protected.set(protected)

    def record_replication(self, lag_s: Mapping[tuple[str, str], float | None],
                           rpo_s: Mapping[tuple[str, str], float]) -> None:
        """Per (vm, policy): the recovery point's age (None: no point) and the RPO."""
        self.replication_lag.clear()
        self.replication_rpo.clear()
        for key, age in lag_s.items():
            self.replication_lag.labels(*key).set(float("inf") if age is None else age)
        for key, rpo in rpo_s.items():
            self.replication_rpo.labels(*key).set(rpo)

    def count_replication(self, ok: bool, sent_bytes: int) -> None:
        self.replication_points.labels("succeeded" if ok else "failed").inc()
        self.replication_bytes.inc(sent_bytes)

    def count_fence(self, host: str, ok: bool) -> None:
        self.ha_fences.labels("succeeded" if ok else "failed").inc()

    def count_restart(self, result: str) -> None:
        self.ha_restarts.labels(result).inc()

    def set_running_migrations(self, hosts: Iterable[str],
                               running: Iterable[tuple[str, str]]) -> None:
        """`running` is (source, destination) per running migration; every host gets a series."""
        counts = {(h, d): 0 for h in hosts for d in DIRECTIONS}
        for source, destination in running:
            counts[(source, "outgoing")] = counts.get((source, "outgoing"), 0) + 1
            counts[(destination, "incoming")] = counts.get((destination, "incoming"), 0) + 1
        self.running_migrations.clear()
        for (host, direction), n in sorted(counts.items()):
            self.running_migrations.labels(host, direction).set(n)


HealthCheck = Callable[[], tuple[bool, str]]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Scrapes every few seconds would drown the log."""


def make_app(registry: CollectorRegistry, health: HealthCheck):  # type: ignore[no-untyped-def]
    """WSGI app: /metrics (Prometheus exposition), /healthz (200 ok / 503 reason), else 404."""
    metrics_app = make_wsgi_app(registry)

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            ok, detail = health()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [(("ok" if ok else "unhealthy") + (f": {detail}" if detail else "") + "\n")
                    .encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class MetricsServer:
    """HTTP server for /metrics and /healthz on a daemon thread; `port` is the bound port."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 health: HealthCheck) -> None:
        server_cls = type("_Server", (_ThreadingWSGIServer,),
                          {"address_family": _family(host)})
        self._server: WSGIServer = make_server(host, port, make_app(registry, health),
                                               server_cls, handler_class=_QuietHandler)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="drs-metrics",
                                        daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _family(host: str) -> socket.AddressFamily:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return infos[0][0] if infos else socket.AF_INET
