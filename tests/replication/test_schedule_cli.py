"""When points are due (pure), and the replication commands' answers without a lab."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from libvirt_drs.cli import cli
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.replication.schedule import Replica, due


def test_due_every_half_rpo_furthest_behind_first_and_failures_wait() -> None:
    now = 1000.0
    replicas = [Replica("fresh", 30, now - 10, None),  # 10 s old: not yet (half RPO is 15)
                Replica("old", 30, now - 20, None),  # 20 s: due
                Replica("older", 60, now - 50, None),  # 50 of 60 s: further behind than "old"
                Replica("never", 30, None, None),  # no point at all: first
                Replica("failing", 30, None, now - 3),  # failed 3 s ago: waits for the retry
                Replica("failed-long-ago", 30, now - 40, now - 30)]
    assert due(replicas, now) == ["never", "failed-long-ago", "older", "old"]


def _config(tmp_path: Path, policies: str = "") -> Path:
    db = tmp_path / "drs.sqlite"
    schema.upgrade(make_engine(f"sqlite:///{db}"))
    path = tmp_path / "drs.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n'
                    '[[hosts]]\nname = "a1"\nuri = "test:///default"\ngroup = "a"\n'
                    '[[hosts]]\nname = "b1"\nuri = "test:///default"\ngroup = "b"\n' + policies)
    return path


def test_replicate_without_policies_is_one_line_exit_2(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["--config", str(_config(tmp_path)), "replicate"])
    assert out.exit_code == 2
    assert out.output.strip().splitlines() == [
        f"drs: error: {tmp_path / 'drs.toml'}: no [[replication.policies]]: nothing to "
        "replicate (docs/replication.md)"]


def test_status_before_any_point_says_none_and_out_of_rpo(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[[replication.policies]]\nvms = ["web"]\nprimary = "a"\n'
                            'recovery = "b"\nrecovery_dir = "/r"\nrpo_s = 30\n')
    out = CliRunner().invoke(cli, ["--config", str(cfg), "replication", "status", "--json"])
    assert out.exit_code == 0, out.output
    row, = json.loads(out.output)["vms"]
    assert row["vm"] == "web" and row["recovery_point_at"] is None
    assert row["within_rpo"] is False and row["chain_length"] == 0
    unknown = CliRunner().invoke(cli, ["--config", str(cfg), "replicate", "--once", "--vm", "db"])
    assert unknown.exit_code == 2
    assert "not in any protection policy: db (protected: web)" in unknown.output
