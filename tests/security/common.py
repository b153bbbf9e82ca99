"""Shared by the security tests: a config on libvirt's test driver and output checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import Result

from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine

COUNTED_TABLES = ("migration_jobs", "plans", "audit_log", "vms", "host_samples")


def driver_config(tmp: Path, extra: str = "") -> Path:
    """Two hosts on libvirt's built-in test driver (one VM `test` each), SQLite at head."""
    db = tmp / "drs.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    schema.upgrade(engine)
    engine.dispose()
    path = tmp / "drs.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n'
                    '[[hosts]]\nname = "h1"\nuri = "test:///default"\n'
                    '[[hosts]]\nname = "h2"\nuri = "test:///default"\n' + extra)
    return path


def footprint(tmp: Path) -> tuple[frozenset[str], tuple[int, ...]]:
    """Files under `tmp` (WAL/SHM side files aside: reading creates them) and row counts."""
    files = frozenset(str(p.relative_to(tmp)) for p in tmp.rglob("*")
                      if not p.name.endswith(("-wal", "-shm", "-journal")))
    counts: tuple[int, ...] = ()
    db = tmp / "drs.sqlite"
    if db.exists():
        with sqlite3.connect(db) as conn:
            counts = tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                           for t in COUNTED_TABLES)
    return files, counts


def error_lines(text: str) -> list[str]:
    """The error lines of a CLI output: ours (`drs: error:`) or click's (`Error:`)."""
    return [ln for ln in text.splitlines() if ln.startswith(("drs: error:", "Error:"))]


def assert_clean_failure(result: Result, args: list[str]) -> None:
    """Exit 2 with exactly one error line and no traceback (click's usage hint may precede
    its `Error:` line)."""
    out = result.output  # stdout and stderr interleaved (click >= 8.2)
    assert "Traceback" not in out, (args, out)
    assert result.exit_code == 2, (args, result.exit_code, out)
    lines = error_lines(out)
    assert len(lines) == 1, (args, out)
