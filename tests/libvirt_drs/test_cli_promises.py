"""What the CLI promises for every command: --json where it reports, --yes where it
changes the cluster, a readable jobs list at 80 columns, no Alembic noise at -v."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from libvirt_drs.cli import cli

# long-running processes, not reports
NO_REPORT = {("serve",), ("demo",)}
# every command that moves VMs, changes a host's state or drops data
CHANGES = {("migrate",), ("rebalance",), ("maintenance", "enter"), ("maintenance", "exit"),
           ("evacuate",), ("plans", "apply"), ("db", "downgrade"), ("ha", "fenced"),
           ("ha", "clear"), ("failover",), ("failback",)}


def _commands() -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(cli)

    def walk(prefix: tuple[str, ...], cmd: click.Command) -> Iterator[tuple[tuple[str, ...], click.Command]]:
        if isinstance(cmd, click.Group):
            if cmd.invoke_without_command:
                yield prefix, cmd
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                yield from walk((*prefix, name), sub)
        else:
            yield prefix, cmd

    yield from walk((), cli)


def _options(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params for o in getattr(p, "opts", [])}


def test_every_command_that_reports_takes_json() -> None:
    missing = [" ".join(path) for path, cmd in _commands()
               if path not in NO_REPORT and "--json" not in _options(cmd)]
    assert missing == []


def test_every_command_that_changes_the_cluster_asks_unless_yes() -> None:
    found = {path for path, cmd in _commands() if "--yes" in _options(cmd)}
    assert found == CHANGES


def test_every_option_is_documented() -> None:
    bare = [f"{' '.join(path)} {p.opts[0]}" for path, cmd in _commands() for p in cmd.params
            if isinstance(p, click.Option) and not p.help and p.opts[0] not in ("--config",)]
    assert bare == []


@pytest.fixture
def jobs_db(tmp_path: Path) -> Path:
    from libvirt_drs.db import schema  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415
    from libvirt_drs.db.jobs import SqlJobStore  # noqa: PLC0415
    from libvirt_drs.migrator.model import CompletedStats, JobState, MoveRequest  # noqa: PLC0415

    db = tmp_path / "drs.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    schema.upgrade(engine)
    store = SqlJobStore(engine)
    [job] = store.enqueue([MoveRequest("a-rather-long-vm-name", "kvm-a1", "kvm-b2")], "me")
    store.finish(job.id, JobState.SKIPPED, "destination_in_maintenance: kvm-b2 is in "
                 "maintenance and takes no VM until drs maintenance exit kvm-b2", CompletedStats())
    cfg = tmp_path / "drs.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    return cfg


def test_jobs_at_80_columns_cut_nothing(jobs_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    from libvirt_drs.cli import common  # noqa: PLC0415

    monkeypatch.setattr(common.console, "width", 80)
    out = CliRunner().invoke(cli, ["--config", str(jobs_db), "jobs"]).output
    assert "a-rather-long-vm-name kvm-a1 -> kvm-b2 skipped" in out, out
    assert "takes no VM until drs maintenance exit kvm-b2" in " ".join(out.split())
    assert "…" not in out and "..." not in out
    data = json.loads(CliRunner().invoke(cli, ["--config", str(jobs_db), "jobs", "--json"]).output)
    assert data[0]["state"] == "skipped" and "total_ms" in data[0]


def test_verbose_does_not_print_alembic_internals(tmp_path: Path) -> None:
    cfg = tmp_path / "drs.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "drs.sqlite"}"\n')
    result = CliRunner().invoke(cli, ["-v", "--config", str(cfg), "db", "upgrade", "--json"])
    assert result.exit_code == 0, result.output
    assert "alembic" not in result.output.lower() and "Context impl" not in result.output
    assert json.loads(result.stdout)["current"] is not None
