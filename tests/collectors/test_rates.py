from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libvirt_drs.collectors.hypervisor import DomainStats
from libvirt_drs.collectors.rates import RateTracker, mem_used_mib, safe_ratio

S = 10**9


def test_first_reading_gives_no_rate_then_delta_over_elapsed() -> None:
    t = RateTracker()
    first = t.update("u", "h1", 5 * S, 100.0, host_cpus=4)
    assert (first.cores, first.demand, first.note) == (None, None, "first")
    second = t.update("u", "h1", 5 * S + S // 2, 110.0, host_cpus=4)
    assert second.cores == pytest.approx(0.05)
    assert second.note == "ok"


def test_counter_reset_restarted_vm_yields_no_sample_and_rebases() -> None:
    t = RateTracker()
    t.update("u", "h1", 100 * S, 0.0, 4)
    t.update("u", "h1", 105 * S, 10.0, 4)  # 0.5 cores
    reset = t.update("u", "h1", 1 * S, 20.0, 4)  # VM restarted: counter starts again
    assert reset.cores is None and reset.note == "reset"
    assert reset.demand == pytest.approx(0.5)  # last good rate is carried meanwhile
    after = t.update("u", "h1", 3 * S, 30.0, 4)
    assert after.cores == pytest.approx(0.2)


def test_monotonic_clock_going_backwards_never_yields_negative_or_nan() -> None:
    t = RateTracker()
    t.update("u", "h1", 10 * S, 50.0, 4)
    back = t.update("u", "h1", 11 * S, 40.0, 4)
    assert back.cores is None and back.note == "interval"
    same = t.update("u", "h1", 12 * S, 40.0, 4)
    assert same.cores is None
    ok = t.update("u", "h1", 13 * S, 50.0, 4)
    assert ok.cores == pytest.approx(0.1)


def test_too_short_interval_keeps_the_older_baseline() -> None:
    t = RateTracker(min_interval_s=1.0)
    t.update("u", "h1", 0, 0.0, 4)
    short = t.update("u", "h1", S // 10, 0.2, 4)
    assert short.cores is None
    assert t.update("u", "h1", 2 * S, 10.0, 4).cores == pytest.approx(0.2)


def test_move_to_another_host_rebases_and_carries_demand() -> None:
    t = RateTracker()
    t.update("u", "h1", 0, 0.0, 4)
    t.update("u", "h1", 10 * S, 20.0, 4)  # 0.5
    moved = t.update("u", "h2", S, 30.0, 4)  # new QEMU process on h2
    assert moved.cores is None and moved.note == "moved" and moved.demand == pytest.approx(0.5)
    assert t.update("u", "h2", 6 * S, 40.0, 4).cores == pytest.approx(0.5)


def test_implausible_rate_is_dropped() -> None:
    t = RateTracker()
    t.update("u", "h1", 0, 0.0, 2)
    bad = t.update("u", "h1", 100 * S, 1.0, 2)  # 100 cores on a 2-CPU host
    assert bad.cores is None and bad.note == "implausible"


def test_carried_demand_expires() -> None:
    t = RateTracker(max_carry_s=60.0)
    t.update("u", "h1", 0, 0.0, 4)
    t.update("u", "h1", S, 10.0, 4)
    assert t.update("u", "h2", 0, 1000.0, 4).demand is None


def test_missing_counter_gives_no_rate() -> None:
    t = RateTracker()
    assert t.update("u", "h1", None, 0.0, 4).note == "no-counter"
    assert len(t) == 0


def test_forget_idle() -> None:
    t = RateTracker()
    t.update("a", "h1", 0, 0.0, 4)
    t.update("b", "h1", 0, 500.0, 4)
    assert t.forget_idle(1000.0, max_age_s=600.0) == 1
    assert len(t) == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(-10 * S, 10**15), st.floats(-1e6, 1e6, allow_nan=False),
                          st.sampled_from(["h1", "h2"]), st.integers(1, 64)),
                min_size=1, max_size=40))
def test_property_rates_are_always_finite_and_non_negative(
        steps: list[tuple[int, float, str, int]]) -> None:
    t = RateTracker()
    for cpu_ns, mono, host, cpus in steps:
        r = t.update("u", host, cpu_ns, mono, cpus)
        for value in (r.cores, r.demand):
            assert value is None or (math.isfinite(value) and 0.0 <= value <= cpus * 1.05 or
                                     value is r.demand)
        if r.cores is not None:
            assert math.isfinite(r.cores) and 0.0 <= r.cores <= cpus * 1.05
        if r.demand is not None:
            assert math.isfinite(r.demand) and r.demand >= 0.0


def _dom(**kw: object) -> DomainStats:
    base: dict[str, object] = {"uuid": "u", "name": "vm", "state": 1, "mem_current_kib": 524288}
    base.update(kw)
    return DomainStats(**base)  # type: ignore[arg-type]


def test_mem_used_prefers_guest_balloon_stats_then_rss_then_current() -> None:
    guest = _dom(guest_available_kib=1024 * 1000, guest_usable_kib=1024 * 700, rss_kib=999999)
    assert mem_used_mib(guest) == (300.0, "guest")
    unused_only = _dom(guest_available_kib=1024 * 1000, guest_unused_kib=1024 * 900)
    assert mem_used_mib(unused_only) == (100.0, "guest")
    assert mem_used_mib(_dom(rss_kib=2048 * 100)) == (200.0, "rss")
    assert mem_used_mib(_dom()) == (512.0, "current")
    # Nonsense guest figures (free > available) fall back to RSS.
    assert mem_used_mib(_dom(guest_available_kib=10, guest_usable_kib=20, rss_kib=1024))[1] == "rss"


def test_safe_ratio() -> None:
    assert safe_ratio(1.0, 4.0) == 0.25
    assert safe_ratio(1.0, 0.0) is None
    assert safe_ratio(1.0, None) is None
    assert safe_ratio(float("nan"), 2.0) is None
