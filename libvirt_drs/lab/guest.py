"""Lab guests: domain XML, data disks, start, boot wait and live migration."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from libvirt_drs.errors import UserError
from libvirt_drs.lab import heartbeat
from libvirt_drs.lab.state import LabVm
from libvirt_drs.migrator.model import MigrationOptions

METADATA_NS = "https://github.com/libvirt-drs/lab"
QEMU_BINARY = "/usr/bin/qemu-system-x86_64"


def kernel_cmdline(vm: LabVm) -> str:
    # quiet: every console byte is an exit under TCG, and it keeps the serial log readable
    return (f"console=ttyS0 quiet loglevel=3 panic=-1 drs.burn={vm.burn_pct} "
            f"drs.touch={vm.touch_mib} drs.dirty={vm.dirty_mib_s} drs.hb_ms={vm.heartbeat_ms}"
            + (" drs.disk=/dev/vda" if vm.disk_path else ""))


def domain_xml(vm: LabVm, kernel: str, initrd: str) -> str:
    """A TCG (type='qemu') guest booting the lab kernel; its serial console appends to a file
    visible at the same path on every host, so heartbeats survive migration."""
    disk = ""
    if vm.disk_path:
        disk = (
            "    <disk type='file' device='disk'>\n"
            "      <driver name='qemu' type='qcow2' cache='none'/>\n"
            f"      <source file={quoteattr(vm.disk_path)}/>\n"
            "      <target dev='vda' bus='virtio'/>\n"
            "    </disk>\n")
    return f"""<domain type='qemu'>
  <name>{escape(vm.name)}</name>
  <uuid>{vm.uuid}</uuid>
  <metadata>
    <lab:guest xmlns:lab="{METADATA_NS}" burn_pct="{vm.burn_pct}" touch_mib="{vm.touch_mib}" \
dirty_mib_s="{vm.dirty_mib_s}" home={quoteattr(vm.host)}/>
  </metadata>
  <memory unit='MiB'>{vm.mem_mib}</memory>
  <currentMemory unit='MiB'>{vm.mem_mib}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(kernel)}</kernel>
    <initrd>{escape(initrd)}</initrd>
    <cmdline>{escape(kernel_cmdline(vm))}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{QEMU_BINARY}</emulator>
{disk}    <serial type='file'>
      <source path={quoteattr(vm.serial_log)} append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='virtio'><stats period='5'/></memballoon>
  </devices>
</domain>
"""


def create_disk(path: Path, size_mib: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{size_mib}M"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"qemu-img create {path} failed: {res.stderr.strip()}")


def define_and_start(conn, vm: LabVm) -> None:  # type: ignore[no-untyped-def]
    dom = conn.defineXML(vm.xml)
    dom.create()


def wait_booted(vms: list[LabVm], timeout_s: float,
                on_boot: Callable[[LabVm], None] | None = None) -> None:
    """Wait until every guest wrote its first heartbeat to its serial log."""
    pending = list(vms)
    deadline = time.monotonic() + timeout_s
    while pending:
        for vm in list(pending):
            if heartbeat.read(vm.serial_log):
                pending.remove(vm)
                if on_boot:
                    on_boot(vm)
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(v.name for v in pending)
            raise UserError(f"guests {names} wrote no heartbeat within {timeout_s:.0f} s; "
                            f"see their serial logs, e.g. {pending[0].serial_log}")
        time.sleep(0.2)


def migrate(src_conn, dst_uri: str, name: str, copy_storage: bool = False,  # type: ignore[no-untyped-def]
            max_downtime_ms: int = MigrationOptions().max_downtime_ms,
            bandwidth_mib_s: int = 0) -> None:
    """Live migration, peer to peer, persistent on the destination, undefined on the source;
    `bandwidth_mib_s` caps it (0 = uncapped)."""
    import libvirt  # noqa: PLC0415

    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_AUTO_CONVERGE)
    if copy_storage:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    dom = src_conn.lookupByName(name)
    dom.migrateSetMaxDowntime(max_downtime_ms, 0)
    params = {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: bandwidth_mib_s} if bandwidth_mib_s else {}
    dom.migrateToURI3(dst_uri, params, flags)
