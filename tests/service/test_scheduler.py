"""The scheduling rules of `drs serve`, with fake jobs on short intervals."""

from __future__ import annotations

import threading
import time

import pytest

from libvirt_drs.service.metrics import DrsMetrics
from libvirt_drs.service.scheduler import JobSpec, ServiceScheduler


def _value(metrics: DrsMetrics, name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


@pytest.fixture
def metrics() -> DrsMetrics:
    return DrsMetrics()


def test_a_job_never_overlaps_itself(metrics: DrsMetrics) -> None:
    active, peak, runs = [0], [0], [0]
    lock = threading.Lock()

    def slow() -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            runs[0] += 1
        time.sleep(0.45)
        with lock:
            active[0] -= 1

    sched = ServiceScheduler([JobSpec("collect", slow, 0.1)], metrics)
    sched.start()
    time.sleep(1.6)
    sched.stop()
    assert sched.wait_idle(2)
    assert peak[0] == 1
    assert 2 <= runs[0] <= 4
    assert _value(metrics, "drs_job_skipped_total", job="collect") >= 3


def test_a_failing_job_is_counted_and_runs_again_on_time(metrics: DrsMetrics) -> None:
    times: list[float] = []

    def boom() -> None:
        times.append(time.monotonic())
        raise RuntimeError("database unreachable")

    sched = ServiceScheduler([JobSpec("balance", boom, 0.25)], metrics)
    sched.start()
    time.sleep(1.15)
    sched.stop()
    sched.wait_idle(2)
    assert len(times) >= 4
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(0.15 < g < 0.4 for g in gaps), gaps
    assert _value(metrics, "drs_job_failures_total", job="balance") == len(times)
    assert _value(metrics, "drs_job_runs_total", job="balance") == len(times)
    assert "database unreachable" in sched.last_error["balance"]
    assert _value(metrics, "drs_job_last_success_timestamp_seconds", job="balance") == 0


def test_one_slow_job_does_not_delay_another(metrics: DrsMetrics) -> None:
    fast_runs = [0]
    release = threading.Event()
    sched = ServiceScheduler([JobSpec("balance", lambda: release.wait(5), 0.1),
                              JobSpec("collect", lambda: fast_runs.__setitem__(0, fast_runs[0] + 1),
                                      0.1)], metrics)
    sched.start()
    time.sleep(0.8)
    release.set()
    sched.stop()
    sched.wait_idle(2)
    assert fast_runs[0] >= 5
    assert _value(metrics, "drs_job_last_success_timestamp_seconds", job="collect") > 0


def test_leader_only_jobs_run_only_while_leading(metrics: DrsMetrics) -> None:
    leading = threading.Event()
    runs = {"balance": 0, "collect": 0}

    def bump(name: str):  # type: ignore[no-untyped-def]
        return lambda: runs.__setitem__(name, runs[name] + 1)

    sched = ServiceScheduler([JobSpec("balance", bump("balance"), 0.1),
                              JobSpec("collect", bump("collect"), 0.1, leader_only=False)],
                             metrics, is_leader=leading.is_set)
    sched.start()
    time.sleep(0.5)
    assert runs["balance"] == 0 and runs["collect"] >= 3
    leading.set()
    time.sleep(0.5)
    sched.stop()
    sched.wait_idle(2)
    assert runs["balance"] >= 3
    assert _value(metrics, "drs_job_runs_total", job="balance") == runs["balance"]


def test_wait_idle_times_out_on_a_running_job(metrics: DrsMetrics) -> None:
    release = threading.Event()
    sched = ServiceScheduler([JobSpec("retention", lambda: release.wait(5), 10)], metrics)
    sched.start()
    time.sleep(0.3)
    assert sched.running_jobs() == {"retention"}
    sched.stop()  # stops scheduling; the run goes on
    t0 = time.monotonic()
    assert not sched.wait_idle(0.3)
    assert time.monotonic() - t0 < 1
    release.set()
    assert sched.wait_idle(2)
    assert sched.running_jobs() == set()


def test_run_now_uses_the_same_bookkeeping(metrics: DrsMetrics) -> None:
    calls = []
    sched = ServiceScheduler([JobSpec("observe", lambda: calls.append(1), 60,
                                      first_delay_s=60)], metrics)
    sched.run_now("observe")
    assert calls == [1]
    assert _value(metrics, "drs_job_runs_total", job="observe") == 1


def test_duplicate_job_names_are_refused(metrics: DrsMetrics) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ServiceScheduler([JobSpec("a", lambda: None, 1), JobSpec("a", lambda: None, 1)], metrics)
