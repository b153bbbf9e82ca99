"""One replication of one VM: a recovery point on the recovery site, through libvirt only.

1. On the VM's primary host, a pull-mode backup (libvirt's backup API) freezes the disks
   at a new checkpoint and exports them over NBD; an incremental one also exports the
   blocks written since the previous point's checkpoint (a dirty bitmap). With the QEMU
   guest agent the filesystems are frozen around the checkpoint, else the point is
   crash-consistent.
2. Each disk's changed clusters are read over NBD and streamed, as a qcow2 file whose
   backing file is the previous point (qcow2.py), into a libvirt dir pool on the recovery
   host (storage volume upload: no SSH, no shared storage).
3. The file is verified (its size as laid out, its header read back) and only then
   recorded as the VM's recovery point. A transfer that fails midway (the recovery host or
   the network lost) deletes what it wrote where it can, records no point and leaves the
   previous point and its checkpoint in place, so the next attempt continues from there.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from libvirt_drs.config import Config, ProtectionPolicy
from libvirt_drs.db import replication as store
from libvirt_drs.errors import UserError
from libvirt_drs.libvirt_errors import quiet_libvirt
from libvirt_drs.replication import placement, qcow2
from libvirt_drs.replication.nbd import BASE_ALLOCATION, NbdClient, NbdError, dirty_bitmap_context

log = logging.getLogger(__name__)

POOL_NAME = "drs-replicas"
CHECKPOINT_PREFIX = "drs-"
STATE_ZERO = 2  # base:allocation: reads as zeros
UPLOAD_CHUNK_BYTES = 4 << 20


class ReplicationError(UserError):
    """One VM's replication failed; the message says where (one line)."""


@dataclass(frozen=True)
class Disk:
    target: str  # vda
    source: str  # the image file on the primary host


def protected_disks(domain_xml: str) -> list[Disk]:
    """The VM's file-backed qcow2 disks: what checkpoints (and so replication) can cover."""
    disks = []
    for d in ET.fromstring(domain_xml).findall("./devices/disk"):
        driver, source, target = d.find("driver"), d.find("source"), d.find("target")
        if (d.get("device", "disk") == "disk" and d.get("type") == "file"
                and driver is not None and driver.get("type") == "qcow2"
                and source is not None and source.get("file") and target is not None):
            disks.append(Disk(target.get("dev", ""), source.get("file", "")))
    return disks


def backup_xml(disks: list[Disk], address: str, port: int, incremental: str | None,
               scratch_dir: str) -> str:
    inc = f"<incremental>{incremental}</incremental>" if incremental else ""
    items = "".join(f"<disk name='{d.target}' backup='yes' type='file'>"
                    f"<scratch file='{scratch_dir}/drs-scratch-{d.target}-{time.time_ns()}.qcow2'/>"
                    "</disk>" for d in disks)
    return (f"<domainbackup mode='pull'>{inc}<server transport='tcp' name='{address}' "
            f"port='{port}'/><disks>{items}</disks></domainbackup>")


def checkpoint_xml(name: str, disks: list[Disk]) -> str:
    items = "".join(f"<disk name='{d.target}' checkpoint='bitmap'/>" for d in disks)
    return f"<domaincheckpoint><name>{name}</name><disks>{items}</disks></domaincheckpoint>"


def exports(backup_desc: str) -> dict[str, tuple[str, str]]:
    """disk target -> (NBD export name, dirty bitmap name or "") of a running backup."""
    out = {}
    for d in ET.fromstring(backup_desc).findall("./disks/disk"):
        name = d.get("name") or ""
        if d.get("backup") == "yes":
            out[name] = (d.get("exportname") or name, d.get("exportbitmap") or "")
    return out


def host_address(uri: str) -> str:
    """Where the host's NBD export is reached: the host part of its libvirt URI."""
    return urlsplit(uri).hostname or "127.0.0.1"


class Connections:
    """libvirt connections by host name, opened on first use."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._conns: dict[str, Any] = {}

    def get(self, host: str) -> Any:
        import libvirt  # noqa: PLC0415 (libvirt only at the edges)

        if host not in self._conns:
            h = self.cfg.host(host)
            if h is None:
                raise ReplicationError(f"unknown host {host!r}")
            quiet_libvirt()
            try:
                self._conns[host] = libvirt.open(h.uri)
            except libvirt.libvirtError as exc:
                raise ReplicationError(f"{host} does not answer: {exc.get_error_message()}") \
                    from None
        return self._conns[host]

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 (closing a dead connection)
                pass
        self._conns.clear()


def _running_on(conns: Connections, hosts: list[str], vm: str) -> tuple[str, Any]:
    import libvirt  # noqa: PLC0415

    unreachable = []
    for host in hosts:
        try:
            dom = conns.get(host).lookupByName(vm)
            if dom.isActive():
                return host, dom
        except ReplicationError:
            unreachable.append(host)
        except libvirt.libvirtError:
            continue
    extra = f" ({', '.join(unreachable)} not answering)" if unreachable else ""
    raise ReplicationError(f"{vm} runs on no host of its two sites{extra}")


def running_on_sites(conns: Connections, cfg: Config, policy: ProtectionPolicy, vm: str
                     ) -> tuple[str, Any]:
    """(host, domain) where the VM runs: on a host of either of the policy's sites."""
    return _running_on(conns, site_hosts(cfg, policy.primary) + site_hosts(cfg, policy.recovery),
                       vm)


def site_hosts(cfg: Config, group: str) -> list[str]:
    return [h.name for h in cfg.hosts if h.group == group]


def ensure_pool(conn: Any, directory: str) -> Any:
    """The recovery host's dir pool of replicas (defined, built and started if missing)."""
    import libvirt  # noqa: PLC0415

    try:
        pool = conn.storagePoolLookupByName(POOL_NAME)
    except libvirt.libvirtError:
        pool = conn.storagePoolDefineXML(f"<pool type='dir'><name>{POOL_NAME}</name><target>"
                                         f"<path>{directory}</path></target></pool>", 0)
        pool.build(0)
        pool.setAutostart(1)
    if not pool.isActive():
        pool.create(0)
    path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path")
    if path != directory:
        raise ReplicationError(f"pool {POOL_NAME} on the recovery host is at {path}, the "
                               f"policy says {directory}")
    return pool


def _throttled(chunks: Iterator[bytes], mib_s: float, clock: Callable[[], float]
               ) -> Iterator[bytes]:
    start, sent = clock(), 0
    for chunk in chunks:
        yield chunk
        sent += len(chunk)
        if mib_s > 0:
            ahead_s = sent / (mib_s * 1024 * 1024) - (clock() - start)
            if ahead_s > 0:
                time.sleep(ahead_s)


def _upload(conn: Any, pool: Any, name: str, chunks: Iterator[bytes], length: int) -> Any:
    import libvirt  # noqa: PLC0415

    try:
        pool.storageVolLookupByName(name).delete(0)  # an interrupted attempt's leftover
    except libvirt.libvirtError:
        pass
    vol = pool.createXML(f"<volume><name>{name}</name><capacity>0</capacity>"
                         "<target><format type='raw'/></target></volume>", 0)
    stream = conn.newStream(0)
    try:
        vol.upload(stream, 0, length, 0)
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = stream.send(bytes(view[:UPLOAD_CHUNK_BYTES]))
                if n < 0:
                    raise ReplicationError(f"upload of {name} stalled")
                view = view[n:]
        stream.finish()
    except BaseException:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
        raise
    return vol


def _verify(conn: Any, pool: Any, name: str, head: bytes, length: int) -> str:
    """The uploaded file has the laid-out size and its metadata reads back as sent."""
    pool.refresh(0)
    vol = pool.storageVolLookupByName(name)
    _kind, _capacity, allocation = vol.info()
    stream = conn.newStream(0)
    got = bytearray()
    vol.download(stream, 0, len(head), 0)
    while len(got) < len(head):
        data = stream.recv(len(head) - len(got))
        if not isinstance(data, bytes) or not data:
            break
        got += data
    stream.finish()
    physical = int(ET.fromstring(vol.XMLDesc(0)).findtext("./physical") or allocation)
    if physical != length or bytes(got) != head:
        raise ReplicationError(f"{name} on the recovery host does not read back as written "
                               f"({physical} of {length} bytes)")
    return str(vol.path())


def _delete_quietly(pool: Any, names: list[str]) -> None:
    for name in names:
        try:
            pool.storageVolLookupByName(name).delete(0)
        except Exception:  # noqa: BLE001 (the recovery host may be the thing that failed)
            pass


def _pick_recovery_host(conns: Connections, engine: Engine, hosts: list[str], vm: str,
                        domain_xml: str) -> str:
    """The answering host of the site with the most memory left for a failover
    (placement.choose_host), counting the VMs whose newest points it holds."""
    capacity = {}
    for host in hosts:
        try:
            capacity[host] = float(conns.get(host).getInfo()[1])  # MiB
        except ReplicationError:
            continue
    if not capacity:
        raise ReplicationError(f"no host of the recovery site answers ({', '.join(hosts)})")
    held: dict[str, float] = {}
    for other, point in store.latest(engine, on_hosts=capacity).items():
        if other != vm:
            held[point.recovery_host] = (held.get(point.recovery_host, 0.0)
                                         + placement.memory_mib(point.domain_xml))
    return placement.choose_host(capacity, held, placement.memory_mib(domain_xml))


def replicate_vm(cfg: Config, engine: Engine, conns: Connections, policy: ProtectionPolicy,
                 vm: str, clock: Callable[[], float] = time.time) -> store.Point:
    """Take the VM's next recovery point on the other site than the one it runs on (the
    recovery site; the primary after a failover): incremental from the newest point there
    whose checkpoint the VM still has, else full."""
    import libvirt  # noqa: PLC0415

    primary, recovery = site_hosts(cfg, policy.primary), site_hosts(cfg, policy.recovery)
    source, dom = _running_on(conns, primary + recovery, vm)
    to_site = recovery if source in primary else primary  # after a failover: in reverse
    domain_xml = dom.XMLDesc(0)
    disks = protected_disks(domain_xml)
    if not disks:
        raise ReplicationError(f"{vm} has no file-backed qcow2 disk to replicate")
    prev = store.newest(engine, vm, on_hosts=to_site)
    recovery_host = prev.recovery_host if prev else _pick_recovery_host(conns, engine, to_site, vm,
                                                                        domain_xml)
    rconn = conns.get(recovery_host)
    pool = ensure_pool(rconn, policy.recovery_dir)
    have = {c.getName() for c in dom.listAllCheckpoints(0)}
    incremental = (prev is not None and prev.checkpoint in have
                   and protected_disks(prev.domain_xml) == disks)  # the same disk files
    seq = store.next_seq(engine, vm)
    checkpoint = f"{CHECKPOINT_PREFIX}{seq}"
    if checkpoint in have:  # left by an attempt that recorded no point
        _delete_checkpoint(dom, checkpoint)
        have.discard(checkpoint)
    src_host = cfg.host(source)
    assert src_host is not None
    address = host_address(src_host.uri)
    frozen = _freeze(dom)
    taken_s = clock()
    try:
        dom.backupBegin(backup_xml(disks, address, cfg.replication.nbd_port,
                                   prev.checkpoint if incremental and prev else None,
                                   "/var/lib/libvirt/qemu"),
                        checkpoint_xml(checkpoint, disks), 0)
    except libvirt.libvirtError as exc:
        raise ReplicationError(f"{vm}: backup on {source} refused: "
                               f"{exc.get_error_message()}") from None
    finally:
        if frozen:
            _thaw(dom)
    written: list[str] = []
    try:
        volumes, sent = {}, 0
        for target, (export, bitmap) in exports(dom.backupGetXMLDesc(0)).items():
            name = f"{vm}-{target}-{seq:06d}.qcow2"
            backing = prev.volumes[target] if incremental and prev else ""
            written.append(name)
            volumes[target], n = _copy_disk(rconn, pool, name, address, cfg.replication.nbd_port,
                                            export, bitmap if incremental else "", backing,
                                            cfg.replication.bandwidth_mib_s, clock)
            sent += n
    except (libvirt.libvirtError, NbdError, OSError, ReplicationError) as exc:
        _end_backup(dom)
        _delete_quietly(pool, written)
        _delete_checkpoint(dom, checkpoint)
        msg = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else str(exc)
        raise ReplicationError(f"{vm}: transfer to {recovery_host} failed: {msg}") from None
    _end_backup(dom)
    point = store.Point(vm, seq, policy.name, "incremental" if incremental else "full", source,
                        recovery_host, checkpoint, taken_s, clock(), volumes, sent, domain_xml)
    store.add_point(engine, point)
    for name in have - {checkpoint}:  # only the newest checkpoint is needed from now on
        if name.startswith(CHECKPOINT_PREFIX):
            _delete_checkpoint(dom, name)
    log.info("replicated %s: point %d (%s, %d bytes) on %s", vm, seq, point.kind, sent,
             recovery_host)
    return point


def _copy_disk(rconn: Any, pool: Any, name: str, address: str, port: int, export: str,
               bitmap: str, backing: str, mib_s: float, clock: Callable[[], float]
               ) -> tuple[str, int]:
    contexts = (BASE_ALLOCATION, *((dirty_bitmap_context(bitmap),) if bitmap else ()))
    with NbdClient.connect_tcp(address, port, export, contexts) as nbd:
        zero = set(qcow2.clusters_within([(e.offset, e.length)
                                          for e in nbd.extents(BASE_ALLOCATION)
                                          if e.flags & STATE_ZERO]))
        if bitmap:  # an overlay: the changed clusters, zeros as zero clusters
            changed = qcow2.clusters_of([(e.offset, e.length) for e in nbd.dirty_extents(bitmap)])
            lay = qcow2.layout(nbd.size_bytes, [c for c in changed if c not in zero],
                               [c for c in changed if c in zero])
        else:  # the first point: everything that does not read as zeros
            n_clusters = -(-nbd.size_bytes // qcow2.CLUSTER_BYTES)
            lay = qcow2.layout(nbd.size_bytes, [c for c in range(n_clusters) if c not in zero])
        chunks = qcow2.stream(lay, nbd.read, backing=backing)
        head = next(chunks)
        _upload(rconn, pool, name, _throttled(_prepend(head, chunks), mib_s, clock),
                lay.file_bytes)
    return _verify(rconn, pool, name, head, lay.file_bytes), lay.file_bytes


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _freeze(dom: Any) -> bool:
    """Freeze the guest's filesystems through its agent; False without one (crash-consistent)."""
    import libvirt  # noqa: PLC0415

    try:
        dom.fsFreeze(None, 0)
        return True
    except libvirt.libvirtError:
        return False


def _thaw(dom: Any) -> None:
    import libvirt  # noqa: PLC0415

    try:
        dom.fsThaw(None, 0)
    except libvirt.libvirtError as exc:
        log.warning("thawing %s: %s", dom.name(), exc.get_error_message())


def _end_backup(dom: Any) -> None:
    import libvirt  # noqa: PLC0415

    try:
        dom.abortJob()  # how a pull-mode backup ends
    except libvirt.libvirtError:
        pass


def _delete_checkpoint(dom: Any, name: str) -> None:
    import libvirt  # noqa: PLC0415

    try:
        dom.checkpointLookupByName(name, 0).delete(0)
    except libvirt.libvirtError:
        pass
