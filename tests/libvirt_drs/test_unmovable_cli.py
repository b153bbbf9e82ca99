"""`drs recommend` and `drs maintenance enter` name, for a VM that cannot move, the hard
constraint that excluded each host (SQLite file, the fake hypervisor for the migrator)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from libvirt_drs.cli import cli
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import Host, HostStateRow, Vm, VmSample
from tests.migrator.fakes import FakeHypervisor

# h1 is in maintenance; big (2 GiB) fits nowhere: h2 is too small, h3 runs its
# anti-affinity partner.
EXPECTED = ("host h1 entering maintenance; no host satisfies every hard constraint: "
            "h2 memory (needs 2048 MiB, 1024 free); h3 anti-affinity 'web' (with partner)")
PLACEMENT = {"big": ("h1", 2048), "partner": ("h3", 512)}


def _cluster(tmp_path: Path) -> Path:
    db_url = f"sqlite:///{tmp_path / 'drs.sqlite'}"
    mem = {"h1": 8192, "h2": 1024, "h3": 8192}
    cfg = tmp_path / "drs.toml"
    hosts = "".join(f'[[hosts]]\nname = "{h}"\nuri = "qemu+tcp://{h}/system"\ncpu_cores = 4\n'
                    f"mem_mib = {m}\n" for h, m in mem.items())
    cfg.write_text(f'[database]\nurl = "{db_url}"\n{hosts}'
                   '[[rules.anti_affinity]]\nname = "web"\nvms = ["big", "partner"]\n')
    engine = make_engine(db_url)
    schema.upgrade(engine)
    now = time.time()
    with Session(engine) as s, s.begin():
        rows = {h: Host(name=h, uri=f"qemu+tcp://{h}/system", cpu_cores=4.0, mem_mib=m,
                        stale=False, last_seen_s=now) for h, m in mem.items()}
        s.add_all(rows.values())
        s.add(HostStateRow(host_name="h1", state="maintenance", changed_s=now))
        s.flush()
        for name, (host, mib) in PLACEMENT.items():
            vm = Vm(uuid=f"u-{name}", name=name, host_id=rows[host].id, vcpus=1, mem_mib=mib,
                    first_seen_s=now - 600)
            s.add(vm)
            s.flush()
            s.add_all(VmSample(vm_id=vm.id, host_id=rows[host].id, ts_s=now - 20 * j,
                               cpu_cores=0.2, mem_used_mib=mib / 2) for j in range(10))
    engine.dispose()
    return cfg


def test_recommend_names_what_excluded_each_host(tmp_path: Path) -> None:
    cfg = _cluster(tmp_path)
    text = CliRunner().invoke(cli, ["recommend", "--config", str(cfg)])
    assert text.exit_code == 0, text.output
    assert f"unmovable: big (maintenance): {EXPECTED}" in text.output
    data = json.loads(CliRunner().invoke(cli, ["recommend", "--json", "--config",
                                               str(cfg)]).output)
    [entry] = data["unmovable"]
    assert [(e["host"], e["constraint"]) for e in entry["excluded"]] == [
        ("h2", "memory_fits"), ("h3", "anti_affinity")]


def test_maintenance_enter_says_what_could_not_move_and_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cluster(tmp_path)
    hv = FakeHypervisor(["h1", "h2", "h3"])
    for name, (host, mib) in PLACEMENT.items():
        hv.add_vm(host, name, mem_mib=mib)
    monkeypatch.setattr("libvirt_drs.migrator_builder.LibvirtHypervisor", lambda *_a, **_k: hv)
    monkeypatch.setattr("libvirt_drs.operations.context.Cluster.refresh", lambda _self: None)
    result = CliRunner().invoke(cli, ["--config", str(cfg), "maintenance", "enter", "h1", "--yes"])
    assert result.exit_code == 1, result.output
    assert f"not moved: big on h1: {EXPECTED} [maintenance]" in result.output
    assert "h1 is in maintenance but still runs 1 VM(s)" in result.output
    assert hv.migrations == [] and hv.where("big") == ["h1"]
