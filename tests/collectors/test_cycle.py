from __future__ import annotations

import math
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libvirt_drs.collectors.cycle import CapacityOverride, Collector, CycleResult
from libvirt_drs.collectors.hypervisor import (
    PAUSED_MIGRATION,
    PAUSED_POSTCOPY,
    RUNNING_POSTCOPY,
    STATE_PAUSED,
    STATE_RUNNING,
    STATE_SHUTOFF,
)
from tests.collectors.fakes import FakeClock, FakeHost, FakeVm, advance


def _cluster(n_hosts: int = 2) -> tuple[FakeClock, list[FakeHost]]:
    clock = FakeClock()
    return clock, [FakeHost(f"h{i + 1}", clock) for i in range(n_hosts)]


def _vm(result: CycleResult, name: str):  # type: ignore[no-untyped-def]
    return next(v for v in result.vms if v.name == name)


def _host(result: CycleResult, name: str):  # type: ignore[no-untyped-def]
    return next(h for h in result.hosts if h.name == name)


def test_rates_and_host_load_after_two_cycles() -> None:
    clock, (h1, h2) = _cluster()
    h1.add(FakeVm("u1", "vm1", burn_cores=0.5))
    h1.add(FakeVm("u2", "vm2", burn_cores=0.25, rss_kib=1024 * 1024))
    h2.add(FakeVm("u3", "vm3", burn_cores=1.0))
    c = Collector([h1, h2], timeout_s=2, overrides={"h2": CapacityOverride(cpu_cores=2.0)})
    first = c.run_cycle()
    assert all(v.cpu_cores is None for v in first.vms)  # a rate needs two readings
    assert _host(first, "h1").cpu_load is None and _host(first, "h1").mem_load is not None
    advance(clock, [h1, h2], 20.0)
    r = c.run_cycle()
    assert _vm(r, "vm1").cpu_cores == pytest.approx(0.5)
    assert _vm(r, "vm2").mem_used_mib == pytest.approx(1024.0)
    assert _host(r, "h1").cpu_cores_used == pytest.approx(0.75)
    assert _host(r, "h1").cpu_load == pytest.approx(0.75 / 4)
    assert _host(r, "h1").mem_load == pytest.approx((128 + 1024) / 8192)
    assert _host(r, "h2").cpu_cores == 2.0 and _host(r, "h2").cpu_load == pytest.approx(0.5)
    assert _host(r, "h1").cpu_model == "FakeModel"


def test_vcpu_wait_becomes_cores_waited_per_vm_and_host() -> None:
    clock, (h1,) = _cluster(1)
    h1.add(FakeVm("u1", "vm1", burn_cores=0.6, wait_cores=0.3))
    h1.add(FakeVm("u2", "vm2", burn_cores=0.4, wait_cores=0.1))
    h1.add(FakeVm("u3", "vm3", burn_cores=0.2))  # its host reports no vcpu delay
    c = Collector([h1], timeout_s=2)
    first = c.run_cycle()
    assert all(v.cpu_wait_cores is None for v in first.vms)  # a rate needs two readings
    advance(clock, [h1], 10.0)
    r = c.run_cycle()
    assert _vm(r, "vm1").cpu_wait_cores == pytest.approx(0.3)
    assert _vm(r, "vm2").cpu_wait_cores == pytest.approx(0.1)
    assert _vm(r, "vm3").cpu_wait_cores is None and _vm(r, "vm3").swap_in_kib_s is None
    assert _host(r, "h1").cpu_wait_cores == pytest.approx(0.4)
    assert _host(r, "h1").cpu_cores_used == pytest.approx(1.2)  # usage alone, as before


def test_vm_appearing_mid_run_counts_from_its_second_reading() -> None:
    clock, hosts = _cluster(1)
    h1 = hosts[0]
    h1.add(FakeVm("u1", "vm1", burn_cores=0.5))
    c = Collector(hosts, timeout_s=2)
    c.run_cycle()
    advance(clock, hosts, 10)
    c.run_cycle()
    h1.add(FakeVm("u2", "vm2", burn_cores=0.3))
    advance(clock, hosts, 10)
    r = c.run_cycle()
    assert _vm(r, "vm2").cpu_cores is None
    assert _host(r, "h1").cpu_cores_used is None  # not all demand known: no host CPU sample
    advance(clock, hosts, 10)
    r = c.run_cycle()
    assert _vm(r, "vm2").cpu_cores == pytest.approx(0.3)
    assert _host(r, "h1").cpu_cores_used == pytest.approx(0.8)


def test_vm_vanishing_is_absent_and_shutoff_mid_call_is_ignored() -> None:
    clock, hosts = _cluster(1)
    h1 = hosts[0]
    h1.add(FakeVm("u1", "vm1", burn_cores=0.5))
    h1.add(FakeVm("u2", "vm2", burn_cores=0.5))
    c = Collector(hosts, timeout_s=2)
    c.run_cycle()
    advance(clock, hosts, 10)
    del h1.vms["u1"]
    h1.vms["u2"].state = STATE_SHUTOFF  # shut down while the bulk call ran
    h1.vms["u2"].cpu_time_ns = None  # type: ignore[assignment]
    r = c.run_cycle()
    assert r.vms == ()
    assert _host(r, "h1").vm_count == 0 and _host(r, "h1").cpu_cores_used == 0.0


def test_counter_reset_and_clock_step_in_a_cycle() -> None:
    clock, hosts = _cluster(1)
    vm = hosts[0].add(FakeVm("u1", "vm1", burn_cores=0.5, cpu_time_ns=500 * 10**9))
    c = Collector(hosts, timeout_s=2)
    c.run_cycle()
    advance(clock, hosts, 10)
    assert _vm(c.run_cycle(), "vm1").cpu_cores == pytest.approx(0.5)
    vm.cpu_time_ns = 10**8  # restarted
    advance(clock, hosts, 10)
    r = c.run_cycle()
    assert _vm(r, "vm1").cpu_cores is None and _vm(r, "vm1").cpu_demand == pytest.approx(0.5)
    clock.wall_s -= 3600  # NTP steps the wall clock back an hour: rates do not care
    advance(clock, hosts, 10)
    assert _vm(c.run_cycle(), "vm1").cpu_cores == pytest.approx(0.5)


def test_live_migration_counts_the_vm_once() -> None:
    clock, (h1, h2) = _cluster()
    src = h1.add(FakeVm("u1", "vm1", burn_cores=0.4))
    c = Collector([h1, h2], timeout_s=2)
    c.run_cycle()
    advance(clock, [h1, h2], 10)
    c.run_cycle()
    # Pre-copy: incoming side paused on h2, VM running on h1.
    h2.add(FakeVm("u1", "vm1", state=STATE_PAUSED, reason=PAUSED_MIGRATION, cpu_time_ns=0))
    advance(clock, [h1, h2], 10)
    r = c.run_cycle()
    assert [(v.name, v.host) for v in r.vms] == [("vm1", "h1")]
    assert _host(r, "h2").vm_count == 0 and _vm(r, "vm1").cpu_cores == pytest.approx(0.4)
    # Switch-over: both sides paused -> stays where it was counted.
    src.state, src.reason = STATE_PAUSED, PAUSED_MIGRATION
    advance(clock, [h1, h2], 10)
    assert [v.host for v in c.run_cycle().vms] == ["h1"]
    # Post-copy: destination runs, source paused: counted on h2 only, demand carried.
    src.state, src.reason = STATE_PAUSED, PAUSED_POSTCOPY
    dst = h2.vms["u1"]
    dst.state, dst.reason, dst.burn_cores = STATE_RUNNING, RUNNING_POSTCOPY, 0.4
    advance(clock, [h1, h2], 10)
    r = c.run_cycle()
    assert [(v.host, v.cpu_cores) for v in r.vms] == [("h2", None)]
    assert _host(r, "h2").cpu_cores_used == pytest.approx(0.4)
    assert _host(r, "h1").vm_count == 0
    del h1.vms["u1"]
    advance(clock, [h1, h2], 10)
    assert _vm(c.run_cycle(), "vm1").cpu_cores == pytest.approx(0.4)


def test_failing_host_is_stale_with_its_error_and_recovers() -> None:
    clock, (h1, h2) = _cluster()
    h1.add(FakeVm("u1", "vm1", burn_cores=0.5))
    h2.add(FakeVm("u2", "vm2", burn_cores=0.5))
    c = Collector([h1, h2], timeout_s=2)
    c.run_cycle()
    h2.error = "unable to connect to server at '127.0.0.12:16509': Connection refused"
    advance(clock, [h1, h2], 10)
    r = c.run_cycle()
    assert not _host(r, "h2").ok and "Connection refused" in (_host(r, "h2").error or "")
    assert [v.name for v in r.vms] == ["vm1"] and _vm(r, "vm1").cpu_cores == pytest.approx(0.5)
    h2.error = None
    advance(clock, [h1, h2], 10)
    r = c.run_cycle()
    assert _host(r, "h2").ok and _vm(r, "vm2").cpu_cores == pytest.approx(0.5)


def test_hung_host_times_out_without_delaying_the_others_and_recovers() -> None:
    clock, (h1, h2) = _cluster()
    h1.add(FakeVm("u1", "vm1", burn_cores=0.5))
    c = Collector([h1, h2], timeout_s=0.3)
    c.run_cycle()
    h2.hang = threading.Event()
    t0 = time.monotonic()
    advance(clock, [h1, h2], 10)
    r = c.run_cycle()
    assert time.monotonic() - t0 < 1.5
    assert _host(r, "h1").ok and _vm(r, "vm1").cpu_cores == pytest.approx(0.5)
    assert not _host(r, "h2").ok and "no answer within 0.3 s" in (_host(r, "h2").error or "")
    polls = h2.polls
    r = c.run_cycle()  # still hung: not polled again, still stale
    assert h2.polls == polls and "still running" in (_host(r, "h2").error or "")
    h2.hang.set()
    h2.hang = None
    time.sleep(0.05)
    r = c.run_cycle()
    assert _host(r, "h2").ok
    c.close()


def test_internal_error_in_a_source_does_not_stop_the_cycle() -> None:
    clock, (h1, h2) = _cluster()

    def boom() -> None:
        raise RuntimeError("bug")

    h2.poll = boom  # type: ignore[method-assign, assignment]
    r = Collector([h1, h2], timeout_s=1).run_cycle()
    assert _host(r, "h1").ok and "internal error" in (_host(r, "h2").error or "")


def test_close_closes_idle_sources() -> None:
    _, hosts = _cluster()
    c = Collector(hosts, timeout_s=1)
    c.run_cycle()
    c.close()
    assert [h.closed for h in hosts] == [1, 1]


_event = st.one_of(
    st.tuples(st.just("tick"), st.floats(0.0, 60.0)),
    st.tuples(st.just("wall_step"), st.floats(-1e5, 1e5)),
    st.tuples(st.just("mono_glitch"), st.floats(-30.0, 0.0)),
    st.tuples(st.just("restart"), st.integers(0, 3)),
    st.tuples(st.just("appear"), st.integers(0, 3)),
    st.tuples(st.just("vanish"), st.integers(0, 3)),
    st.tuples(st.just("move"), st.integers(0, 3)),
    st.tuples(st.just("fail"), st.integers(0, 1)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_event, min_size=1, max_size=25))
def test_property_no_nan_or_negative_ever_leaves_a_cycle(events: list[tuple[str, float]]) -> None:
    clock, hosts = _cluster(2)
    c = Collector(hosts, timeout_s=1)
    for kind, arg in events:
        idx = int(arg) % 4 if kind not in ("tick", "wall_step", "mono_glitch") else 0
        uuid, on = f"u{idx}", [h for h in hosts if f"u{idx}" in h.vms]
        if kind == "tick":
            advance(clock, hosts, float(arg))
        elif kind == "wall_step":
            clock.wall_s += float(arg)
        elif kind == "mono_glitch":
            clock.mono_s += float(arg)
        elif kind == "restart" and on:
            on[0].vms[uuid].cpu_time_ns = 0
        elif kind == "appear" and not on:
            hosts[idx % 2].add(FakeVm(uuid, f"vm{idx}", burn_cores=0.1 * idx))
        elif kind == "vanish" and on:
            del on[0].vms[uuid]
        elif kind == "move" and on:
            vm = on[0].vms.pop(uuid)
            vm.cpu_time_ns = 0
            hosts[1 - hosts.index(on[0])].add(vm)
        elif kind == "fail":
            hosts[int(arg) % 2].error = None if hosts[int(arg) % 2].error else "down"
        r = c.run_cycle()
        assert len({v.uuid for v in r.vms}) == len(r.vms)
        for v in r.vms:
            for value in (v.cpu_cores, v.cpu_demand, v.mem_used_mib):
                assert value is None or (math.isfinite(value) and value >= 0)
        for h in r.hosts:
            for value in (h.cpu_cores_used, h.cpu_load, h.mem_used_mib, h.mem_load):
                assert value is None or (math.isfinite(value) and value >= 0)
    c.close()
