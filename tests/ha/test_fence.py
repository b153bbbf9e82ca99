"""Fence commands: exit 0 means off; failures and timeouts are one line that never
repeats an argument (a BMC password)."""

from __future__ import annotations

import sys

from libvirt_drs.ha.decide import HostSeen, failed
from libvirt_drs.ha.fence import CommandFencer


def test_exit_0_means_off_and_anything_else_is_a_failure() -> None:
    fencer = CommandFencer({"ok": ("true",), "bad": ("false",), "none": ()}, timeout_s=10)
    assert fencer.fence("ok").ok and fencer.fence("ok").detail == "true exited 0"
    bad = fencer.fence("bad")
    assert not bad.ok and bad.detail == "false exited 1"
    assert not fencer.fence("none").ok and "no fence_command" in fencer.fence("none").detail
    assert not fencer.fence("unknown").ok


def test_a_password_argument_is_never_shown() -> None:
    script = "import sys; print('login failed for admin with', sys.argv[2], file=sys.stderr); sys.exit(3)"
    fencer = CommandFencer({"h": (sys.executable, "-c", script, "-p", "Sekr1t-BMC")}, 10)
    res = fencer.fence("h")
    assert not res.ok and "exited 3" in res.detail and "Sekr1t-BMC" not in res.detail


def test_a_hanging_fence_times_out() -> None:
    fencer = CommandFencer({"h": ("sleep", "30")}, timeout_s=0.5)
    res = fencer.fence("h")
    assert not res.ok and "timed out after 0.5 s" in res.detail


def test_only_hosts_seen_before_and_silent_too_long_fail() -> None:
    hosts = [HostSeen("a", 100.0), HostSeen("b", 95.0), HostSeen("c", None)]
    assert failed(hosts, now_s=101.0, grace_s=4.0) == ["b"]
