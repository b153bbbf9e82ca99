"""Failover: start protected VMs on their recovery site from their recovery points.

Each VM starts on the recovery host that holds its replica, from a new qcow2 overlay whose
backing file is the recovery point (so the point itself stays as it was: a failover can be
repeated from it), with the domain definition saved with the point. Never twice: a VM that
still runs on a reachable primary host is refused (split brain), one already running on the
recovery host is left alone, and primary hosts that do not answer must be confirmed off by
the operator before anything starts.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from libvirt_drs.config import Config, ProtectionPolicy
from libvirt_drs.db import replication as store
from libvirt_drs.replication.transfer import Connections, ReplicationError, ensure_pool

PROBE_TIMEOUT_S = 3.0
RUNNING_TIMEOUT_S = 30.0
_DEFAULT_PORTS = {"tcp": 16509, "tls": 16514, "ssh": 22, "libssh": 22, "libssh2": 22}


@dataclass(frozen=True)
class PrimaryView:
    """What the primary site's hosts say: who answers and where protected VMs run."""

    unreachable: tuple[str, ...]
    running: dict[str, str]  # vm -> reachable primary host it runs on


@dataclass(frozen=True)
class Started:
    vm: str
    host: str
    point: store.Point
    seconds_to_running: float
    data_loss_window_s: float  # how much older the point is than the start of the failover


def reachable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the host's libvirt endpoint accepts a TCP connection within timeout_s (a
    powered-off host would leave libvirt waiting minutes for the kernel's TCP timeout)."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2] or ("tls" if parts.hostname else "")
    if not parts.hostname:
        return True  # a local URI: this machine
    port = parts.port or _DEFAULT_PORTS.get(transport, 16514)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def look_at_primary(cfg: Config, conns: Connections, policies: list[ProtectionPolicy]
                    ) -> PrimaryView:
    import libvirt  # noqa: PLC0415

    hosts = sorted({h.name for p in policies for h in cfg.hosts if h.group == p.primary})
    vms = {vm for p in policies for vm in p.vms}
    unreachable, running = [], {}
    for name in hosts:
        h = cfg.host(name)
        assert h is not None
        if not reachable(h.uri):
            unreachable.append(name)
            continue
        try:
            doms = conns.get(name).listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        except (ReplicationError, libvirt.libvirtError):
            unreachable.append(name)
            continue
        running.update({d.name(): name for d in doms if d.name() in vms})
    return PrimaryView(tuple(unreachable), running)


def failover_definition(domain_xml: str, disks: dict[str, str]) -> str:
    """The saved definition with each replicated disk pointing at its overlay, as a
    persistent definition (no runtime ids, aliases or probed backing chains)."""
    root = ET.fromstring(domain_xml)
    root.attrib.pop("id", None)
    for d in root.findall("./devices/disk"):
        target, source = d.find("target"), d.find("source")
        if target is None or source is None or target.get("dev") not in disks:
            continue
        source.set("file", disks[target.get("dev", "")])
        source.attrib.pop("index", None)
        for chain in d.findall("backingStore"):
            d.remove(chain)
    return ET.tostring(root, encoding="unicode")


def _overlay(pool: Any, point_file: str, name: str) -> str:
    import libvirt  # noqa: PLC0415

    capacity = pool.storageVolLookupByName(point_file.rsplit("/", 1)[1]).info()[1]
    try:
        pool.storageVolLookupByName(name).delete(0)  # a failed earlier attempt's overlay
    except libvirt.libvirtError:
        pass
    vol = pool.createXML(
        f"<volume><name>{name}</name><capacity unit='bytes'>{capacity}</capacity>"
        "<target><format type='qcow2'/></target><backingStore>"
        f"<path>{point_file}</path><format type='qcow2'/></backingStore></volume>", 0)
    return str(vol.path())


def start_from_point(conns: Connections, policy: ProtectionPolicy, point: store.Point,
                     failover_start_s: float, clock: Callable[[], float] = time.time
                     ) -> Started:
    """Start the VM on its replica's host; raises ReplicationError (one line) if it cannot."""
    import libvirt  # noqa: PLC0415

    conn = conns.get(point.recovery_host)
    pool = ensure_pool(conn, policy.recovery_dir)
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(failover_start_s))
    try:
        disks = {target: _overlay(pool, path, f"{point.vm}-{target}-run-{stamp}.qcow2")
                 for target, path in point.volumes.items()}
        try:
            old = conn.lookupByName(point.vm)  # an inactive definition left here earlier
            if not old.isActive():
                old.undefine()
        except libvirt.libvirtError:
            pass
        dom = conn.defineXML(failover_definition(point.domain_xml, disks))
        dom.create()
    except libvirt.libvirtError as exc:
        raise ReplicationError(f"{point.vm}: cannot start on {point.recovery_host}: "
                               f"{exc.get_error_message()}") from None
    deadline = clock() + RUNNING_TIMEOUT_S
    while dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
        if clock() > deadline:
            raise ReplicationError(f"{point.vm}: not running on {point.recovery_host} "
                                   f"{RUNNING_TIMEOUT_S:.0f} s after its start")
        time.sleep(0.1)
    now = clock()
    return Started(point.vm, point.recovery_host, point, now - failover_start_s,
                   failover_start_s - point.taken_s)


def running_on(conns: Connections, host: str, vm: str) -> bool:
    import libvirt  # noqa: PLC0415

    try:
        return bool(conns.get(host).lookupByName(vm).isActive())
    except (ReplicationError, libvirt.libvirtError):
        return False
