"""Failover's pure parts: the definition it starts from, and telling a host that does not answer."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

from libvirt_drs.config import ProtectionPolicy
from libvirt_drs.replication.failover import (
    failover_definition,
    isolated_definition,
    reachable,
    start_order,
)

LIVE_XML = """<domain type='qemu' id='7'>
  <name>vm1</name>
  <uuid>998b9361-0ddb-48aa-9f5e-5a1de1f5e0aa</uuid>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/vm1.qcow2' index='1'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <interface type='network'><source network='prod'/></interface>
    <serial type='file'><source path='/var/log/drs/vm1.log' append='on'/></serial>
    <disk type='file' device='cdrom'>
      <source file='/iso/tools.iso' index='2'/>
      <target dev='hdc' bus='ide'/>
    </disk>
  </devices>
</domain>"""


def test_the_definition_points_replicated_disks_at_their_overlays_only() -> None:
    root = ET.fromstring(failover_definition(LIVE_XML, {"vda": "/r/vm1-vda-run.qcow2"}))
    assert "id" not in root.attrib
    vda, cdrom = root.findall("./devices/disk")
    assert vda.find("source").attrib == {"file": "/r/vm1-vda-run.qcow2"}  # type: ignore[union-attr]
    assert vda.find("backingStore") is None
    assert cdrom.find("source").get("file") == "/iso/tools.iso"  # type: ignore[union-attr]


def test_a_closed_port_is_unreachable_and_an_open_one_reachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not reachable(f"qemu+tcp://127.0.0.1:{port}/system", timeout_s=2.0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert reachable(f"qemu+tcp://127.0.0.1:{server.getsockname()[1]}/system")
    assert reachable("qemu:///system")  # local: this machine


def test_a_test_copy_is_renamed_new_isolated_and_logs_apart() -> None:
    root = ET.fromstring(isolated_definition(failover_definition(LIVE_XML, {"vda": "/r/t.qcow2"}),
                                         "vm1-drtest"))
    assert root.findtext("name") == "vm1-drtest"
    assert root.find("uuid") is None  # libvirt gives it its own
    assert root.findall("./devices/interface") == []  # no network: production is not reached
    source = root.find("./devices/serial/source")
    assert source is not None and source.get("path") == "/var/log/drs/vm1.log-drtest"
    assert root.find("./devices/disk/source").get("file") == "/r/t.qcow2"  # type: ignore[union-attr]


def _policy(name: str, vms: tuple[str, ...], priority: str, order: int = 0) -> ProtectionPolicy:
    return ProtectionPolicy(name, vms, "a", "b", "/r", priority=priority, order=order)


def test_vms_start_high_priority_first_then_by_order_then_as_listed() -> None:
    policies = [_policy("web", ("w2", "w1"), "low"), _policy("db", ("d1",), "high"),
                _policy("app", ("a1",), "medium", order=2), _policy("mq", ("m1",), "medium")]
    assert [vm for _p, vm in start_order(policies)] == ["d1", "m1", "a1", "w2", "w1"]
