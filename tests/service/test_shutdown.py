"""graceful_stop(): migrations finish within the grace period or are aborted in time."""

from __future__ import annotations

import os
import signal
import threading
import time

from libvirt_drs.service.shutdown import StopSignal, abort_reserve_s, exit_margin_s, graceful_stop


class FakeScheduler:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    def wait_idle(self, timeout_s: float) -> bool:
        return True


class FakeMigrations:
    """One migration that ends after `runs_s`, or `abort_takes_s` after an abort."""

    def __init__(self, runs_s: float, abort_takes_s: float = 0.1) -> None:
        self.end_at = time.monotonic() + runs_s
        self.abort_takes_s = abort_takes_s
        self.admitting = True
        self.abort_reason: str | None = None

    def running_count(self) -> int:
        return 1 if time.monotonic() < self.end_at else 0

    def stop_admitting(self) -> None:
        self.admitting = False

    def abort_running(self, reason: str) -> int:
        self.abort_reason = reason
        n = self.running_count()
        self.end_at = min(self.end_at, time.monotonic() + self.abort_takes_s)
        return n

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.running_count() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.running_count()


def test_a_migration_that_ends_in_time_is_not_aborted() -> None:
    sched, mig, released = FakeScheduler(), FakeMigrations(0.3), []
    report = graceful_stop(sched, mig, 4.0, lambda: released.append(1))
    assert sched.stopped and not mig.admitting and released == [1]
    assert report.finished_in_grace and report.aborted == 0 and report.left_running == 0
    assert mig.abort_reason is None
    assert report.duration_s < 1


def test_a_long_migration_is_aborted_before_the_deadline() -> None:
    sched, mig = FakeScheduler(), FakeMigrations(60)
    t0 = time.monotonic()
    report = graceful_stop(sched, mig, 2.0, lambda: None)
    took = time.monotonic() - t0
    assert report.aborted == 1 and report.left_running == 0 and not report.finished_in_grace
    assert mig.abort_reason and "shutting down" in mig.abort_reason
    # aborted at the start of the reserve, not earlier; done before the exit margin
    budget = 2.0 - exit_margin_s(2.0)
    assert budget - abort_reserve_s(budget) - 0.1 <= took <= budget + 0.1


def test_the_grace_period_is_a_hard_limit_even_if_abort_hangs() -> None:
    mig = FakeMigrations(60, abort_takes_s=60)
    t0 = time.monotonic()
    report = graceful_stop(FakeScheduler(), mig, 1.0, lambda: None)
    assert time.monotonic() - t0 < 1.0 - exit_margin_s(1.0) + 0.1
    assert report.left_running == 1


def test_reserve_and_margin() -> None:
    assert abort_reserve_s(6) == 2 and abort_reserve_s(600) == 15
    assert exit_margin_s(5) == 1 and exit_margin_s(600) == 2


def test_sigterm_sets_the_stop_event() -> None:
    stop = StopSignal().install()
    try:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
        assert stop.wait(5)
        assert stop.signal_name == "SIGTERM"
    finally:
        stop.restore()
