"""`drs collect` and `drs status` end to end on libvirt's test driver and SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from libvirt_drs.cli import cli

CONFIG = """
[database]
url = "sqlite:///{db}"

[collector]
interval_s = 0.3
timeout_s = 0.25

[[hosts]]
name = "t1"
uri = "test:///default"
cpu_cores = 2.0

[[hosts]]
name = "down"
uri = "qemu+tcp://127.0.0.1:1/system"
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "drs.toml"
    path.write_text(CONFIG.format(db=tmp_path / "drs.sqlite"))
    return path


def _run(path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(path), *args])
    return result.exit_code, result.stdout, result.stderr


def test_commands_need_the_schema(tmp_path: Path) -> None:
    path = _config(tmp_path)
    code, _, err = _run(path, "status")
    assert code == 2 and "drs db upgrade" in err


def test_collect_once_then_status_json(tmp_path: Path) -> None:
    path = _config(tmp_path)
    assert _run(path, "db", "upgrade")[0] == 0
    code, _, err = _run(path, "collect", "--once", "--prime-s", "0.1")
    # the samples of t1 are written, but a host that did not answer is a failure
    assert code == 1 and "1 of 2 hosts not sampled: down: " in err, err
    code, out, err = _run(path, "status", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"hosts", "vms", "imbalance", "target", "verdict",
                         "hosts_without_data", "window_s", "at", "balancing", "cpu_served",
                         "contention"}
    hosts = {h["name"]: h for h in data["hosts"]}
    assert hosts["down"]["stale"] and "refused" in hosts["down"]["error"]
    assert not hosts["t1"]["stale"] and hosts["t1"]["vms"] == 1 and hosts["t1"]["cpu_cores"] == 2.0
    assert [(v["name"], v["host"]) for v in data["vms"]] == [("test", "t1")]
    code, out, _ = _run(path, "status")
    assert code == 0 and "t1" in out and "imbalance" in out
    down = next(line for line in out.splitlines() if "down" in line and "│" in line)
    assert down.count("no data") == 3 and "0.0" not in down  # unknown, never 0 % (cpu wait too)
    assert "not counted (stale): down" in " ".join(out.split())
    code, out, _ = _run(path, "collect", "--once", "--prime-s", "0.1", "--json")
    assert code == 1
    sampled = json.loads(out)
    assert [(h["name"], h["ok"]) for h in sampled["hosts"]] == [("t1", True), ("down", False)]


def test_collect_loop_logs_a_line_per_cycle_and_stops_cleanly(tmp_path: Path) -> None:
    path = _config(tmp_path)
    assert _run(path, "db", "upgrade")[0] == 0
    proc = subprocess.Popen([sys.executable, "-m", "libvirt_drs", "--config", str(path), "collect"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 20
        lines: list[str] = []
        assert proc.stderr is not None
        while time.monotonic() < deadline and len(lines) < 3:
            line = proc.stderr.readline()
            if "cycle:" in line:
                lines.append(line)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(lines) == 3
    assert "1/2 hosts" in lines[0] and "stale: down" in lines[0]
    assert proc.returncode == 0, err
    assert "Traceback" not in err
