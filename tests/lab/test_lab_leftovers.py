"""A leftover lab after a reboot: its recorded pids and namespace may now name unrelated
processes. Taking it down must neither kill them nor refuse (CI starts on such a machine).
No lab needed: a plain `sleep` plays the unrelated process that reused a recorded pid."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from libvirt_drs.lab import host, pool, procs, state
from libvirt_drs.lab.lab import Lab


@pytest.fixture
def stranger() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "120"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def leftover(root: Path, name: str, pid: int, mnt_ns: str) -> state.LabState:
    """The state file of a lab whose session died, its pids reused by `pid`."""
    lab_dir = root / name
    h_dir = lab_dir / "hosts" / "h1"
    (h_dir / "run" / "qemu").mkdir(parents=True)
    (h_dir / "run" / "qemu" / "vm1.pid").write_text(f"{pid}\n")
    (h_dir / "virtlockd.pid").write_text(f"{pid}\n")
    st = state.LabState(name=name, dir=str(lab_dir), storage="shared", host_cpu_cores=1.0,
                        host_mem_mib=2048, kernel="", initrd="",
                        hosts=[state.LabHost(name="h1", address="127.0.0.250",
                                             uri="qemu+tcp://127.0.0.250/system", host_uuid="u",
                                             dir=str(h_dir), pid=pid, mnt_ns=mnt_ns)])
    st.save()
    return st


@pytest.mark.parametrize("recorded_ns", ["own", "gone"])
def test_a_leftover_whose_pids_were_reused_is_stale_and_goes_down_without_killing_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stranger: int, recorded_ns: str) -> None:
    monkeypatch.setenv(state.ROOT_ENV, str(tmp_path))
    # "own": after a reboot the namespace numbers repeat, so the recorded one may be ours
    ns = procs.mnt_ns(os.getpid()) if recorded_ns == "own" else "mnt:[4026599999]"
    st = leftover(tmp_path, "pytest-250", stranger, ns)

    assert host.daemon_pid(st.hosts[0]) == []
    assert host.guest_pids(st.hosts[0]) == []
    assert host.lockd_pid(st.hosts[0]) == []
    assert pool.stale("pytest-250")

    Lab.load("pytest-250").down()
    assert procs.alive(stranger), "taking the leftover down killed an unrelated process"
    assert state.load("pytest-250") is None
