"""Where a VM's recovery points go on its recovery site: on the host with the most memory
left once the VMs whose points it already holds are counted, so that a failover of the
whole site fits where the disks are (each VM starts on the host that holds its points).
Pure: the caller reads the hosts' memory and the points."""

from __future__ import annotations

import xml.etree.ElementTree as ET

_MIB_PER_UNIT = {"b": 1 / (1 << 20), "bytes": 1 / (1 << 20), "k": 1 / 1024, "kib": 1 / 1024,
                 "kb": 1000 / (1 << 20), "m": 1.0, "mib": 1.0, "mb": 1e6 / (1 << 20),
                 "g": 1024.0, "gib": 1024.0, "gb": 1e9 / (1 << 20)}


def memory_mib(domain_xml: str) -> float:
    """The VM's <memory> in MiB (libvirt's default unit is KiB)."""
    mem = ET.fromstring(domain_xml).find("memory")
    if mem is None or not (mem.text or "").strip():
        return 0.0
    return float(mem.text or 0) * _MIB_PER_UNIT.get(mem.get("unit", "KiB").lower(), 1 / 1024)


def choose_host(capacity_mib: dict[str, float], held_mib: dict[str, float], need_mib: float
                ) -> str:
    """The host (of capacity_mib, in its order on ties) with the most memory left after
    held_mib; one where need_mib fits if there is one."""
    if not capacity_mib:
        raise ValueError("no host to choose from")
    room = {h: capacity_mib[h] - held_mib.get(h, 0.0) for h in capacity_mib}
    fits = [h for h in capacity_mib if room[h] >= need_mib] or list(capacity_mib)
    return max(fits, key=lambda h: (room[h], -list(capacity_mib).index(h)))
