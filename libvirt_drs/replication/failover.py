"""Failover: start protected VMs on their recovery site from their recovery points.

Each VM starts on the recovery host that holds its replica, from a new qcow2 overlay whose
backing file is the recovery point (so the point itself stays as it was: a failover can be
repeated from it), with the domain definition saved with the point. Never twice: a VM that
still runs on a reachable primary host is refused (split brain), one already running on the
recovery host is left alone, and primary hosts that do not answer must be confirmed off by
the operator before anything starts.

- A test copy (`test=True`) is the VM started under another name (<vm>-drtest) with no
  network interface and its own overlay and serial log: production and replication go on.
- A planned move pauses the VM, takes a final point while it is paused (every write is
  in it), stops it and starts it from that point on the other site: a planned failover
  from the primary, a failback to it.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from libvirt_drs.config import HA_PRIORITIES, Config, ProtectionPolicy
from libvirt_drs.db import replication as store
from libvirt_drs.replication.placement import memory_mib
from libvirt_drs.replication.transfer import (
    POOL_NAME,
    Connections,
    ReplicationError,
    ensure_pool,
    replicate_vm,
    running_on_sites,
)

PROBE_TIMEOUT_S = 3.0
RUNNING_TIMEOUT_S = 30.0
TEST_SUFFIX = "-drtest"  # a test copy's domain name is <vm>-drtest
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
    name: str = ""  # the domain started: the VM's name, or <vm>-drtest for a test copy


def start_order(policies: list[ProtectionPolicy]) -> list[tuple[ProtectionPolicy, str]]:
    """(policy, vm) in the order VMs start: high priority first, then lower `order`, then
    as listed."""
    pairs = [(p, vm) for p in policies for vm in p.vms]
    return sorted(pairs, key=lambda pv: (HA_PRIORITIES.index(pv[0].priority), pv[0].order))


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


def isolated_definition(definition: str, name: str) -> str:
    """A test copy's definition: renamed, a new identity, no network interface (isolated
    from production), and its own console log next to the VM's."""
    root = ET.fromstring(definition)
    name_el = root.find("name")
    if name_el is None:
        raise ReplicationError("the saved definition has no name")
    name_el.text = name
    for tag in ("uuid", "./devices/interface"):
        for el in root.findall(tag):
            parent = root if tag == "uuid" else root.find("devices")
            assert parent is not None
            parent.remove(el)
    for path in ("./devices/serial/source", "./devices/console/source"):
        for source in root.findall(path):
            if source.get("path"):
                source.set("path", f"{source.get('path')}{TEST_SUFFIX}")
    return ET.tostring(root, encoding="unicode")


def isolated_log(path: str) -> str:
    """Where a test copy of a VM with serial log `path` writes its console."""
    return f"{path}{TEST_SUFFIX}"


def _check_room(conn: Any, host: str, definition: str) -> None:
    """The host has the memory the VM needs (capacity before a start, as the planner's
    hard limit); raises ReplicationError if not."""
    need_mib = memory_mib(definition)
    free_mib = conn.getFreeMemory() / (1 << 20)
    if need_mib > free_mib:
        raise ReplicationError(f"{ET.fromstring(definition).findtext('name')}: no room on "
                               f"{host}: needs {need_mib:.0f} MiB, {free_mib:.0f} MiB free")


def _overlay(pool: Any, point_file: str, name: str) -> str:
    """A new qcow2 over the point; compat 1.1 (qcow2 v3), which can hold the dirty bitmaps
    of the checkpoints that replicate it onwards (libvirt creates v2 files by default)."""
    import libvirt  # noqa: PLC0415

    capacity = pool.storageVolLookupByName(point_file.rsplit("/", 1)[1]).info()[1]
    try:
        pool.storageVolLookupByName(name).delete(0)  # a failed earlier attempt's overlay
    except libvirt.libvirtError:
        pass
    vol = pool.createXML(
        f"<volume><name>{name}</name><capacity unit='bytes'>{capacity}</capacity>"
        "<target><format type='qcow2'/><compat>1.1</compat></target><backingStore>"
        f"<path>{point_file}</path><format type='qcow2'/></backingStore></volume>", 0)
    return str(vol.path())


def start_from_point(conns: Connections, policy: ProtectionPolicy, point: store.Point,
                     failover_start_s: float, clock: Callable[[], float] = time.time,
                     test: bool = False, lost_s: float | None = None) -> Started:
    """Start the VM (or its test copy) on its point's host; raises ReplicationError (one
    line) if it cannot. lost_s: the writes lost, when known better than the point's age."""
    import libvirt  # noqa: PLC0415

    conn = conns.get(point.recovery_host)
    pool = ensure_pool(conn, policy.recovery_dir)
    name = f"{point.vm}{TEST_SUFFIX}" if test else point.vm
    tag = "drtest" if test else "run-" + time.strftime("%Y%m%d%H%M%S",
                                                       time.gmtime(failover_start_s))
    try:
        _check_room(conn, point.recovery_host, point.domain_xml)
        disks = {target: _overlay(pool, path, f"{point.vm}-{target}-{tag}.qcow2")
                 for target, path in point.volumes.items()}
        try:
            old = conn.lookupByName(name)  # an inactive definition left here earlier
            if not old.isActive():  # with its checkpoints: they describe its old disks
                old.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                                  | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        except libvirt.libvirtError:
            pass
        definition = failover_definition(point.domain_xml, disks)
        dom = conn.defineXML(isolated_definition(definition, name) if test else definition)
        dom.create()
    except libvirt.libvirtError as exc:
        raise ReplicationError(f"{name}: cannot start on {point.recovery_host}: "
                               f"{exc.get_error_message()}") from None
    deadline = clock() + RUNNING_TIMEOUT_S
    while dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
        if clock() > deadline:
            raise ReplicationError(f"{name}: not running on {point.recovery_host} "
                                   f"{RUNNING_TIMEOUT_S:.0f} s after its start")
        time.sleep(0.1)
    now = clock()
    lost = failover_start_s - point.taken_s if lost_s is None else lost_s
    return Started(point.vm, point.recovery_host, point, now - failover_start_s, lost, name)


def planned_move(cfg: Config, engine: Engine, conns: Connections, policy: ProtectionPolicy,
                 vm: str, start_s: float, clock: Callable[[], float] = time.time) -> Started:
    """Move a running VM to its other site with no write lost: pause it, take the final
    point while it is paused, stop it, start it there from that point. If the point or the
    start fails, the VM runs on where it was (raises ReplicationError, one line)."""
    import libvirt  # noqa: PLC0415

    source, dom = running_on_sites(conns, cfg, policy, vm)
    try:
        dom.suspend()
    except libvirt.libvirtError as exc:
        raise ReplicationError(f"{vm}: cannot pause on {source}: {exc.get_error_message()}") \
            from None
    try:
        point = replicate_vm(cfg, engine, conns, policy, vm, clock)
        dom.destroy()  # paused since the point: nothing written after it
    except (ReplicationError, libvirt.libvirtError) as exc:
        _resume(dom)
        msg = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else str(exc)
        raise ReplicationError(f"{msg} (still runs on {source})") from None
    try:
        if dom.isPersistent():
            dom.setAutostart(0)  # the other site runs it now
        return start_from_point(conns, policy, point, start_s, clock, lost_s=0.0)
    except (ReplicationError, libvirt.libvirtError) as exc:
        try:
            dom.create()  # its disk there is the point: nothing lost either way
            where = f"started again on {source}"
        except libvirt.libvirtError as again:
            where = f"and not started again on {source}: {again.get_error_message()}"
        msg = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else str(exc)
        raise ReplicationError(f"{msg} ({where})") from None


def _resume(dom: Any) -> None:
    import libvirt  # noqa: PLC0415

    try:
        dom.resume()
    except libvirt.libvirtError:
        pass


def remove_test_copies(conns: Connections, cfg: Config, policies: list[ProtectionPolicy]
                       ) -> list[tuple[str, str]]:
    """Stop and remove every <vm>-drtest copy of the policies' VMs and its overlays, on
    every host of their sites that answers: (copy, host) removed."""
    import libvirt  # noqa: PLC0415

    removed = []
    for policy in policies:
        hosts = [h.name for h in cfg.hosts if h.group in (policy.primary, policy.recovery)]
        for host in hosts:
            try:
                conn = conns.get(host)
            except ReplicationError:
                continue
            for vm in policy.vms:
                name = f"{vm}{TEST_SUFFIX}"
                try:
                    dom = conn.lookupByName(name)
                except libvirt.libvirtError:
                    continue
                try:
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
                except libvirt.libvirtError as exc:
                    raise ReplicationError(f"{name} on {host}: cannot remove: "
                                           f"{exc.get_error_message()}") from None
                removed.append((name, host))
            _delete_test_overlays(conn, policy.vms)
    return removed


def _delete_test_overlays(conn: Any, vms: tuple[str, ...]) -> None:
    import libvirt  # noqa: PLC0415

    try:
        pool = conn.storagePoolLookupByName(POOL_NAME)
        pool.refresh(0)
        names = pool.listVolumes()
    except libvirt.libvirtError:
        return
    for name in names:
        if name.endswith("-drtest.qcow2") and any(name.startswith(f"{vm}-") for vm in vms):
            try:
                pool.storageVolLookupByName(name).delete(0)
            except libvirt.libvirtError:
                pass


def running_on(conns: Connections, host: str, vm: str) -> bool:
    import libvirt  # noqa: PLC0415

    try:
        return bool(conns.get(host).lookupByName(vm).isActive())
    except (ReplicationError, libvirt.libvirtError):
        return False
