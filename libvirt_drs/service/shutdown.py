"""SIGTERM handling: stop scheduling, let migrations finish within a grace period, abort
the rest, release leadership, exit 0.

The grace period is a hard budget for the whole shutdown, counted from the signal:
running migrations may use its first part; then a third of it (at most 15 s) is kept for
aborting whatever still runs and for the abort to settle; the last fifth (at most 2 s)
is left for closing connections and the interpreter's exit, so the process is gone
within `grace_s`. A migration whose abort has not settled by then keeps its job row
`running`; the next start reconciles it from where libvirt says the VM runs.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

log = logging.getLogger(__name__)


class MigrationControl(Protocol):
    """What shutdown needs from the running migrations of this process."""

    def running_count(self) -> int: ...

    def stop_admitting(self) -> None:
        """No new migration starts; queued ones of this process end as aborted."""

    def abort_running(self, reason: str) -> int:
        """Ask every running migration to abort; returns how many were asked."""

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no migration of this process runs; False on timeout."""


class Stoppable(Protocol):
    def stop(self) -> None: ...

    def wait_idle(self, timeout_s: float) -> bool: ...


class StopSignal:
    """An Event set by SIGTERM or SIGINT (installed from the main thread only)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def install(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> StopSignal:
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set():
            log.warning("%s again: still shutting down (the grace period is a hard limit)",
                        signal.Signals(signum).name)
            return
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def set(self, reason: str = "requested") -> None:
        self.signal_name = reason
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self.event.wait(timeout_s)


@dataclass(frozen=True)
class ShutdownReport:
    duration_s: float
    finished_in_grace: bool  # every migration ended before the abort phase
    aborted: int  # migrations asked to abort
    left_running: int  # migrations still running at the deadline (should be 0)
    jobs_left: int  # scheduled jobs still running at the deadline


def exit_margin_s(grace_s: float) -> float:
    """Kept at the end of the grace period for closing up and the interpreter's exit."""
    return min(2.0, grace_s / 5)


def abort_reserve_s(grace_s: float) -> float:
    """Kept before the end of the shutdown budget for aborts to settle."""
    return min(15.0, grace_s / 3)


def graceful_stop(scheduler: Stoppable, migrations: MigrationControl, grace_s: float,
                  release_leadership: Callable[[], None],
                  monotonic: Callable[[], float] = time.monotonic) -> ShutdownReport:
    """Run the shutdown sequence; returns `exit_margin_s(grace_s)` before the grace ends."""
    start = monotonic()
    budget = grace_s - exit_margin_s(grace_s)
    deadline = start + budget
    abort_at = deadline - abort_reserve_s(budget)
    scheduler.stop()
    migrations.stop_admitting()
    running = migrations.running_count()
    if running:
        log.warning("shutdown: waiting up to %.0f s for %d running migration(s)",
                    max(0.0, abort_at - monotonic()), running)
    finished = migrations.wait_idle(max(0.0, abort_at - monotonic()))
    aborted = 0
    if not finished:
        aborted = migrations.abort_running("aborted: drs serve shutting down, grace period over")
        log.warning("shutdown: grace period over, aborting %d migration(s)", aborted)
        migrations.wait_idle(max(0.0, deadline - monotonic()))
    left = migrations.running_count()
    jobs_done = scheduler.wait_idle(max(0.0, deadline - monotonic()))
    release_leadership()
    report = ShutdownReport(duration_s=monotonic() - start, finished_in_grace=finished,
                            aborted=aborted, left_running=left,
                            jobs_left=0 if jobs_done else 1)
    if left:
        log.error("shutdown: %d migration(s) still running at the deadline; their job rows "
                  "stay 'running' and are reconciled by the next start", left)
    return report
