from __future__ import annotations

from typing import Any

import libvirt
import pytest

from libvirt_drs.collectors.hypervisor import HostUnavailable
from libvirt_drs.collectors.libvirt_source import (
    NOWAIT,
    LibvirtSource,
    host_cpu,
    parse_domain,
)

CAPS = """<capabilities><host><uuid>x</uuid><cpu><arch>x86_64</arch>
<model>Skylake-Client-IBRS</model>
<vendor>Intel</vendor><feature name='ss'/><feature name='vmx'/></cpu></host></capabilities>"""


class FakeDom:
    def __init__(self, uuid: str, name: str) -> None:
        self._uuid, self._name = uuid, name

    def UUIDString(self) -> str:  # noqa: N802 - libvirt's name
        return self._uuid

    def name(self) -> str:
        return self._name


class FakeConn:
    """Just the calls LibvirtSource makes, with switchable failures."""

    def __init__(self, records: list[tuple[FakeDom, dict[str, Any]]]) -> None:
        self.records = records
        self.fail_stats: str | None = None
        self.reject_nowait = False
        self.stats_flags: list[int] = []
        self.closed = False

    def getCapabilities(self) -> str:  # noqa: N802
        return CAPS

    def getAllDomainStats(self, stats: int, flags: int) -> list[tuple[FakeDom, dict[str, Any]]]:  # noqa: N802
        self.stats_flags.append(flags)
        if self.reject_nowait and flags & NOWAIT:
            raise _err("unsupported flags (0x20000000)", libvirt.VIR_ERR_INVALID_ARG)
        if self.fail_stats:
            raise _err(self.fail_stats, libvirt.VIR_ERR_SYSTEM_ERROR)
        return self.records

    def getInfo(self) -> list[Any]:  # noqa: N802
        return ["x86_64", 7812, 8, 2400, 1, 1, 4, 2]

    def getCPUStats(self, cpu: int) -> dict[str, int]:  # noqa: N802
        return {"user": 1, "kernel": 2, "idle": 3, "iowait": 4}

    def getMemoryStats(self, cell: int) -> dict[str, int]:  # noqa: N802
        raise _err("not supported", libvirt.VIR_ERR_NO_SUPPORT)

    def close(self) -> int:
        self.closed = True
        return 0


def _err(msg: str, code: int) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(msg)
    exc.err = (code, 0, msg, 2, "", None, None, 0, 0)
    return exc


RECORD = {"state.state": 1, "state.reason": 1, "cpu.time": 12_000_000_000, "vcpu.current": 2,
          "vcpu.0.delay": 700, "vcpu.1.delay": 300, "vcpu.0.time": 5, "balloon.swap_in": 64,
          "balloon.current": 524288, "balloon.maximum": 1048576, "balloon.rss": 300000,
          "balloon.available": 500000, "balloon.usable": 400000, "balloon.unused": 350000}


def test_parse_domain_maps_every_field() -> None:
    d = parse_domain("u", "vm", RECORD)
    assert (d.state, d.state_reason, d.cpu_time_ns, d.vcpus) == (1, 1, 12_000_000_000, 2)
    assert (d.mem_max_kib, d.mem_current_kib, d.rss_kib) == (1048576, 524288, 300000)
    assert (d.guest_available_kib, d.guest_usable_kib, d.guest_unused_kib) == (500000, 400000,
                                                                                 350000)
    assert (d.vcpu_delay_ns, d.swap_in_kib) == (1000, 64)  # the vCPUs' waits summed
    bare = parse_domain("u", "vm", {"state.state": 5})
    assert bare.cpu_time_ns is None and bare.rss_kib is None and bare.vcpus == 1
    assert bare.vcpu_delay_ns is None and bare.swap_in_kib is None  # unreported: unknown


def test_host_cpu_model_and_definition() -> None:
    model, xml = host_cpu(CAPS)
    assert model == "Skylake-Client-IBRS"
    assert xml is not None and xml.startswith("<cpu>") and "vmx" in xml
    assert host_cpu("<not xml") == (None, None)


def test_poll_reuses_the_connection_and_reopens_after_failure() -> None:
    conns: list[FakeConn] = []

    def open_fn(uri: str) -> FakeConn:
        conns.append(FakeConn([(FakeDom("u1", "vm1"), RECORD)]))
        return conns[-1]

    src = LibvirtSource("h1", "qemu+tcp://x/system", open_fn=open_fn)
    p = src.poll()
    src.poll()
    assert src.opens == 1 and len(p.domains) == 1
    assert p.node.cpus == 8 and p.node.mem_mib == 7812 and p.node.cpu_model == "Skylake-Client-IBRS"
    assert p.node_cpu_ns["idle"] == 3 and p.node_mem_kib == {}  # unsupported is not a failure
    conns[0].fail_stats = "End of file while reading data: Input/output error"
    with pytest.raises(HostUnavailable, match="End of file"):
        src.poll()
    assert conns[0].closed
    assert src.poll().domains[0].name == "vm1" and src.opens == 2


def test_open_failure_is_host_unavailable() -> None:
    def open_fn(uri: str) -> FakeConn:
        raise _err("unable to connect to server: Connection refused", libvirt.VIR_ERR_SYSTEM_ERROR)

    with pytest.raises(HostUnavailable, match="Connection refused"):
        LibvirtSource("h1", "qemu+tcp://x/system", open_fn=open_fn).poll()


def test_nowait_flag_is_dropped_when_the_server_rejects_it() -> None:
    conn = FakeConn([])
    conn.reject_nowait = True
    src = LibvirtSource("h1", "qemu+tcp://x/system", open_fn=lambda uri: conn)
    src.poll()
    src.poll()
    assert conn.stats_flags[0] & NOWAIT and not conn.stats_flags[-1] & NOWAIT


def test_libvirt_test_driver() -> None:
    src = LibvirtSource("t", "test:///default")
    p = src.poll()
    assert p.node.cpus > 0 and p.node.mem_mib > 0
    assert [d.name for d in p.domains] == ["test"]
    src.poll()
    assert src.opens == 1
    src.close()
