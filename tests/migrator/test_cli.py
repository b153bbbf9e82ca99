"""`drs migrate`, `drs jobs` and `drs maintenance exit` against the in-memory fake
hypervisor and a SQLite file: confirmation, --json, every pre-check, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from libvirt_drs.cli import cli
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from tests.migrator.fakes import FakeHypervisor

JOB_KEYS = {"id", "vm", "source", "destination", "state", "plan_id", "copy_storage",
            "queued_at", "started_at", "finished_at", "total_ms", "downtime_ms", "bytes",
            "bytes_remaining", "bytes_total", "percent", "mib_per_s", "error"}


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, FakeHypervisor]:
    db = tmp_path / "drs.sqlite"
    schema.upgrade(make_engine(f"sqlite:///{db}"))
    path = tmp_path / "drs.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n'
                    '[[hosts]]\nname = "h1"\nuri = "qemu+tcp://h1/system"\n'
                    '[[hosts]]\nname = "h2"\nuri = "qemu+tcp://h2/system"\n')
    hv = FakeHypervisor(["h1", "h2"])
    hv.add_vm("h1", "web")
    monkeypatch.setattr("libvirt_drs.migrator_builder.LibvirtHypervisor", lambda *_a, **_k: hv)
    return str(path), hv


def run(path: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", path, *args], input=stdin)
    return result.exit_code, result.output


def test_migrate_then_jobs_json(setup: tuple[str, FakeHypervisor]) -> None:
    path, hv = setup
    code, out = run(path, "migrate", "web", "--to", "h2", "--yes")
    assert code == 0, out
    assert "succeeded" in out and "downtime 42 ms" in out
    assert hv.where("web") == ["h2"]
    code, out = run(path, "jobs", "--json")
    [job] = json.loads(out)
    assert set(job) == JOB_KEYS
    assert (job["vm"], job["source"], job["destination"], job["state"]) == (
        "web", "h1", "h2", "succeeded")
    assert job["downtime_ms"] == 42.0 and job["started_at"].endswith("Z")
    assert job["total_ms"] is not None and job["percent"] == 100.0


def test_migrate_asks_first_and_a_no_moves_nothing(setup: tuple[str, FakeHypervisor]) -> None:
    path, hv = setup
    code, out = run(path, "migrate", "web", "--to", "h2", stdin="n\n")
    assert code == 2 and "live-migrate web from h1 to h2?" in out
    assert "cancelled: nothing changed" in out
    code, out = run(path, "migrate", "web", "--to", "h2", stdin="")  # a script without --yes
    assert code == 2 and "pass --yes" in out
    assert hv.migrations == [] and hv.where("web") == ["h1"]
    code, out = run(path, "migrate", "web", "--to", "h2", stdin="y\n")
    assert code == 0 and hv.where("web") == ["h2"], out


def test_migrate_json_is_the_finished_job(setup: tuple[str, FakeHypervisor]) -> None:
    path, _ = setup
    result = CliRunner().invoke(
        cli, ["--config", path, "migrate", "web", "--to", "h2", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert set(job) == JOB_KEYS and job["state"] == "succeeded"


def test_check_only_json_lists_every_verdict(setup: tuple[str, FakeHypervisor]) -> None:
    path, hv = setup
    hv.hosts["h2"].free_mem_mib = 10
    code, out = run(path, "migrate", "web", "--to", "h2", "--check-only", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    assert [c["name"] for c in data["checks"]] == ["vm_on_source", "destination", "memory",
                                                   "cpu", "disks", "networks"]
    assert [c["status"] for c in data["checks"]] == ["pass", "pass", "fail", "pass", "pass",
                                                     "pass"]
    assert hv.migrations == []


def test_check_only_prints_every_check_and_moves_nothing(
        setup: tuple[str, FakeHypervisor]) -> None:
    path, hv = setup
    hv.hosts["h2"].free_mem_mib = 10
    code, out = run(path, "migrate", "web", "--to", "h2", "--check-only")
    assert code == 1
    for name in ("vm_on_source", "destination", "memory", "cpu", "disks", "networks"):
        assert name in out
    assert "not_enough_memory" in out
    assert hv.migrations == [] and hv.where("web") == ["h1"]


def test_usage_errors_exit_2(setup: tuple[str, FakeHypervisor]) -> None:
    path, _ = setup
    assert run(path, "migrate", "nope", "--to", "h2")[0] == 2
    assert run(path, "migrate", "web", "--to", "h9")[0] == 2
    assert run(path, "migrate", "web", "--to", "h1")[0] == 2


def test_maintenance_exit_marks_host_active(setup: tuple[str, FakeHypervisor]) -> None:
    path, _ = setup
    code, out = run(path, "maintenance", "exit", "h1", "--yes")
    assert code == 0 and "h1 is active" in out
    code, out = run(path, "audit", "--json")
    [event] = [e for e in json.loads(out) if e["action"] == "host.active"]
    assert event["subject"] == "h1" and event["actor"].startswith("cli:")


def test_plans_list_show_apply_and_audit(setup: tuple[str, FakeHypervisor],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from libvirt_drs.balancer.model import Move, Plan  # noqa: PLC0415
    from libvirt_drs.db.plans import record_plan  # noqa: PLC0415
    from tests.service.fakes import fake_collect_job  # noqa: PLC0415

    path, hv = setup
    db = path.replace("drs.toml", "drs.sqlite")
    engine = make_engine(f"sqlite:///{db}")
    plan = Plan((Move("web", "h1", "h2", "balancing", "h1 hot", 0.4, 0.0, 1.0),), 0.4, 0.0, 0.1,
                notes=("stopped at the per-host limit",))
    import time  # noqa: PLC0415

    plan_id = record_plan(engine, plan, mode="manual", plan_ms=1.0, now_s=time.time(),
                          trigger="balance", actor="drs-serve")
    # the inventory before applying: one collector cycle, here over the fake hypervisor
    monkeypatch.setattr("libvirt_drs.operations.context.Cluster.refresh",
                        lambda self: fake_collect_job(self.cfg, self.engine, hv, {}).run_cycle())
    code, out = run(path, "plans", "--json")
    [listed] = json.loads(out)
    assert code == 0 and listed["id"] == plan_id and listed["applied_at"] is None
    assert listed["notes"] == ["stopped at the per-host limit"]
    code, out = run(path, "plans", "show", str(plan_id))
    assert code == 0 and "h1 hot" in out and "not applied" in out
    code, out = run(path, "plans", "apply", str(plan_id), stdin="n\n")
    assert code == 2 and hv.where("web") == ["h1"]
    code, out = run(path, "plans", "apply", str(plan_id), "--yes")
    assert code == 0 and hv.where("web") == ["h2"], out
    code, out = run(path, "plans", "show", str(plan_id), "--json")
    shown = json.loads(out)
    assert shown["applied_by"].startswith("cli:") and shown["moves"][0]["job_state"] == "succeeded"
    code, out = run(path, "audit", "--action", "plan.", "--json")
    assert [e["action"] for e in json.loads(out)] == ["plan.manual", "plan.applied"]
    assert run(path, "plans", "apply", str(plan_id), "--yes")[0] == 2  # nothing left
