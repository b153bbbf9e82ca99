"""End to end on the lab: `drs serve` (a real process) balances a skewed cluster, a real
Prometheus scrapes it and answers every PromQL expression of every dashboard, and SIGTERM
during a migration ends cleanly within the grace period."""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from libvirt_drs import config as config_mod
from libvirt_drs import migrator_builder as migration
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import MigrationJob, PlanRow
from libvirt_drs.lab import config_out, heartbeat
from tests.e2e.prometheus_proc import Prometheus, available
from tests.service.serve_proc import ServeProcess, free_port, wait_for
from tests.service.test_deploy import dashboard_exprs

pytestmark = pytest.mark.lab

MAX_ROUNDS = 5
COLLECT_S, BALANCE_S = 2.0, 12.0
LIMIT_OUT = LIMIT_IN = 2  # the migrator defaults


def _skewed(lab: Any) -> str:
    """Put every guest back on its home host (the lab's are all on the first one)."""
    lab.reset_placement()
    where = lab.where()
    hosts = set(where.values())
    assert len(where) == len(lab.vms) and len(hosts) == 1, where
    return hosts.pop()


def _setup(lab: Any, tmp_path: Path, extra: str = "") -> tuple[Path, Engine]:
    url = f"sqlite:///{tmp_path / 'drs.sqlite'}"
    engine = make_engine(url)
    schema.upgrade(engine)
    config = tmp_path / "drs.toml"
    config.write_text(config_out.render(lab.state, url) + extra
                      + '\n[balancer]\nmode = "automatic"\naggressiveness = 3\n')
    return config, engine


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for p in reversed(started):
        p.stop()


def _plans(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(PlanRow.id, PlanRow.imbalance_before, PlanRow.target, PlanRow.created_s)
                            .order_by(PlanRow.id)).all()


def _jobs(engine: Engine) -> list[Any]:
    with Session(engine) as session:
        return list(session.scalars(select(MigrationJob).order_by(MigrationJob.id)))


def _max_concurrency(jobs: list[Any], key: str) -> int:
    events = []
    for j in jobs:
        if j.started_s is not None and j.state != "skipped":
            events += [(j.started_s, 1, getattr(j, key)), (j.finished_s or math.inf, -1,
                                                           getattr(j, key))]
    peak: dict[str, int] = {}
    now: dict[str, int] = {}
    for _, delta, host in sorted(events, key=lambda e: (e[0], e[1])):
        now[host] = now.get(host, 0) + delta
        peak[host] = max(peak.get(host, 0), now[host])
    return max(peak.values(), default=0)


REPLICATION_METRIC = "drs_replication_"


def _promql(expr: str, range_s: int) -> str:
    return (expr.replace("$__rate_interval", "10s").replace("$__range", f"{range_s}s")
            .replace("$host", ".*").replace("$instance", ".*"))


def _finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(v[1])) for series in result for v in series["values"])


def _beat_marks(lab: Any) -> dict[str, int]:
    """Each guest's heartbeat count now (guest clocks drift under TCG: count, not time)."""
    return {vm.name: len(heartbeat.read(lab.serial_log(vm.name))) for vm in lab.vms}


def _guests_alive_throughout(lab: Any, marks: dict[str, int]) -> dict[str, float]:
    """Every guest kept beating since `marks`: no counter lost, no long gap, beating now."""
    gaps = {}
    for vm in lab.vms:
        beats = heartbeat.read(lab.serial_log(vm.name))
        since = beats[max(0, marks[vm.name] - 1):]  # from the last beat before the mark
        assert len(since) >= 3, f"{vm.name}: no heartbeat since the start"
        assert heartbeat.missing_counters(since) == [], f"{vm.name}: heartbeats lost"
        gaps[vm.name] = heartbeat.max_gap_s(since)
        assert gaps[vm.name] < 5, f"{vm.name}: {gaps[vm.name]:.1f} s without a heartbeat"
    # and still beating (a starved TCG guest on a loaded machine may skip a few seconds)
    later = _beat_marks(lab)
    assert wait_for(lambda: all(n > later[vm] for vm, n in _beat_marks(lab).items()), 15), \
        f"not beating any more: {later} -> {_beat_marks(lab)}"
    return gaps


def test_serve_balances_the_skewed_lab_and_prometheus_answers_every_dashboard(
        lab: Any, tmp_path: Path, procs: list[Any], record_property: Any) -> None:
    reason = available()
    if reason:
        pytest.fail(reason)  # deploy/setup.sh installs it; a missing one is a setup bug
    source = _skewed(lab)
    marks = _beat_marks(lab)
    config, engine = _setup(lab, tmp_path)
    port = free_port()
    prom = Prometheus(tmp_path / "prometheus", free_port(), [f"127.0.0.1:{port}"])
    procs.append(prom)
    t0 = time.time()
    serve = ServeProcess(config, port, [
        "--collect-interval", str(COLLECT_S), "--balance-interval", str(BALANCE_S),
        "--observe-interval", "1", "--first-balance-delay", str(3 * COLLECT_S),
        "--grace", "20", "--lease", "6"], tmp_path / "serve.log")
    procs.append(serve)
    prom.wait_ready()
    serve.wait_healthy()
    assert wait_for(prom.targets_up, 30), "prometheus does not scrape drs serve"

    def converged_at() -> int | None:
        for i, p in enumerate(_plans(engine)):
            if p.imbalance_before <= p.target:
                return i + 1
        return None

    budget_s = 3 * COLLECT_S + (MAX_ROUNDS + 1) * BALANCE_S + 90
    assert wait_for(lambda: converged_at() is not None or len(_plans(engine)) > MAX_ROUNDS + 1,
                    budget_s, step_s=1), serve.output()
    plans = _plans(engine)
    first = plans[0]
    assert first.imbalance_before > 2 * first.target, "the start was not skewed enough"
    rounds = converged_at()
    assert rounds is not None and rounds - 1 <= MAX_ROUNDS, (plans, serve.output())
    time.sleep(6)  # a few more scrapes after the last migration, for the rate() windows
    end = time.time()

    jobs = _jobs(engine)
    states = [j.state for j in jobs]
    record_property("rounds_to_converge", rounds - 1)
    record_property("migrations", len(jobs))
    print(f"\nconverged after {rounds - 1} round(s) with moves (round {rounds} found imbalance "
          f"{plans[rounds - 1].imbalance_before:.3f} <= target {plans[rounds - 1].target:.3f}; "
          f"start {first.imbalance_before:.3f}); {len(jobs)} migration(s): {states}")
    assert jobs and states.count("succeeded") >= 1
    assert all(j.source == source for j in jobs[:2])  # the first round empties the hot host
    assert _max_concurrency(jobs, "source") <= LIMIT_OUT
    assert _max_concurrency(jobs, "destination") <= LIMIT_IN
    peak = prom.query_range("max(max_over_time(drs_host_running_migrations[1m]))", t0, end)
    assert peak and max(float(v[1]) for v in peak[0]["values"]) <= max(LIMIT_OUT, LIMIT_IN)
    gaps = _guests_alive_throughout(lab, marks)
    print("longest heartbeat gap per guest:", json.dumps({k: round(v, 2) for k, v in gaps.items()}))

    # every PromQL expression of every dashboard returns data from this Prometheus
    range_s = int(end - t0) + 10
    empty = []
    for file, title, expr in dashboard_exprs():
        if REPLICATION_METRIC in expr:  # this lab protects no VM: proven in
            continue                    # tests/replication/test_replication_lab.py
        result = prom.query_range(_promql(expr, range_s), t0, end)
        if not _finite(result):
            empty.append(f"{file}: {title}: {expr}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

    serve.signal(signal.SIGTERM)
    assert serve.proc.wait(timeout=30) == 0, serve.output()
    engine.dispose()


def test_sigterm_during_a_migration(lab: Any, tmp_path: Path, procs: list[Any]) -> None:
    _skewed(lab)
    marks = _beat_marks(lab)
    # a bandwidth cap keeps the migration running long enough to be interrupted (a tighter
    # one makes the planner find every move too costly: it counts the migration time)
    # (config_out.render ends in the [migrator] table: the key lands there)
    config, engine = _setup(lab, tmp_path, extra="bandwidth_mib_s = 16\n")
    grace_s = 8.0
    serve = ServeProcess(config, free_port(), [
        "--collect-interval", "1", "--balance-interval", "30", "--first-balance-delay", "3",
        "--grace", str(grace_s)], tmp_path / "serve.log")
    procs.append(serve)
    serve.wait_healthy()

    def running() -> Any:
        return next((j for j in _jobs(engine) if j.state == "running"), None)

    assert wait_for(lambda: running() is not None, 90, step_s=0.1), serve.output()
    job = running()
    time.sleep(0.5)  # into the libvirt migration proper
    sent = time.monotonic()
    serve.signal(signal.SIGTERM)
    rc = serve.proc.wait(timeout=grace_s + 30)
    took = time.monotonic() - sent
    print(f"\nSIGTERM during the migration of {job.vm_name}: exit {rc} after {took:.2f} s "
          f"(grace {grace_s:g} s)")
    assert rc == 0, serve.output()
    assert took <= grace_s, serve.output()
    final = {j.id: j for j in _jobs(engine)}[job.id]
    if final.state == "running":
        # the abort had not settled at the deadline: the next start reconciles the row from
        # where libvirt says the VM runs; do what it does
        print(f"job {job.id} left running at exit; reconciling")
        for r in migration.build(config_mod.load(str(config)), engine).reconcile():
            print(f"reconciled job {r.job_id}: {r.state} {r.detail}")
        final = {j.id: j for j in _jobs(engine)}[job.id]
    print(f"job {job.id}: {final.state} {final.error or ''}")
    interrupted = final.state == "failed" and "still runs on" in (final.error or "")
    assert final.state in ("aborted", "succeeded") or interrupted, (final.state, final.error)
    # the VM runs on exactly one host, the right one, and never stopped
    running_on = [h.name for h in lab.hosts if job.vm_name in _active(lab, h.name)]
    expected = job.destination if final.state == "succeeded" else job.source
    assert running_on == [expected], running_on
    _guests_alive_throughout(lab, marks)
    engine.dispose()
    lab.reset_placement()


def _active(lab: Any, host: str) -> set[str]:
    with lab.connect(host) as conn:
        return {d.name() for d in conn.listAllDomains(1)}
