"""What the executor asks its owner about each job: may it start, should it abort, and why.

The owner (the CLI runs jobs unrestricted; `drs serve` refuses new starts and aborts
running migrations when it shuts down) injects a JobControl into the Executor; control
flows one way, from the runner through the executor, which calls the control and never
the other way round.
"""

from __future__ import annotations

from typing import Protocol

from libvirt_drs.migrator.model import Job


class JobControl(Protocol):
    def start(self, job: Job) -> str | None:
        """Called before an admitted job's pre-checks. None: it starts (and counts as
        running until `finished`); a reason: it does not start and ends `aborted`."""

    def abort_reason(self, job: Job) -> str | None:
        """Polled while the migration runs; a reason aborts it (libvirt abortJob)."""

    def finished(self, job: Job) -> None:
        """A job that `start` let through has ended, whatever its outcome."""


class Unrestricted:
    """Every job starts and runs until its own timeout or stall limit."""

    def start(self, job: Job) -> str | None:
        return None

    def abort_reason(self, job: Job) -> str | None:
        return None

    def finished(self, job: Job) -> None:
        return None


UNRESTRICTED = Unrestricted()
