"""docs/production.md, followed by deploy/production-check.sh on this machine: wheel, system
user, venv, PostgreSQL, TLS certificates, config, the systemd unit's commands as `drs`,
Prometheus with the packaged rules, a live migration over qemu+tls, a clean stop."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import _skip_or_fail, lab_unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "production-check.sh"
GUIDE = REPO / "docs" / "production.md"

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]


def test_the_script_follows_every_step_of_the_guide() -> None:
    guide_steps = re.findall(r"^## (\d+)\. ", GUIDE.read_text(), re.M)
    script_steps = re.findall(r'^step (\d+) "', SCRIPT.read_text(), re.M)
    assert guide_steps == script_steps == [str(i) for i in range(12)]


def _free_base() -> str:
    """Two free loopback addresses outside the test labs' blocks (127.0.0.x)."""
    from libvirt_drs.lab import host  # noqa: PLC0415

    for last in range(11, 250, 10):
        if not any(host.address_in_use(f"127.0.1.{last + i}") for i in range(2)):
            return f"127.0.1.{last}"
    raise AssertionError("no free address block in 127.0.1.0/24")


def test_production_guide_on_this_machine() -> None:
    reason = lab_unavailable()
    if reason:
        _skip_or_fail(reason)  # CI=true: a failure
    env = {**os.environ, "DRS_PRODUCTION_BASE": _free_base()}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env,
                          timeout=1100, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "production-check: OK" in proc.stdout
    for n in range(12):
        assert f"step {n}: " in proc.stdout, n
    assert re.search(r"job 1 vm1 kvm-1 -> kvm-2: succeeded", proc.stdout), out[-3000:]
    assert "drs:***@" in proc.stdout and "Traceback" not in out
    assert not list(Path("/var/tmp").glob("drs-production.*"))  # nothing left behind
