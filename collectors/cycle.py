"""One collect cycle: poll every host concurrently (each with a timeout), then derive.

A hung host never delays the others: its poll keeps running in its worker thread,
the host is reported stale with "no answer within N s", and it is not polled again
until that call returns (so a host costs at most one stuck thread). A host that
raised is stale with its error text; its source re-opens its connection next cycle.

A VM seen on two hosts in one cycle (live migration in flight) is counted once: on
the side where it is running, else where it was counted last cycle.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass

from libvirt_drs.collectors.hypervisor import (
    PAUSED_MIGRATION,
    PAUSED_POSTCOPY,
    STATE_RUNNING,
    STATE_SHUTOFF,
    DomainStats,
    HostPoll,
    HostSource,
    HostUnavailable,
)
from libvirt_drs.collectors.rates import KIB_PER_MIB, RateTracker, mem_used_mib, safe_ratio

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CapacityOverride:
    cpu_cores: float | None = None
    mem_mib: int | None = None


@dataclass(frozen=True, slots=True)
class VmReading:
    uuid: str
    name: str
    host: str
    state: str
    vcpus: int
    mem_max_mib: int
    cpu_cores: float | None  # fresh rate this cycle (stored as a VM sample), else None
    cpu_demand: float | None  # fresh or carried rate (what the host load counts)
    mem_used_mib: float
    mem_source: str  # guest | rss | current
    # Contention: cores the vCPUs waited in the host's run queue (fresh or carried, like
    # cpu_demand; None when libvirt reports no vcpu.<n>.delay), and the guest's swap-in.
    cpu_wait_cores: float | None = None
    swap_in_kib_s: float | None = None


@dataclass(frozen=True, slots=True)
class HostReading:
    name: str
    ok: bool
    error: str | None
    wall_s: float
    poll_ms: float = 0.0
    cpu_cores: float | None = None  # capacity in use: the override, else libvirt's
    mem_mib: int | None = None
    cpu_model: str | None = None
    cpu_xml: str | None = None
    vm_count: int = 0
    cpu_cores_used: float | None = None  # None when some running VM has no demand yet
    cpu_load: float | None = None
    mem_used_mib: float | None = None
    mem_load: float | None = None
    cpu_wait_cores: float | None = None  # summed over the VMs that report it


@dataclass(frozen=True, slots=True)
class CycleResult:
    wall_s: float
    hosts: tuple[HostReading, ...]
    vms: tuple[VmReading, ...]  # one per UUID, only from hosts polled this cycle
    duration_ms: float

    @property
    def fresh_hosts(self) -> list[str]:
        return [h.name for h in self.hosts if h.ok]

    @property
    def stale_hosts(self) -> list[str]:
        return [h.name for h in self.hosts if not h.ok]


class Collector:
    """Owns the sources, the worker threads and the rate state across cycles."""

    def __init__(self, sources: Sequence[HostSource], timeout_s: float,
                 overrides: Mapping[str, CapacityOverride] | None = None,
                 max_workers: int | None = None,
                 wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        self.sources = list(sources)
        self.timeout_s = timeout_s
        self.overrides = dict(overrides or {})
        self.rates = RateTracker()
        self.waits = RateTracker()  # vCPU run-queue wait (ns) -> cores waited
        self.swap_ins = RateTracker(units_per_s=1.0)  # guest swap-in (KiB) -> KiB/s
        self._wall, self._mono = wall, mono
        workers = max_workers or max(1, min(len(self.sources), 64))
        self._pool = _DaemonPool(workers)
        self._in_flight: dict[str, Future[HostPoll]] = {}
        self._placement: dict[str, str] = {}  # uuid -> host it was counted on last cycle

    def close(self) -> None:
        self._pool.shutdown()
        for source in self.sources:
            if source.name not in self._in_flight:  # never close under a running call
                _close_quietly(source)

    def run_cycle(self) -> CycleResult:
        start_mono, wall_s = self._mono(), self._wall()
        polls, errors = self._poll_all()
        chosen = choose_placement(polls, self._placement)
        vms: list[VmReading] = []
        per_host: dict[str, list[VmReading]] = {name: [] for name in polls}
        for host, dom in chosen:
            poll = polls[host]
            reading = self._vm_reading(poll, dom)
            vms.append(reading)
            per_host[host].append(reading)
        self._placement = {v.uuid: v.host for v in vms} | {
            u: h for u, h in self._placement.items() if h in errors}
        hosts = []
        for source in self.sources:
            if source.name in polls:
                hosts.append(self._host_reading(polls[source.name], per_host[source.name]))
            else:
                hosts.append(HostReading(source.name, False, errors[source.name], wall_s))
        # Age on the clock the readings were taken with (the polls'), not a second clock.
        newest_s = max((p.mono_s for p in polls.values()), default=None)
        if newest_s is not None:
            for tracker in (self.rates, self.waits, self.swap_ins):
                tracker.forget_idle(newest_s, max_age_s=max(3600.0, 10 * self.timeout_s))
        return CycleResult(wall_s, tuple(hosts), tuple(vms),
                           (self._mono() - start_mono) * 1000.0)

    def _poll_all(self) -> tuple[dict[str, HostPoll], dict[str, str]]:
        deadline = self._mono() + self.timeout_s
        futures: dict[str, Future[HostPoll]] = {}
        errors: dict[str, str] = {}
        for source in self.sources:
            previous = self._in_flight.get(source.name)
            if previous is not None and not previous.done():
                errors[source.name] = f"previous poll still running (no answer within " \
                                      f"{self.timeout_s:g} s)"
                continue
            self._in_flight.pop(source.name, None)
            futures[source.name] = self._pool.submit(source.poll)
        wait(futures.values(), timeout=max(0.0, deadline - self._mono()))
        polls: dict[str, HostPoll] = {}
        for name, future in futures.items():
            if not future.done():
                self._in_flight[name] = future
                errors[name] = f"no answer within {self.timeout_s:g} s"
                continue
            exc = future.exception()
            if exc is None:
                polls[name] = future.result()
            elif isinstance(exc, HostUnavailable):
                errors[name] = str(exc) or exc.__class__.__name__
            else:  # a bug in a source must not stop the other hosts being sampled
                log.error("host %s: poll failed: %r", name, exc)
                errors[name] = f"internal error: {exc!r}"
        return polls, errors

    def _vm_reading(self, poll: HostPoll, dom: DomainStats) -> VmReading:
        cpu = self.rates.update(dom.uuid, poll.host, dom.cpu_time_ns, poll.mono_s,
                                poll.node.cpus)
        vcpus = max(dom.vcpus, 1)
        wait = self.waits.update(dom.uuid, poll.host, dom.vcpu_delay_ns, poll.mono_s, vcpus)
        swap = self.swap_ins.update(dom.uuid, poll.host, dom.swap_in_kib, poll.mono_s,
                                    math.inf)
        mem, source = mem_used_mib(dom)
        return VmReading(dom.uuid, dom.name, poll.host, dom.state_name, vcpus,
                         int(dom.mem_max_kib // KIB_PER_MIB), cpu.cores, cpu.demand, mem, source,
                         cpu_wait_cores=wait.demand, swap_in_kib_s=swap.demand)

    def _host_reading(self, poll: HostPoll, vms: list[VmReading]) -> HostReading:
        override = self.overrides.get(poll.host, CapacityOverride())
        cpu_cap = override.cpu_cores or float(poll.node.cpus)
        mem_cap = override.mem_mib or poll.node.mem_mib
        demands = [v.cpu_demand for v in vms]
        known = [d for d in demands if d is not None]
        cpu_used = float(sum(known)) if len(known) == len(demands) else None
        mem_used = float(sum(v.mem_used_mib for v in vms))
        waits = [v.cpu_wait_cores for v in vms if v.cpu_wait_cores is not None]
        return HostReading(
            name=poll.host, ok=True, error=None, wall_s=poll.wall_s, poll_ms=poll.poll_ms,
            cpu_cores=cpu_cap, mem_mib=mem_cap, cpu_model=poll.node.cpu_model,
            cpu_xml=poll.node.cpu_xml, vm_count=len(vms), cpu_cores_used=cpu_used,
            cpu_load=None if cpu_used is None else safe_ratio(cpu_used, cpu_cap),
            mem_used_mib=mem_used, mem_load=safe_ratio(mem_used, mem_cap),
            cpu_wait_cores=float(sum(waits)) if waits or not vms else None)


def _rank(host: str, dom: DomainStats, previous: Mapping[str, str]) -> tuple[int, int]:
    running = dom.state == STATE_RUNNING
    # Paused for a migration or on the source of a post-copy: the VM's demand is elsewhere.
    migrating_pause = dom.state != STATE_RUNNING and dom.state_reason in (
        PAUSED_MIGRATION, PAUSED_POSTCOPY)
    where_it_was = 1 if previous.get(dom.uuid) == host else 0
    return (2 if running else 0 if migrating_pause else 1, where_it_was)


def choose_placement(polls: Mapping[str, HostPoll],
                     previous: Mapping[str, str]) -> list[tuple[str, DomainStats]]:
    """One (host, domain) per UUID: running beats paused-for-migration, then last cycle's host."""
    best: dict[str, tuple[tuple[int, int], str, DomainStats]] = {}
    for host in sorted(polls):
        for dom in polls[host].domains:
            if dom.state == STATE_SHUTOFF:  # shut down while the stats call ran: not running
                continue
            rank = _rank(host, dom, previous)
            current = best.get(dom.uuid)
            if current is None or rank > current[0]:
                best[dom.uuid] = (rank, host, dom)
    return [(host, dom) for _, host, dom in best.values()]


class _DaemonPool:
    """Worker threads that never block interpreter exit: a poll hung in libvirt cannot
    be interrupted, and concurrent.futures' pool would join it at exit forever."""

    def __init__(self, workers: int) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[HostPoll], Callable[[], HostPoll]] | None] = (
            queue.SimpleQueue())
        self._threads = [threading.Thread(target=self._work, name=f"drs-poll-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], HostPoll]) -> Future[HostPoll]:
        future: Future[HostPoll] = Future()
        self._queue.put((future, fn))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the cycle, which reports it per host
                future.set_exception(exc)


def _close_quietly(source: HostSource) -> None:
    try:
        source.close()
    except Exception as exc:  # closing a broken connection may fail; nothing to do
        log.debug("host %s: close failed: %r", source.name, exc)
