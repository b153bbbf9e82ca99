"""Cumulative counters to rates, and the memory a VM uses.

CPU: cores used = delta(cpu.time ns) / 1e9 / delta(monotonic s). The monotonic clock
makes wall-clock steps (NTP, an operator's `date -s`) harmless. No rate is produced
(the VM's baseline is reset instead) when:

- the VM is new to the tracker (first sample: a rate needs two readings);
- the counter went backwards (the VM was restarted, its QEMU process is new);
- the VM is now on another host (migrated: the new QEMU process has its own counter);
- the monotonic delta is not positive or shorter than `min_interval_s`;
- the result is not finite, negative, or more than the host has CPUs (+5 %).

So no NaN, infinity or negative value ever leaves this module. While no fresh rate
exists, `demand()` carries the VM's last good rate (so a migrated VM keeps counting
on its new host), until `max_carry_s` has passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from libvirt_drs.collectors.hypervisor import DomainStats

NS_PER_S = 1e9
KIB_PER_MIB = 1024.0


@dataclass(slots=True)
class _Baseline:
    host: str
    cpu_time_ns: int
    mono_s: float
    rate: float | None  # last good rate
    rate_mono_s: float  # when that rate was measured


@dataclass(frozen=True, slots=True)
class CpuReading:
    cores: float | None  # fresh rate this cycle, or None
    demand: float | None  # fresh rate, else the carried last good rate, else None
    note: str  # "ok" | "first" | "reset" | "moved" | "interval" | "implausible" | "no-counter"


class RateTracker:
    """Keeps the previous value of one cumulative counter per VM (by UUID) in the collector
    process: cpu.time (ns: the default unit gives cores), the vCPUs' run-queue wait (ns:
    cores waited) or the guest's swap-in (KiB: `units_per_s=1` gives KiB/s)."""

    def __init__(self, min_interval_s: float = 0.05, max_carry_s: float = 600.0,
                 units_per_s: float = NS_PER_S) -> None:
        self.min_interval_s = min_interval_s
        self.max_carry_s = max_carry_s
        self.units_per_s = units_per_s
        self._prev: dict[str, _Baseline] = {}

    def __len__(self) -> int:
        return len(self._prev)

    def update(self, uuid: str, host: str, cpu_time_ns: int | None, mono_s: float,
               host_cpus: float) -> CpuReading:
        """`host_cpus` bounds a plausible rate (+5 %): the host's CPUs for cpu.time, the
        VM's vCPUs for their wait, infinity for swap-in."""
        prev = self._prev.get(uuid)
        if cpu_time_ns is None or cpu_time_ns < 0:
            return CpuReading(None, self._carried(prev, mono_s), "no-counter")
        if prev is None:
            self._prev[uuid] = _Baseline(host, cpu_time_ns, mono_s, None, mono_s)
            return CpuReading(None, None, "first")
        note = self._why_not(prev, host, cpu_time_ns, mono_s)
        if note is None:
            rate = (cpu_time_ns - prev.cpu_time_ns) / self.units_per_s / (mono_s - prev.mono_s)
            limit = max(host_cpus, 1) * 1.05
            if math.isfinite(rate) and 0.0 <= rate <= limit:
                self._prev[uuid] = _Baseline(host, cpu_time_ns, mono_s, rate, mono_s)
                return CpuReading(rate, rate, "ok")
            note = "implausible"
        if note == "interval" and mono_s > prev.mono_s:
            return CpuReading(None, self._carried(prev, mono_s), note)  # keep the older baseline
        carried = self._carried(prev, mono_s)
        self._prev[uuid] = _Baseline(host, cpu_time_ns, mono_s, prev.rate, prev.rate_mono_s)
        return CpuReading(None, carried, note)

    def _why_not(self, prev: _Baseline, host: str, cpu_time_ns: int, mono_s: float) -> str | None:
        if prev.host != host:
            return "moved"
        if cpu_time_ns < prev.cpu_time_ns:
            return "reset"
        if not mono_s - prev.mono_s >= self.min_interval_s:
            return "interval"
        return None

    def _carried(self, prev: _Baseline | None, mono_s: float) -> float | None:
        if prev is None or prev.rate is None or mono_s - prev.rate_mono_s > self.max_carry_s:
            return None
        return prev.rate

    def forget_idle(self, mono_s: float, max_age_s: float) -> int:
        """Drop VMs not seen for `max_age_s` (gone, or on a host down that long)."""
        old = [u for u, b in self._prev.items() if mono_s - b.mono_s > max_age_s]
        for uuid in old:
            del self._prev[uuid]
        return len(old)


def mem_used_mib(dom: DomainStats) -> tuple[float, str]:
    """Memory a VM uses, in MiB, and where it came from.

    "guest": the guest's own balloon statistics (available - usable, or available -
    unused when the guest reports no `usable`), i.e. memory it really needs;
    "rss": the QEMU process resident set (no balloon driver or stats period);
    "current": the balloon size, the last resort.
    """
    avail = dom.guest_available_kib
    free = dom.guest_usable_kib if dom.guest_usable_kib is not None else dom.guest_unused_kib
    if avail and free is not None and 0 <= free <= avail:
        return (avail - free) / KIB_PER_MIB, "guest"
    if dom.rss_kib:
        return dom.rss_kib / KIB_PER_MIB, "rss"
    return max(dom.mem_current_kib, 0) / KIB_PER_MIB, "current"


def safe_ratio(used: float, capacity: float | None) -> float | None:
    """used / capacity, or None when the capacity is unknown or not positive."""
    if capacity is None or not capacity > 0 or not math.isfinite(used):
        return None
    value = used / capacity
    return value if math.isfinite(value) and value >= 0 else None
