"""`drs recommend`: a dry run over the database, in every format."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from libvirt_drs.cli import cli
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import Host, MigrationJob, Vm, VmSample


def _cluster(tmp_path: Path, db_url: str) -> Path:
    cfg = tmp_path / "drs.toml"
    hosts = "".join(f'[[hosts]]\nname = "h{i}"\nuri = "qemu:///system"\ncpu_cores = 2\nmem_mib = 8192\n'
                    for i in (1, 2, 3))
    cfg.write_text(f'[database]\nurl = "{db_url}"\n{hosts}[rules]\npinned = ["vm5"]\n')
    engine = make_engine(db_url)
    schema.upgrade(engine)
    now = time.time()
    with Session(engine) as s, s.begin():
        rows = [Host(name=f"h{i}", uri="qemu:///system", cpu_cores=2.0, mem_mib=8192, stale=False,
                     last_seen_s=now)
                for i in (1, 2, 3)]
        s.add_all(rows)
        s.flush()
        for k in range(6):  # everything skewed onto h1
            vm = Vm(uuid=f"u{k}", name=f"vm{k}", host_id=rows[0].id, vcpus=1, mem_mib=512,
                    first_seen_s=now - 600)
            s.add(vm)
            s.flush()
            s.add_all(VmSample(vm_id=vm.id, host_id=rows[0].id, ts_s=now - 20 * j, cpu_cores=0.3,
                               mem_used_mib=256) for j in range(20))
    engine.dispose()
    return cfg


def test_recommend_json_moves_vms_off_the_skewed_host(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'drs.sqlite'}"
    cfg = _cluster(tmp_path, db_url)
    result = CliRunner().invoke(cli, ["recommend", "--json", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) >= {"imbalance_before", "imbalance_after", "target", "moves"}
    assert data["imbalance_before"] > data["target"]
    assert data["imbalance_after"] < data["imbalance_before"]
    assert data["moves"], "a skewed cluster needs moves"
    for move in data["moves"]:
        assert set(move) >= {"vm", "source", "destination", "reason", "imbalance_before",
                             "imbalance_after", "cost_s"}
        assert move["source"] == "h1" and move["destination"] in ("h2", "h3")
        assert move["vm"] != "vm5"  # pinned
    # a dry run: nothing queued
    engine = make_engine(db_url)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(MigrationJob)) == 0


def test_recommend_html_and_markdown_files_are_private(tmp_path: Path) -> None:
    cfg = _cluster(tmp_path, f"sqlite:///{tmp_path / 'drs.sqlite'}")
    for fmt, name in (("html", "plan.html"), ("markdown", "plan.md")):
        out = tmp_path / "reports" / name
        result = CliRunner().invoke(cli, ["recommend", "--format", fmt, "--output", str(out),
                                          "--config", str(cfg)])
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        text = out.read_text()
        assert "h1" in text and "vm" in text
    html = (tmp_path / "reports" / "plan.html").read_text()
    assert 'id="drs-charts"' in html and "Chart.js v" in html  # the charts, inlined
    assert "<script src=" not in html and "<link" not in html  # nothing loaded from elsewhere


def test_recommend_table_and_errors(tmp_path: Path) -> None:
    cfg = _cluster(tmp_path, f"sqlite:///{tmp_path / 'drs.sqlite'}")
    result = CliRunner().invoke(cli, ["recommend", "--config", str(cfg)])
    assert result.exit_code == 0 and "imbalance" in result.output
    result = CliRunner().invoke(cli, ["recommend", "--format", "html", "--config", str(cfg)])
    assert result.exit_code == 2 and "--output" in result.output
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    result = CliRunner().invoke(cli, ["recommend", "--config", str(empty)])
    assert result.exit_code == 2 and "no [[hosts]] configured" in result.output
