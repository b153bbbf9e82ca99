"""`drs simulate --from-db`: what-if replay of the cluster's own recorded samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from libvirt_drs import config
from libvirt_drs.cli import cli
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.history import load_history, parse_time
from libvirt_drs.db.models import Host, Vm, VmSample, VmSampleRollup
from libvirt_drs.errors import UserError

T0 = 1_700_000_000.0
HOSTS = "".join(f'[[hosts]]\nname = "h{i}"\nuri = "qemu:///system"\ncpu_cores = 2\nmem_mib = 16384\n'
                for i in (1, 2, 3))


def _record(engine: Engine) -> None:
    """6 VMs on h1 for 6 hours: 4 hours as rollups (pruned raw), the last 2 as raw samples."""
    with Session(engine) as s, s.begin():
        hosts = [Host(name=f"h{i}", uri="qemu:///system", cpu_cores=2.0, mem_mib=16384, stale=False)
                 for i in (1, 2, 3)]
        s.add_all(hosts)
        s.flush()
        for k in range(6):
            vm = Vm(uuid=f"u{k}", name=f"vm{k}", host_id=hosts[0].id, mem_mib=1024,
                    first_seen_s=T0)
            s.add(vm)
            s.flush()
            s.add_all(VmSampleRollup(vm_id=vm.id, host_id=hosts[0].id, bucket_s=T0 + 300 * j,
                                     cpu_cores=0.4, mem_used_mib=512, samples=15)
                      for j in range(48))
            s.add_all(VmSample(vm_id=vm.id, host_id=hosts[0].id, ts_s=T0 + 4 * 3600 + 60 * j,
                               cpu_cores=0.4, mem_used_mib=512) for j in range(120))


def test_load_history_merges_rollups_and_raw(db_engine: Engine) -> None:
    _record(db_engine)
    cfg = config.parse(HOSTS, "t.toml")
    hist = load_history(db_engine, cfg, T0, T0 + 6 * 3600)
    assert hist.names == [f"vm{k}" for k in range(6)]
    assert hist.cpu_cores.shape == (6, 72)
    assert not (hist.cpu_cores != hist.cpu_cores).any()  # no gap: rollups then raw
    assert hist.cpu_cores == pytest.approx(0.4)
    assert list(hist.initial_host) == [0] * 6
    assert [h.name for h in hist.hosts] == ["h1", "h2", "h3"]


def test_simulate_from_db_balances_the_recorded_skew(tmp_path: Path) -> None:
    db = tmp_path / "drs.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    schema.upgrade(engine)
    _record(engine)
    cfg = tmp_path / "drs.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{db}"\n{HOSTS}')
    result = CliRunner().invoke(cli, ["simulate", "--from-db", "--since", str(T0), "--until",
                                      str(T0 + 6 * 3600), "--json", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["migrations"] >= 2  # 6 x 0.4 cores on one 2-core host must be spread
    assert metrics["overload_fraction"] < 0.05
    assert metrics["memory_violations"] == 0


def test_simulate_argument_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate"])
    assert result.exit_code == 2 and "exactly one of --trace" in result.output
    cfg = tmp_path / "drs.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.sqlite"}"\n{HOSTS}')
    schema.upgrade(make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}"))
    result = runner.invoke(cli, ["simulate", "--from-db", "--since", "2h", "--config", str(cfg)])
    assert result.exit_code == 2 and "no VM samples" in result.output
    result = runner.invoke(cli, ["simulate", "--from-db", "--since", "yesterday-ish",
                                 "--config", str(cfg)])
    assert result.exit_code == 2 and "--since" in result.output


def test_parse_time() -> None:
    assert parse_time("2h", "--since", now_s=10_000.0) == 10_000.0 - 7200
    assert parse_time("now", "--until", now_s=5.0) == 5.0
    assert parse_time("1700000000", "--since") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20", "--since") == 1_700_000_000.0
    assert parse_time("2023-11-14T23:13:20+01:00", "--since") == 1_700_000_000.0
    with pytest.raises(UserError, match="--since"):
        parse_time("soon", "--since")
