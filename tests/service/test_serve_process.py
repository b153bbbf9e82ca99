"""Real `drs serve` processes (libvirt test driver hosts): SIGTERM, one leader, handover."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import Host
from tests.service.serve_proc import DRS, ServeProcess, driver_config, free_port, wait_for

LEASE_S = 6.0
FAST = ["--collect-interval", "0.5", "--balance-interval", "1", "--observe-interval", "0.5",
        "--first-balance-delay", "0", "--lease", str(LEASE_S), "--grace", "5"]


@pytest.fixture
def procs() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for p in started:
        p.stop()


def _config(tmp_path: Path, db_url: str, hosts: int = 2) -> Path:
    engine = make_engine(db_url)
    schema.upgrade(engine)
    engine.dispose()
    return driver_config(tmp_path, db_url, hosts, extra='[balancer]\nmode = "manual"\n')


def _start(procs: list[ServeProcess], config: Path, tmp_path: Path, *args: str) -> ServeProcess:
    p = ServeProcess(config, free_port(), [*FAST, *args], tmp_path / f"serve{len(procs)}.log")
    procs.append(p)
    return p


def test_sigterm_exits_zero_within_the_grace_period(tmp_path: Path,
                                                    procs: list[ServeProcess]) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'drs.sqlite'}")
    p = _start(procs, config, tmp_path)
    p.wait_healthy()
    assert wait_for(lambda: (p.value("drs_job_runs_total", job="balance") or 0) >= 1, 30), \
        p.output()
    assert p.value("drs_leader") == 1
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    rc = p.proc.wait(timeout=30)
    took = time.monotonic() - t0
    assert rc == 0, p.output()
    assert took <= 5 + 1.5, took
    assert "SIGTERM: stopping" in p.output()


def test_two_serves_one_leader_and_handover_within_the_lease(
        tmp_path: Path, db_url: str, procs: list[ServeProcess]) -> None:
    config = _config(tmp_path, db_url)
    a = _start(procs, config, tmp_path)
    a.wait_healthy()
    assert wait_for(lambda: a.value("drs_leader") == 1, 30), a.output()
    b = _start(procs, config, tmp_path)
    b.wait_healthy()
    assert b.get("/healthz")[1].strip() == "ok: standby"
    assert wait_for(lambda: (a.value("drs_job_runs_total", job="balance") or 0) >= 2, 30)
    time.sleep(1.5)
    assert b.value("drs_leader") == 0
    for job in ("balance", "collect", "observe"):
        assert b.value("drs_job_runs_total", job=job) == 0, job  # the standby does nothing
    assert (a.value("drs_planner_runs_total", mode="manual") or 0) >= 2

    a.signal(signal.SIGKILL)  # the leader dies without a word
    killed = time.monotonic()
    a.proc.wait(timeout=10)
    assert wait_for(lambda: b.value("drs_leader") == 1, LEASE_S + 5, step_s=0.1), b.output()
    handover_s = time.monotonic() - killed
    print(f"handover on {db_url.split(':')[0]}: {handover_s:.2f} s (lease {LEASE_S:g} s)")
    assert handover_s <= LEASE_S
    assert wait_for(lambda: (b.value("drs_job_runs_total", job="balance") or 0) >= 1, 15)
    b.signal(signal.SIGTERM)
    assert b.proc.wait(timeout=30) == 0


def test_collector_shards_run_without_the_lock(tmp_path: Path,
                                               procs: list[ServeProcess]) -> None:
    url = f"sqlite:///{tmp_path / 'drs.sqlite'}"
    config = _config(tmp_path, url, hosts=4)  # crc32: h1, h2, h3 -> shard 0/2, h4 -> 1/2
    shards = [_start(procs, config, tmp_path, "--no-balance", "--collect-shard", f"{i}/2")
              for i in range(2)]
    for s in shards:
        s.wait_healthy()
    assert wait_for(lambda: all((s.value("drs_job_runs_total", job="collect") or 0) >= 2
                                for s in shards), 30)
    for s in shards:
        assert s.value("drs_leader") == 0 and s.value("drs_job_runs_total", job="balance") == 0
    engine = make_engine(url)
    with engine.connect() as conn:
        seen = dict(conn.execute(select(Host.name, Host.last_seen_s)).all())
    engine.dispose()
    assert sorted(seen) == ["h1", "h2", "h3", "h4"] and all(seen.values())
    for s in shards:
        s.signal(signal.SIGTERM)
        assert s.proc.wait(timeout=30) == 0


def test_bad_metrics_listen_is_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'drs.sqlite'}")
    res = subprocess.run([*DRS, "--config", str(config), "serve",
                          "--metrics-listen", "nonsense"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2 and res.stderr.strip().startswith("drs: error: --metrics-listen")
