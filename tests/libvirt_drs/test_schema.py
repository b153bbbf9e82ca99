"""Schema: Alembic revisions create, drop and re-create it on SQLite and PostgreSQL,
and agree with the SQLAlchemy models."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, text

from libvirt_drs.cli import cli
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.models import Base
from libvirt_drs.errors import UserError

TABLES = {"hosts", "host_states", "vms", "host_samples", "vm_samples", "host_sample_rollups",
          "vm_sample_rollups", "plans", "planned_moves", "migration_jobs", "audit_log", "leases"}


def _tables(engine) -> set[str]:  # type: ignore[no-untyped-def]
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    schema.upgrade(engine)
    assert schema.current_revision(engine) == schema.head_revision()
    assert TABLES <= _tables(engine)
    schema.downgrade(engine, "base")
    assert schema.current_revision(engine) is None
    assert _tables(engine) == set()
    schema.upgrade(engine)
    assert TABLES <= _tables(engine)
    engine.dispose()


def test_models_and_revisions_agree(db_engine) -> None:  # type: ignore[no-untyped-def]
    with db_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_cli_upgrade_creates_sqlite_file_0600_in_wal_mode(tmp_path: Path) -> None:
    cfg = tmp_path / "drs.toml"
    cfg.write_text("")
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(cli, ["db", "upgrade", "--config", str(cfg)])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    db = tmp_path / "drs.sqlite"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert schema.current_revision(engine) == schema.head_revision()
    result = CliRunner().invoke(cli, ["db", "current", "--json", "--config", str(cfg)])
    assert f'"current": "{schema.head_revision()}"' in result.output
    result = CliRunner().invoke(cli, ["db", "downgrade", "base", "--config", str(cfg)],
                                input="n\n")
    assert result.exit_code == 2 and "drop every table" in result.output
    assert schema.current_revision(engine) == schema.head_revision()  # nothing dropped
    result = CliRunner().invoke(cli, ["db", "downgrade", "base", "--yes", "--config", str(cfg)])
    assert result.exit_code == 0 and "base" in result.output


def test_cli_upgrade_on_postgres(fresh_postgres_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "drs.toml"
    cfg.write_text(f'[database]\nurl = "{fresh_postgres_url}"\n')
    result = CliRunner().invoke(cli, ["db", "upgrade", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert TABLES <= _tables(make_engine(fresh_postgres_url))


def test_unreachable_database_is_one_line_without_password(tmp_path: Path) -> None:
    cfg = tmp_path / "drs.toml"
    cfg.write_text('[database]\nurl = "postgresql+psycopg://drs:hunter2-secret@127.0.0.1:1/drs"\n')
    result = CliRunner().invoke(cli, ["db", "upgrade", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "hunter2-secret" not in result.output
    assert "Traceback" not in result.output


def test_require_current_refuses_old_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with pytest.raises(UserError, match="drs db upgrade"):
        schema.require_current(engine)
