"""The libvirt adapter: one reused connection per host, re-opened after any failure.

Per poll: one `getAllDomainStats` (state, CPU total, vCPU with its wait, balloon; active domains;
with the no-wait flag so a domain busy in a long job does not block the call), then
`getInfo`, `getCPUStats(-1)` and `getMemoryStats(-1)`. The host CPU definition comes
from the capabilities, read once per connection. Timeouts are the caller's
(`collectors.cycle` runs polls in worker threads; libvirt-python releases the GIL).
"""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import Any

import libvirt

from libvirt_drs.collectors.hypervisor import DomainStats, HostPoll, HostUnavailable, NodeInfo
from libvirt_drs.libvirt_errors import libvirt_message, quiet_libvirt

log = logging.getLogger(__name__)

# VIR_DOMAIN_STATS_VCPU gives `vcpu.current` and each vCPU's `vcpu.<n>.delay` (ns its
# thread waited in the host's run queue: steal time seen from the host), the contention
# signal. It reads every vCPU thread's schedstat on each poll (docs/collectors.md, cost).
STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
         | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU)
_DELAY_KEY = re.compile(r"vcpu\.\d+\.delay")
ACTIVE = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
NOWAIT = getattr(libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)
_UNSUPPORTED = {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED}

class LibvirtSource:
    """A HostSource for one libvirt URI."""

    def __init__(self, name: str, uri: str, *,
                 open_fn: Callable[[str], Any] | None = None,
                 wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic) -> None:
        quiet_libvirt()
        self.name, self.uri = name, uri
        self._open = open_fn or libvirt.open
        self._wall, self._mono = wall, mono
        self._conn: Any = None
        self._cpu_model: str | None = None
        self._cpu_xml: str | None = None
        self._flags = ACTIVE | NOWAIT
        self._node_cpu_ok = True
        self._node_mem_ok = True
        self.opens = 0  # connections opened so far (tests and diagnostics)

    def poll(self) -> HostPoll:
        t0 = time.perf_counter()
        try:
            conn = self._conn if self._conn is not None else self._connect()
            records = self._all_stats(conn)
            mono_s, wall_s = self._mono(), self._wall()
            info = conn.getInfo()
            node_cpu = self._optional(conn.getCPUStats, "_node_cpu_ok")
            node_mem = self._optional(conn.getMemoryStats, "_node_mem_ok")
            domains = tuple(parse_domain(dom.UUIDString(), dom.name(), stats)
                            for dom, stats in records)
        except libvirt.libvirtError as exc:
            self._drop()
            raise HostUnavailable(libvirt_message(exc)) from None
        node = NodeInfo(cpus=int(info[2]), mem_mib=int(info[1]), cpu_model=self._cpu_model,
                        cpu_xml=self._cpu_xml)
        return HostPoll(self.name, wall_s, mono_s, node, domains, node_cpu, node_mem,
                        (time.perf_counter() - t0) * 1000.0)

    def close(self) -> None:
        self._drop()

    def _connect(self) -> Any:
        conn = self._open(self.uri)
        if conn is None:  # very old bindings returned None instead of raising
            raise libvirt.libvirtError(f"cannot connect to {self.uri}")
        self.opens += 1
        try:
            self._cpu_model, self._cpu_xml = host_cpu(conn.getCapabilities())
        except libvirt.libvirtError as exc:
            log.warning("host %s: no capabilities: %s", self.name, libvirt_message(exc))
        self._conn = conn
        if self.opens > 1:
            log.warning("host %s: reconnected to %s", self.name, self.uri)
        return conn

    def _all_stats(self, conn: Any) -> list[tuple[Any, dict[str, Any]]]:
        try:
            return list(conn.getAllDomainStats(STATS, self._flags))
        except libvirt.libvirtError as exc:
            if not (self._flags & NOWAIT) or exc.get_error_code() not in _UNSUPPORTED:
                raise
            log.info("host %s: no-wait stats unsupported (%s); polling without it", self.name,
                     libvirt_message(exc))
            self._flags &= ~NOWAIT
            return list(conn.getAllDomainStats(STATS, self._flags))

    def _optional(self, call: Callable[[int], Mapping[str, int]], ok_attr: str) -> dict[str, int]:
        """Node stats some drivers lack: remember 'unsupported', fail on anything else."""
        if not getattr(self, ok_attr):
            return {}
        try:
            return dict(call(-1))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in _UNSUPPORTED:
                raise
            setattr(self, ok_attr, False)
            return {}

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass  # the connection is already broken; that is why we drop it


def parse_domain(uuid: str, name: str, stats: Mapping[str, Any]) -> DomainStats:
    """One getAllDomainStats record to DomainStats (libvirt reports memory in KiB)."""
    get = stats.get
    vcpus = int(get("vcpu.current", 1) or 1)
    return DomainStats(
        uuid=uuid, name=name,
        state=int(get("state.state", 0)), state_reason=int(get("state.reason", 0)),
        cpu_time_ns=_int_or_none(get("cpu.time")),
        vcpu_delay_ns=vcpu_delay_ns(stats),
        swap_in_kib=_int_or_none(get("balloon.swap_in")),
        vcpus=vcpus,
        mem_max_kib=int(get("balloon.maximum", 0) or 0),
        mem_current_kib=int(get("balloon.current", 0) or 0),
        rss_kib=_int_or_none(get("balloon.rss")),
        guest_available_kib=_int_or_none(get("balloon.available")),
        guest_unused_kib=_int_or_none(get("balloon.unused")),
        guest_usable_kib=_int_or_none(get("balloon.usable")),
    )


def vcpu_delay_ns(stats: Mapping[str, Any]) -> int | None:
    """The summed `vcpu.<n>.delay` of the domain's vCPUs (cumulative ns they waited for a
    host CPU), or None when libvirt reported none (before 6.x, or no schedstat)."""
    delays = [int(v) for k, v in stats.items() if _DELAY_KEY.fullmatch(k) and v is not None]
    return sum(delays) if delays else None


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def host_cpu(capabilities_xml: str) -> tuple[str | None, str | None]:
    """The host CPU model name and its <cpu> element (model, vendor, features)."""
    try:
        root = ET.fromstring(capabilities_xml)
    except ET.ParseError:
        return None, None
    cpu = root.find("./host/cpu")
    if cpu is None:
        return None, None
    model = cpu.findtext("model")
    cpu.tail = None
    return (model.strip() if model else None), ET.tostring(cpu, encoding="unicode")
