"""Database passwords never appear in output, logs, reports, metrics or error messages.

Real processes (`python -m libvirt_drs -vv ...`, so debug logging is on) against (a) a PostgreSQL
URL whose server does not answer, (b) the real test PostgreSQL with a wrong password,
(c) the real one with the right password: every command's stdout, stderr, the files it
writes and `drs serve`'s /metrics and /healthz are searched for the password."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.service.serve_proc import ServeProcess, free_port, wait_for

DRS = [sys.executable, "-m", "libvirt_drs", "-vv"]
SECRET = "S3cr3t-Pw_4-drs-tests"
COMMANDS = [["config", "check"], ["db", "current"], ["db", "upgrade"], ["status", "--json"],
            ["jobs", "--json"], ["collect", "--once", "--prime-s", "0.1"],
            ["migrate", "test", "--to", "h2"], ["rebalance", "--yes"], ["recommend"],
            ["maintenance", "enter", "h1"]]


def _config(tmp: Path, url: str) -> Path:
    path = tmp / "drs.toml"
    path.write_text(f'[database]\nurl = "{url}"\n'
                    '[[hosts]]\nname = "h1"\nuri = "test:///default"\n'
                    '[[hosts]]\nname = "h2"\nuri = "test:///default"\n')
    return path


def _run(config: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DRS, "--config", str(config), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120, check=False)


def _files_text(tmp: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in tmp.rglob("*")
                   if p.is_file() and p.suffix != ".toml")


def _no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text, text[-2000:]


def test_unreachable_postgres_errors_hide_the_password(tmp_path: Path) -> None:
    config = _config(tmp_path, f"postgresql+psycopg://drs:{SECRET}@127.0.0.1:1/drs")
    for args in COMMANDS:
        r = _run(config, args, tmp_path)
        _no_secret(SECRET, r.stdout, r.stderr)
        if args != ["config", "check"]:
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert "Traceback" not in r.stderr, (args, r.stderr)
            assert r.stderr.strip().splitlines()[-1].startswith("drs: error:"), r.stderr
            assert "***" in r.stderr or "127.0.0.1" in r.stderr, r.stderr
    _no_secret(SECRET, _files_text(tmp_path))


def test_wrong_password_is_not_echoed(tmp_path: Path, fresh_postgres_url: str) -> None:
    url = make_url(fresh_postgres_url).set(password=SECRET).render_as_string(
        hide_password=False)
    config = _config(tmp_path, url)
    for args in (["db", "upgrade"], ["status"], ["jobs"]):
        r = _run(config, args, tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        _no_secret(SECRET, r.stdout, r.stderr)


def test_working_postgres_password_never_shown(tmp_path: Path, fresh_postgres_url: str) -> None:
    password = make_url(fresh_postgres_url).password
    assert password
    config = _config(tmp_path, fresh_postgres_url)
    outputs = []
    for args in ([["db", "upgrade"]] + COMMANDS
                 + [["recommend", "--format", "html", "--output", str(tmp_path / "r.html")],
                    ["recommend", "--format", "markdown", "--output", str(tmp_path / "r.md")],
                    ["config", "check"]]):
        r = _run(config, args, tmp_path)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        outputs += [r.stdout, r.stderr]
    _no_secret(password, *outputs, _files_text(tmp_path))
    for report in ("r.html", "r.md"):
        if (tmp_path / report).exists():
            assert (tmp_path / report).stat().st_mode & 0o777 == 0o600

    serve = ServeProcess(config, free_port(), ["--collect-interval", "0.5",
                                               "--balance-interval", "2",
                                               "--observe-interval", "0.5",
                                               "--first-balance-delay", "1"],
                         tmp_path / "serve.log")
    try:
        serve.wait_healthy(60)
        assert wait_for(lambda: serve.value("drs_planner_runs_total", mode="manual") or
                        serve.value("drs_planner_runs_total", mode="automatic"), 60), \
            serve.output()
        texts = [serve.get("/metrics")[1], serve.get("/healthz")[1]]
        serve.signal(signal.SIGTERM)
        assert serve.proc.wait(timeout=60) == 0
    finally:
        serve.stop()
    _no_secret(password, *texts, serve.log.read_text(errors="replace"))


@pytest.mark.skipif(os.environ.get("DRS_TEST_POSTGRES_URL") is None, reason="no PostgreSQL")
def test_the_password_of_the_suite_database_is_not_in_any_output(tmp_path: Path) -> None:
    """`drs db current` on the suite's own server: the URL shown is redacted."""
    url = os.environ["DRS_TEST_POSTGRES_URL"]
    password = make_url(url).password
    r = _run(_config(tmp_path, url), ["db", "current", "--json"], tmp_path)
    assert password and password not in r.stdout + r.stderr
