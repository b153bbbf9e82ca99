"""Read what the migrator needs out of libvirt domain and pool XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from libvirt_drs.migrator.hypervisor import CpuModel, Disk, Nic


def disks(root: ET.Element) -> tuple[Disk, ...]:
    """File and block disks with a source (CD-ROMs without media are skipped)."""
    found = []
    for disk in root.findall("./devices/disk"):
        source = disk.find("source")
        if source is None:
            continue
        path = source.get("file") or source.get("dev")
        if not path:
            continue  # network disks (rbd, iscsi) are shared by nature
        driver = disk.find("driver")
        target = disk.find("target")
        found.append(Disk(
            target=target.get("dev", "?") if target is not None else "?",
            path=path,
            fmt=(driver.get("type") if driver is not None else None) or "raw",
            readonly=disk.find("readonly") is not None or disk.get("device") == "cdrom",
        ))
    return tuple(found)


def nics(root: ET.Element) -> tuple[Nic, ...]:
    found = []
    for iface in root.findall("./devices/interface"):
        kind = iface.get("type", "other")
        source = iface.find("source")
        name = ""
        if source is not None:
            name = source.get("network") or source.get("bridge") or source.get("dev") or ""
        found.append(Nic(kind=kind if kind in ("network", "bridge") else "other", source=name))
    return tuple(found)


def cpu(root: ET.Element, host_cpu_xml: str | None) -> CpuModel:
    """The guest CPU to compare; host-passthrough guests need the source host's CPU."""
    os_type = root.find("./os/type")
    emulator = root.find("./devices/emulator")
    base = {
        "arch": os_type.get("arch") if os_type is not None else None,
        "machine": os_type.get("machine") if os_type is not None else None,
        "virt_type": root.get("type"),
        "emulator": emulator.text if emulator is not None else None,
    }
    element = root.find("cpu")
    if element is None:
        return CpuModel(xml=None, **base)
    mode = element.get("mode", "custom")
    if mode in ("host-passthrough", "maximum"):
        return CpuModel(xml=host_cpu_xml, **base)
    if element.find("model") is None:
        return CpuModel(xml=None, **base)  # only topology: the hypervisor default model
    return CpuModel(xml=ET.tostring(element, encoding="unicode"), **base)


def pool_target(pool_xml: str) -> str | None:
    path = ET.fromstring(pool_xml).find("./target/path")
    return path.text if path is not None else None


def dir_pool(name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    target = ET.SubElement(pool, "target")
    ET.SubElement(target, "path").text = path
    return ET.tostring(pool, encoding="unicode")
