"""The collector on the real lab: burns measured, host loads, a host going away and back.

Uses the session fixture `lab` (tests/conftest.py). To run against a lab started by
hand instead: DRS_TEST_LAB=<name> (e.g. `drs lab up --name coll ...`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from libvirt_drs import config as config_mod
from libvirt_drs.cli import cli
from libvirt_drs.collect import CollectJob
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine

pytestmark = pytest.mark.lab
INTERVAL_S = 2.0
BURN_TOLERANCE_CORES = 0.05


@pytest.fixture(scope="module")
def the_lab(request: pytest.FixtureRequest) -> Any:
    name = os.environ.get("DRS_TEST_LAB")
    if name:
        from libvirt_drs.lab.lab import Lab  # noqa: PLC0415

        return Lab.load(name)
    try:
        return request.getfixturevalue("lab")
    except pytest.FixtureLookupError:
        pytest.skip("no `lab` fixture and DRS_TEST_LAB not set")


@pytest.fixture
def lab_config(the_lab: Any, tmp_path: Path) -> Iterator[Path]:
    """The lab's hosts with a private SQLite database and a short interval."""
    lab_cfg = config_mod.load(the_lab.config_path)
    lines = [f'[database]\nurl = "sqlite:///{tmp_path}/collect.sqlite"\n',
             f"[collector]\ninterval_s = {INTERVAL_S}\ntimeout_s = 1.5\n"]
    for h in lab_cfg.hosts:
        lines.append(f'[[hosts]]\nname = "{h.name}"\nuri = "{h.uri}"\n'
                     + (f"cpu_cores = {h.cpu_cores}\n" if h.cpu_cores else "")
                     + (f"mem_mib = {h.mem_mib}\n" if h.mem_mib else ""))
    path = tmp_path / "drs.toml"
    path.write_text("\n".join(lines))
    engine = make_engine(config_mod.load(str(path)).database_url)
    schema.upgrade(engine)
    engine.dispose()
    yield path


def _cycles(job: CollectJob, n: int, first_sleep: bool = False) -> list[Any]:
    outcomes = []
    for i in range(n):
        if i or first_sleep:
            time.sleep(INTERVAL_S)
        outcomes.append(job.run_cycle())
    return outcomes


def _status(path: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--config", str(path), "status", "--json", "--window", "30"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_three_cycles_measure_each_burn(the_lab: Any, lab_config: Path) -> None:
    cfg = config_mod.load(str(lab_config))
    job = CollectJob(cfg, make_engine(cfg.database_url))
    try:
        job.run_cycle()
        # The lab measures each guest itself over the same span, to tell a collector error
        # from a machine too busy to give the guests their burn.
        with ThreadPoolExecutor(1) as pool:
            independent = pool.submit(the_lab.cpu_pct, 2 * INTERVAL_S)
            _cycles(job, 2, first_sleep=True)
            measured = {name: pct / 100 for name, pct in independent.result().items()}
    finally:
        job.close()
    data = _status(lab_config)
    where = the_lab.where()
    vms = {v["name"]: v for v in data["vms"]}
    off_burn, off_lab = [], []
    for vm in the_lab.vms:
        got = vms[vm.name]
        assert got["host"] == where[vm.name]
        if abs(got["cpu_cores"] - measured[vm.name]) > BURN_TOLERANCE_CORES:
            off_lab.append(f"{vm.name}: {got['cpu_cores']:.3f} vs lab {measured[vm.name]:.3f}")
        if abs(got["cpu_cores"] - vm.burn_pct / 100) > BURN_TOLERANCE_CORES:
            off_burn.append(f"{vm.name}: {got['cpu_cores']:.3f} cores, burn {vm.burn_pct}%, "
                            f"lab measured {measured[vm.name]:.3f}")
    assert not off_lab, off_lab
    caps = {h.name: h.cpu_cores for h in cfg.hosts}
    for h in data["hosts"]:
        on_host = sum(v["cpu_cores"] for v in data["vms"] if v["host"] == h["name"])
        assert not h["stale"] and h["vms"] == sum(1 for v in where.values() if v == h["name"])
        assert h["cpu_load"] == pytest.approx(on_host / caps[h["name"]], abs=0.02)
        assert 0 <= h["mem_load"] < 1 and (h["mem_load"] > 0) == (h["vms"] > 0)
    # The collector agrees with the lab's own measurement (above); the guests must also
    # burn what they were configured to (a machine too busy to give it fails here).
    assert not off_burn, f"collector off the configured burn: {off_burn}"


def test_host_down_goes_stale_and_recovers(the_lab: Any, lab_config: Path) -> None:
    the_lab.reset_placement()  # the shared lab: earlier tests may have moved guests
    cfg = config_mod.load(str(lab_config))
    victim = cfg.hosts[-1].name
    job = CollectJob(cfg, make_engine(cfg.database_url))
    try:
        _cycles(job, 2)
        the_lab.stop_host(victim)
        try:
            t0 = time.monotonic()
            down = job.run_cycle().result
            assert time.monotonic() - t0 < INTERVAL_S + 1.5
            hosts = {h.name: h for h in down.hosts}
            assert not hosts[victim].ok and hosts[victim].error
            assert all(h.ok for n, h in hosts.items() if n != victim)
            # the others still sampled: their hosts answered on time (above) and each of
            # their VMs has a demand (fresh, or carried over one odd reading, e.g. a guest
            # the shared lab restarted); VMs of the stale host keep their place, unsampled
            assert all(v.cpu_demand is not None for v in down.vms if v.host != victim), down.vms
            data = _status(lab_config)
            assert {h["name"]: h["stale"] for h in data["hosts"]}[victim] is True
        finally:
            the_lab.start_host(victim)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(INTERVAL_S)
            if all(h.ok for h in job.run_cycle().result.hosts):
                break
        data = _status(lab_config)
        assert not any(h["stale"] for h in data["hosts"]), data["hosts"]
    finally:
        job.close()



def test_sample_cost_per_host_is_small(the_lab: Any, lab_config: Path) -> None:
    """Not a benchmark gate: a sanity bound (the benchmark is `drs bench collect`)."""
    cfg = config_mod.load(str(lab_config))
    job = CollectJob(cfg, make_engine(cfg.database_url))
    try:
        polls = [h.poll_ms for o in _cycles(job, 2) for h in o.result.hosts]
    finally:
        job.close()
    assert polls and all(ms < 2000 for ms in polls), polls
