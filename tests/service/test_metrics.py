"""Metric names follow the Prometheus conventions; /metrics and /healthz serve them."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from libvirt_drs.service.metrics import DrsMetrics, MetricsServer

NAME = re.compile(r"^drs_[a-z0-9_]+$")
UNITS = ("_seconds", "_ratio", "_bytes", "_total", "_info")


def _families(metrics: DrsMetrics):  # type: ignore[no-untyped-def]
    return list(metrics.registry.collect())


def test_names_carry_prefix_units_and_total() -> None:
    for fam in _families(DrsMetrics()):
        assert NAME.match(fam.name), fam.name
        assert fam.documentation, fam.name
        if fam.type == "counter":
            # client_python strips _total from the family name; samples carry it
            assert not fam.name.endswith("_total")
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), fam.name
        if "time" in fam.name or "duration" in fam.name:
            assert fam.name.endswith(("_seconds", "_timestamp_seconds")), fam.name


def test_the_issue_s_metrics_exist() -> None:
    names = {s.name for fam in _families(DrsMetrics()) for s in fam.samples}
    names |= {fam.name for fam in _families(DrsMetrics())}
    for wanted in ("drs_host_cpu_load_ratio", "drs_host_memory_load_ratio",
                   "drs_cluster_imbalance_ratio", "drs_cluster_imbalance_target_ratio",
                   "drs_host_vms", "drs_cluster_vms", "drs_collector_cycle_duration_seconds",
                   "drs_collector_stale_hosts", "drs_planner_duration_seconds",
                   "drs_planner_moves_proposed_total", "drs_migrations_started_total",
                   "drs_migrations_finished_total", "drs_migration_duration_seconds",
                   "drs_migration_downtime_seconds", "drs_host_running_migrations",
                   "drs_leader", "drs_job_failures_total"):
        assert wanted in names, wanted


def test_outcome_and_job_series_exist_from_the_start() -> None:
    m = DrsMetrics()
    for result in ("succeeded", "failed", "aborted", "skipped"):
        assert m.registry.get_sample_value("drs_migrations_finished_total",
                                           {"result": result}) == 0
    assert m.registry.get_sample_value("drs_job_failures_total", {"job": "collect"}) == 0
    assert m.registry.get_sample_value("drs_leader") == 0


def test_host_gauges_replace_series() -> None:
    m = DrsMetrics()
    m.set_host_gauges({"a": 0.5, "b": 0.1}, {"a": 0.2, "b": 0.3}, {"a": 3, "b": 0}, stale=["b"])
    assert m.registry.get_sample_value("drs_host_cpu_load_ratio", {"host": "a"}) == 0.5
    assert m.registry.get_sample_value("drs_host_stale", {"host": "b"}) == 1
    m.set_host_gauges({"a": 0.4}, {"a": 0.2}, {"a": 3})
    assert m.registry.get_sample_value("drs_host_cpu_load_ratio", {"host": "b"}) is None


def test_contention_series_from_the_snapshot() -> None:
    """The worst VM wait ratio and the cores waited per host, and the cluster's served
    ratio, computed as the planner sees the cluster (its demand counts the wait)."""
    from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Policy, Rules, VmState  # noqa: PLC0415
    from libvirt_drs.service.balance import cluster_loads, publish_loads  # noqa: PLC0415

    snap = ClusterSnapshot(
        hosts=(HostState("a", 1, 4096), HostState("b", 1, 4096)),
        vms=(VmState("x", "a", 0.6, 256, cpu_wait_cores=0.3, vcpus=2),
             VmState("y", "a", 0.5, 256, cpu_wait_cores=0.1), VmState("z", "b", 0.4, 256)),
        rules=Rules(), now_s=0.0)
    m = DrsMetrics()
    publish_loads(m, cluster_loads(snap, Policy()))
    get = m.registry.get_sample_value
    assert get("drs_host_vm_cpu_wait_max_ratio", {"host": "a"}) == pytest.approx(0.15)
    assert get("drs_host_vm_cpu_wait_max_ratio", {"host": "b"}) == 0.0
    text = "\n".join(str(s) for fam in m.registry.collect() for s in fam.samples)
    assert all(f"'{vm}'" not in text for vm in ("x", "y", "z"))  # no VM names in /metrics
    assert get("drs_host_cpu_wait_cores", {"host": "a"}) == pytest.approx(0.4)
    assert get("drs_host_cpu_wait_cores", {"host": "b"}) == 0.0
    assert get("drs_cluster_cpu_served_ratio") == pytest.approx(1.1 / 1.5)


def test_running_migrations_per_host_and_direction() -> None:
    m = DrsMetrics()
    m.set_running_migrations(["a", "b", "c"], [("a", "b"), ("a", "c")])
    get = m.registry.get_sample_value
    assert get("drs_host_running_migrations", {"host": "a", "direction": "outgoing"}) == 2
    assert get("drs_host_running_migrations", {"host": "b", "direction": "incoming"}) == 1
    assert get("drs_host_running_migrations", {"host": "c", "direction": "outgoing"}) == 0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("healthy", [True, False])
def test_http_server_serves_metrics_and_healthz(healthy: bool) -> None:
    m = DrsMetrics()
    server = MetricsServer("127.0.0.1", 0, m.registry,
                           lambda: (healthy, "" if healthy else "shutting down")).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, body = _get(base + "/metrics")
        assert status == 200 and "drs_leader 0.0" in body and "drs_build_info{" in body
        status, body = _get(base + "/healthz")
        assert (status, body.strip()) == ((200, "ok") if healthy else
                                          (503, "unhealthy: shutting down"))
        assert _get(base + "/")[0] == 404
    finally:
        server.stop()


def test_metrics_never_carry_database_urls() -> None:
    m = DrsMetrics()
    text = "".join(str(s) for fam in _families(m) for s in fam.samples)
    assert "postgresql" not in text and "password" not in text
