"""Failover's pure parts: the definition it starts from, and telling a host that does not answer."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

from libvirt_drs.replication.failover import failover_definition, reachable

LIVE_XML = """<domain type='qemu' id='7'>
  <name>vm1</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/vm1.qcow2' index='1'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
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
