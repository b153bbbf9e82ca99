"""The session watchdog ends a run stuck out of pytest-timeout's reach, naming the place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import watchdog

CHECKOUT = Path(__file__).resolve().parents[2]
STUCK = '''
import signal, time, pytest

@pytest.mark.timeout(1)
def test_stuck_where_sigalrm_cannot_reach():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # as a call blocked in C
    time.sleep(120)
'''


def test_a_test_blocked_past_its_timeout_ends_the_session_with_its_stack(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(
        "from tests.support.watchdog import pytest_runtest_protocol  # noqa: F401\n")
    (tmp_path / "test_stuck.py").write_text(STUCK)
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT), watchdog.GRACE_ENV: "2",
           "DRS_LAB_ROOT": str(tmp_path / "labs")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "test_stuck.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == watchdog.EXIT_HUNG, done.stdout + done.stderr
    assert "test_stuck.py::test_stuck_where_sigalrm_cannot_reach: still running 3 s" in done.stderr
    assert 'test_stuck.py", line 7 in test_stuck_where_sigalrm_cannot_reach' in done.stderr
