"""The session watchdog: a test stuck where pytest-timeout's SIGALRM cannot reach it (a call
blocked inside C, such as a libvirt RPC to a host that stopped answering) ends the session
with every thread's stack, after taking down the labs this session started.

tests/conftest.py imports the hook and registers labs with track()/untrack().
DRS_TEST_HUNG_GRACE_S: seconds past a test's own timeout before the watchdog fires (300).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

GRACE_ENV = "DRS_TEST_HUNG_GRACE_S"
EXIT_HUNG = 3
_session_labs: list[Any] = []


def grace_s() -> float:
    return float(os.environ.get(GRACE_ENV) or 300.0)


def track(lab: Any) -> None:
    _session_labs.append(lab)


def untrack(lab: Any) -> None:
    _session_labs.remove(lab)


def _test_timeout_s(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 600)


def _hung(item: pytest.Item, after_s: float) -> None:
    """Print every thread's stack, take down this session's labs (by their pids, never by
    name) and end the run: CI fails in minutes, naming the place of the hang, instead of
    running into its own time limit."""
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman:  # as pytest-timeout's thread method: give the run its real stderr back
        capman.suspend_global_capture(item)
    out = sys.stderr
    print(f"\n{item.nodeid}: still running {after_s:.0f} s after it started, out of pytest-timeout's "
          "reach; stacks follow, then the session ends", file=out, flush=True)
    faulthandler.dump_traceback(file=out, all_threads=True)
    for lab in [*_session_labs, *_labs_half_up()]:
        try:
            lab.down()
        except Exception as exc:  # noqa: BLE001 (report and go on: the next lab still goes)
            print(f"taking down lab {lab.name}: {exc}", file=out, flush=True)
    out.flush()
    os._exit(EXIT_HUNG)


def _labs_half_up() -> list[Any]:
    """Labs this process is still starting: their libvirtds are its own children."""
    from libvirt_drs.lab import state  # noqa: PLC0415
    from libvirt_drs.lab.lab import Lab  # noqa: PLC0415

    known = {lab.name for lab in _session_labs}
    found = []
    for name in state.names():
        st = state.load(name)
        if name not in known and st and any(_parent_pid(h.pid) == os.getpid() for h in st.hosts):
            found.append(Lab(st))
    return found


def _parent_pid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """The watchdog: a test (setup and teardown included) that outlives its timeout by
    grace_s() ends the session through _hung."""
    after_s = _test_timeout_s(item) + grace_s()
    timer = threading.Timer(after_s, _hung, args=(item, after_s))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
