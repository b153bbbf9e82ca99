"""Process bookkeeping by pid: never by name. Every kill checks the pid still is ours."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # a zombie is dead for our purposes (its parent has not reaped it yet)
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def mnt_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def pids_in_mnt_ns(ns: str) -> list[int]:
    """Every live process in the mount namespace `ns` (as read from /proc/<pid>/ns/mnt)."""
    if not ns or ns == mnt_ns(os.getpid()):
        return []  # never the caller's own namespace
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and mnt_ns(int(entry.name)) == ns and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def has_open_file_under(pid: int, directory: Path) -> bool:
    """Whether process `pid` holds a file under `directory` open (e.g. a guest's serial log)."""
    prefix = str(directory).rstrip("/") + "/"
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd).startswith(prefix):
                return True
        except OSError:
            continue
    return False


def pids_holding_files_under(directory: Path) -> list[int]:
    """Live processes holding a file under `directory` open: a lab's own leftovers, found
    by the lab's private directory (never by a process name)."""
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and alive(int(e.name))
            and has_open_file_under(int(e.name), directory)]


def read_pidfile(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def terminate(pids: Iterable[int], timeout_s: float = 5.0) -> None:
    """SIGTERM the given pids, wait up to timeout_s, then SIGKILL what is left."""
    pending = [p for p in pids if alive(p)]
    for pid in pending:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        _reap(pending)
        pending = [p for p in pending if alive(p)]
        if pending:
            time.sleep(0.05)
    for pid in pending:
        log.debug("pid %d did not stop on SIGTERM; sending SIGKILL", pid)
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pending and time.monotonic() < deadline:
        _reap(pending)
        pending = [p for p in pending if alive(p)]
        if pending:
            time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pids: Iterable[int]) -> None:
    """Collect our own exited children so they do not linger as zombies."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
