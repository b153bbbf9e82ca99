"""Fencing: make sure a failed host is off before its VMs run anywhere else.

A fence command is any executable with arguments (`[[hosts]] fence_command`, e.g. one of
Debian's fence-agents such as `fence_ipmilan ... --action off`); exit 0 means the host is
off. Its arguments may hold a password: they are never logged, only the program's name,
the exit code and the first line of what it printed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from libvirt_drs.libvirt_errors import first_line
from libvirt_drs.secrets import redact


@dataclass(frozen=True)
class FenceResult:
    ok: bool
    detail: str  # "fence_ipmilan exited 0", "... exited 1: Unable to connect", "timed out"


class Fencer(Protocol):
    def fence(self, host: str) -> FenceResult: ...


class CommandFencer:
    """Runs each host's configured fence command (the production fencer)."""

    def __init__(self, commands: dict[str, tuple[str, ...]], timeout_s: float) -> None:
        self.commands = commands
        self.timeout_s = timeout_s

    def fence(self, host: str) -> FenceResult:
        argv = self.commands.get(host, ())
        if not argv:
            return FenceResult(False, f"{host} has no fence_command")
        program = Path(argv[0]).name
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True,
                                  timeout=self.timeout_s, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            return FenceResult(False, f"{program} timed out after {self.timeout_s:g} s")
        except OSError as exc:
            return FenceResult(False, f"{program} could not run: {exc.strerror}")
        said = first_line(done.stderr) or first_line(done.stdout)
        detail = f"{program} exited {done.returncode}" + (f": {redact(said)}" if said else "")
        for arg in argv[1:]:  # never repeat an argument (a password) it may have echoed
            if len(arg) >= 4:
                detail = detail.replace(arg, "***")
        return FenceResult(done.returncode == 0, detail)
