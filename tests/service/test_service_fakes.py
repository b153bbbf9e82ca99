"""The whole `drs serve` wiring on a fake cluster: converge, metrics, shutdown, standby."""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import MigrationJob, PlannedMoveRow, PlanRow
from libvirt_drs.errors import UserError
from libvirt_drs.service.app import ServeOptions, Service, parse_shard, shard_hosts, shard_of
from libvirt_drs.service.leader import AlwaysLeader, SqliteLease
from libvirt_drs.windows import WindowState
from tests.migrator.fakes import Behaviour
from tests.service.fakes import cluster_config, fake_collect_job, skewed_cluster

FAST = ServeOptions(collect_interval_s=0.3, balance_interval_s=1.0, observe_interval_s=0.3,
                    first_balance_delay_s=1.0, shutdown_grace_s=4.0, metrics_listen="127.0.0.1:0",
                    web_listen="",
                    lease_s=3.0)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'drs.sqlite'}")
    schema.upgrade(e)
    yield e
    e.dispose()


def _service(engine: Engine, mode: str = "automatic", opts: ServeOptions = FAST,
             leader=None, burn=None):  # type: ignore[no-untyped-def]
    cfg = cluster_config(str(engine.url), balancer=f'mode = "{mode}"\ncooldown_s = 3600')
    hv, loads = skewed_cluster(cfg, *(() if burn is None else (burn,)))
    svc = Service(cfg, engine, opts, hv=hv, leader=leader or AlwaysLeader(),
                  collect_job=fake_collect_job(cfg, engine, hv, loads))
    return svc, hv


def _metric(svc: Service, name: str, **labels: str) -> float:
    return svc.metrics.registry.get_sample_value(name, labels) or 0.0


def _wait(cond, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_automatic_mode_converges_and_exports_metrics(engine: Engine) -> None:
    svc, hv = _service(engine)
    svc.start()
    try:
        assert _wait(lambda: any(r.moves for r in svc.balance.rounds), 15)
        assert _wait(lambda: svc.balance.rounds and svc.balance.rounds[-1].moves == 0
                     and svc.balance.rounds[-1].imbalance_before
                     <= svc.balance.rounds[-1].target, 20), svc.balance.rounds
        assert _wait(lambda: _metric(svc, "drs_migrations_finished_total",
                                     result="succeeded") >= 1, 5)
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.server.port}/metrics") as r:
            body = r.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.server.port}/healthz") as r:
            assert r.read().decode().strip() == "ok: leader"
    finally:
        report = svc.stop()
    assert report.left_running == 0
    for name in ("drs_host_cpu_load_ratio{host=\"h2\"}", "drs_cluster_imbalance_ratio",
                 "drs_migration_duration_seconds_bucket", "drs_planner_duration_seconds_count",
                 "drs_collector_cycle_duration_seconds_count"):
        assert name in body, name
    assert _metric(svc, "drs_leader") == 0  # released on stop
    # every VM on exactly one host, no host over its limits
    placed = sorted(v for h in hv.hosts.values() for v in h.domains)
    assert placed == [f"vm{i}" for i in range(1, 7)]
    assert max(hv.max_outgoing.values()) <= 2 and max(hv.max_incoming.values()) <= 2
    with engine.connect() as conn:
        jobs = conn.execute(select(MigrationJob.state)).scalars().all()
        assert jobs and set(jobs) == {"succeeded"}
        assert conn.execute(select(PlanRow.mode)).scalars().first() == "automatic"
    assert _metric(svc, "drs_migrations_started_total") == len(jobs)
    assert _metric(svc, "drs_job_failures_total", job="balance") == 0


def test_manual_mode_records_the_recommendation_only(engine: Engine) -> None:
    svc, hv = _service(engine, mode="manual")
    svc.start()
    try:
        assert _wait(lambda: any(r.moves for r in svc.balance.rounds), 15)
    finally:
        svc.stop()
    assert set(hv.hosts["h1"].domains) == {f"vm{i}" for i in range(1, 7)}
    with engine.connect() as conn:
        assert conn.execute(select(MigrationJob)).first() is None
        assert conn.execute(select(PlannedMoveRow)).first() is not None
    assert _metric(svc, "drs_planner_moves_proposed_total", kind="balancing") >= 1


def test_shutdown_aborts_a_migration_that_outlasts_the_grace_period(engine: Engine) -> None:
    svc, hv = _service(engine, opts=dataclasses.replace(FAST, shutdown_grace_s=4.0),
                       burn=(0.9, 0.05))
    hv.behaviour["vm1"] = Behaviour(hang=True)
    hv.behaviour["vm2"] = Behaviour(hang=True)
    svc.start()
    assert _wait(lambda: svc.migrations.running_count() >= 1, 15)
    moving = svc.migrations.running_jobs()[0]
    t0 = time.monotonic()
    report = svc.stop()
    assert time.monotonic() - t0 <= 4.3
    assert report.aborted >= 1 and report.left_running == 0
    assert hv.where(moving.vm_name) == [moving.source]
    with engine.connect() as conn:
        state = conn.execute(select(MigrationJob.state, MigrationJob.error).where(
            MigrationJob.id == moving.id)).one()
    assert state[0] == "aborted" and "shutting down" in state[1]


def test_shutdown_lets_a_short_migration_finish(engine: Engine) -> None:
    svc, hv = _service(engine, burn=(0.9, 0.05))
    hv.behaviour["vm1"] = Behaviour(duration_s=1.5)
    hv.behaviour["vm2"] = Behaviour(duration_s=1.5)
    svc.start()
    assert _wait(lambda: svc.migrations.running_count() >= 1, 15)
    moving = svc.migrations.running_jobs()[0]
    report = svc.stop()
    assert report.aborted == 0 and report.finished_in_grace
    assert hv.where(moving.vm_name) == [moving.destination]


def test_a_standby_does_nothing_until_it_leads(engine: Engine) -> None:
    other = SqliteLease(engine, 3.0, holder="other")
    assert other.poll()  # someone else leads, and keeps renewing until it "dies"
    other_alive = threading.Event()
    other_alive.set()

    def renew() -> None:
        while other_alive.is_set():
            other.poll()
            time.sleep(0.2)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    svc, hv = _service(engine, leader=SqliteLease(engine, 3.0, holder="me"))
    svc.start()
    try:
        time.sleep(2.5)  # longer than the other's lease term: only its renewals hold it
        assert not svc.balance.rounds and svc.collect_job.cycles == 0
        assert _metric(svc, "drs_leader") == 0
        # the other one dies (stops renewing): we take over once its term ends, at the
        # latest one lease period later (term 2 s + our standby poll 0.5 s)
        other_alive.clear()
        renewer.join()
        t_dead = time.monotonic()
        assert _wait(lambda: _metric(svc, "drs_leader") == 1, 6.0)
        took = time.monotonic() - t_dead
        assert _wait(lambda: svc.collect_job.cycles > 0, 3)
    finally:
        other_alive.clear()
        svc.stop()
    assert took <= 3.0 + 1.0  # one lease period, plus slack for a busy 2-core machine


def test_shards_split_hosts_stably() -> None:
    cfg = cluster_config("sqlite:///x.sqlite", hosts=12)
    parts = [shard_hosts(cfg.hosts, (i, 3)) for i in range(3)]
    assert sorted(h.name for p in parts for h in p) == sorted(h.name for h in cfg.hosts)
    assert all(parts)  # crc32 spreads 12 names over 3 shards
    assert shard_of("h1", 3) == shard_of("h1", 3)
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x/2", "1", "-1/2"):
        with pytest.raises(UserError):
            parse_shard(bad)


def test_outside_the_balancing_windows_automatic_mode_only_recommends(engine: Engine) -> None:
    svc, hv = _service(engine)
    closed = WindowState(False, time.time() + 3600, None)
    svc.balance.window = lambda _now_s: closed
    svc.start()
    try:
        assert _wait(lambda: any(r.moves for r in svc.balance.rounds), 15)
    finally:
        svc.stop()
    assert set(hv.hosts["h1"].domains) == {f"vm{i}" for i in range(1, 7)}  # nothing moved
    with engine.connect() as conn:
        assert conn.execute(select(MigrationJob)).first() is None
        plan = conn.execute(select(PlanRow).order_by(PlanRow.id)).first()
    assert plan is not None and plan.mode == "manual" and plan.applied_s is None
    assert "outside the balancing windows" in plan.notes
    assert _metric(svc, "drs_balancing_window_open") == 0
    assert _metric(svc, "drs_recommendations_pending") >= 1
