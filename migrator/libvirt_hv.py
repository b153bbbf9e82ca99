"""The Hypervisor Protocol over libvirt-python: peer-to-peer live migration.

One cached connection per host for queries; each migration opens its own connection to
the source because migrateToURI3 blocks for the whole transfer.
"""

from __future__ import annotations

import hashlib
import logging
import os.path
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import libvirt

from libvirt_drs.libvirt_errors import libvirt_message, quiet_libvirt
from libvirt_drs.migrator import domxml
from libvirt_drs.migrator.hypervisor import (
    CpuCompare,
    CpuModel,
    Disk,
    DomainInfo,
    DomainRunState,
    HostFacts,
    HypervisorError,
)
from libvirt_drs.migrator.model import CompletedStats, MigrationOptions, Progress

log = logging.getLogger(__name__)
T = TypeVar("T")

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: DomainRunState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: DomainRunState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainRunState.SHUTOFF,
}


def migration_flags(options: MigrationOptions) -> int:
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)
    if options.auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if options.compression:
        flags |= libvirt.VIR_MIGRATE_COMPRESSED
    if options.copy_storage:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    if options.postcopy_after_iterations > 0:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    return flags


def migration_params(options: MigrationOptions) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if options.bandwidth_mib_s > 0:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = options.bandwidth_mib_s
    return params


class LibvirtHypervisor:
    def __init__(self, uris: Mapping[str, str], mem_caps_mib: Mapping[str, int] | None = None,
                 open_fn: Callable[[str], libvirt.virConnect] = libvirt.open) -> None:
        quiet_libvirt()  # ours are raised as exceptions
        self.uris = dict(uris)
        self.mem_caps_mib = dict(mem_caps_mib or {})
        self._open = open_fn
        self._conns: dict[str, libvirt.virConnect] = {}
        self._lock = threading.Lock()
        self._pool_lock = threading.Lock()

    def uri(self, host: str) -> str:
        try:
            return self.uris[host]
        except KeyError:
            raise HypervisorError(f"unknown host {host!r} (not in the config)") from None

    def _connect(self, host: str) -> libvirt.virConnect:
        try:
            return self._open(self.uri(host))
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"{host}: cannot connect: {libvirt_message(exc)}") from None

    def _conn(self, host: str) -> libvirt.virConnect:
        with self._lock:
            conn = self._conns.get(host)
            if conn is not None and _alive(conn):
                return conn
            conn = self._connect(host)
            self._conns[host] = conn
            return conn

    def _call(self, host: str, fn: Callable[[libvirt.virConnect], T]) -> T:
        """`fn` on the host's cached connection, reconnecting once if that one broke."""
        for attempt in (1, 2):
            conn = self._conn(host)
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                if attempt == 1 and not _alive(conn):
                    with self._lock:
                        self._conns.pop(host, None)
                    continue
                raise HypervisorError(f"{host}: {libvirt_message(exc)}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                try:
                    conn.close()
                except libvirt.libvirtError:
                    pass
            self._conns.clear()

    # -- queries ---------------------------------------------------------------------
    def domain(self, host: str, vm_name: str) -> DomainInfo | None:
        return self._call(host, lambda c: self._domain(c, vm_name))

    def _domain(self, conn: libvirt.virConnect, vm_name: str) -> DomainInfo | None:
        try:
            return self._domain_info(conn, vm_name)
        except libvirt.libvirtError as exc:
            # found, then gone before the next call (a migration just finished and
            # undefined it on this host): the domain is not here, the host is fine
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _domain_info(self, conn: libvirt.virConnect, vm_name: str) -> DomainInfo | None:
        dom = _lookup(conn, vm_name)
        if dom is None:
            return None
        state = _STATES.get(dom.state()[0], DomainRunState.OTHER)
        root = ET.fromstring(dom.XMLDesc(0))
        host_cpu = None
        cpu_el = root.find("cpu")
        if cpu_el is not None and cpu_el.get("mode") in ("host-passthrough", "maximum"):
            caps_cpu = ET.fromstring(conn.getCapabilities()).find("./host/cpu")
            host_cpu = ET.tostring(caps_cpu, encoding="unicode") if caps_cpu is not None else None
        return DomainInfo(
            name=dom.name(), uuid=dom.UUIDString(), state=state,
            persistent=bool(dom.isPersistent()), mem_mib=dom.maxMemory() // 1024,
            disks=domxml.disks(root), nics=domxml.nics(root), cpu=domxml.cpu(root, host_cpu),
            job_active=state is not DomainRunState.SHUTOFF and _job_active(dom),
        )

    def host_facts(self, host: str) -> HostFacts:
        return self._call(host, lambda c: self._host_facts(host, c))

    def _host_facts(self, host: str, conn: libvirt.virConnect) -> HostFacts:
        free_mib = conn.getFreeMemory() // (1024 * 1024)
        cap = self.mem_caps_mib.get(host)
        if cap is not None:
            used_mib = sum(d.maxMemory() // 1024 for d in conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
            free_mib = min(free_mib, cap - used_mib)
        nets = conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)
        bridges: frozenset[str] | None
        try:
            bridges = frozenset(i.name() for i in conn.listAllInterfaces(0))
            bridges |= {n.bridgeName() for n in nets}
        except libvirt.libvirtError:
            bridges = None
        return HostFacts(free_mem_mib=int(free_mib), networks=frozenset(n.name() for n in nets),
                         bridges=bridges)

    def compare_cpu(self, host: str, cpu: CpuModel) -> CpuCompare:
        if cpu.xml is None:
            return CpuCompare.UNKNOWN
        xml = cpu.xml
        verdict = self._call(host, lambda c: c.compareHypervisorCPU(
            cpu.emulator, cpu.arch, cpu.machine, cpu.virt_type, xml, 0))
        if verdict in (libvirt.VIR_CPU_COMPARE_IDENTICAL, libvirt.VIR_CPU_COMPARE_SUPERSET):
            return CpuCompare.COMPATIBLE
        return CpuCompare.INCOMPATIBLE

    # -- storage -----------------------------------------------------------------------
    def missing_paths(self, host: str, paths: tuple[str, ...]) -> tuple[str, ...]:
        def missing(conn: libvirt.virConnect) -> tuple[str, ...]:
            return tuple(p for p in paths if not _exists(self, conn, p))

        return self._call(host, missing)

    def prepare_storage(self, host: str, disks: tuple[Disk, ...]) -> None:
        def prepare(conn: libvirt.virConnect) -> None:
            for d in disks:
                self._pool_for(conn, os.path.dirname(d.path), build=True)

        self._call(host, prepare)

    def _pool_for(self, conn: libvirt.virConnect, directory: str,
                  build: bool = False) -> libvirt.virStoragePool | None:
        """An active pool over `directory`, creating a transient one if none exists.

        libvirt looks up (and for copy-storage pre-creates) volumes through pools only.
        """
        with self._pool_lock:
            pool = _find_pool(conn, directory)
            if pool is not None:
                return pool
            name = "drs-" + hashlib.sha1(directory.encode()).hexdigest()[:12]
            flags = libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD if build else 0
            try:
                return conn.storagePoolCreateXML(domxml.dir_pool(name, directory), flags)
            except libvirt.libvirtError as exc:
                pool = _find_pool(conn, directory)  # another process may have made it
                if pool is None and build:
                    raise
                log.debug("no pool over %s: %s", directory, libvirt_message(exc))
                return pool

    # -- migration ---------------------------------------------------------------------
    def migrate(self, source: str, destination: str, vm_name: str,
                options: MigrationOptions) -> None:
        conn = self._connect(source)
        try:
            dom = conn.lookupByName(vm_name)
            try:
                dom.migrateSetMaxDowntime(options.max_downtime_ms, 0)
            except libvirt.libvirtError as exc:
                log.warning("%s: cannot set max downtime: %s", vm_name, libvirt_message(exc))
            dom.migrateToURI3(self.uri(destination), migration_params(options),
                              migration_flags(options))
        except libvirt.libvirtError as exc:
            raise HypervisorError(libvirt_message(exc)) from None
        finally:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

    def job_progress(self, host: str, vm_name: str) -> Progress | None:
        stats = self._call(host, lambda c: _job_stats(c, vm_name, 0))
        if not stats or stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
            return None
        return _progress(stats)

    def completed_stats(self, host: str, vm_name: str) -> CompletedStats:
        stats = self._call(host, lambda c: _job_stats(
            c, vm_name, libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
        if not stats:
            return CompletedStats()
        transferred = stats.get("data_processed")
        if transferred is None and "memory_processed" in stats:
            transferred = stats["memory_processed"] + stats.get("disk_processed", 0)
        return CompletedStats(total_ms=_float(stats.get("time_elapsed")),
                              downtime_ms=_float(stats.get("downtime")),
                              bytes_transferred=transferred)

    def abort_job(self, host: str, vm_name: str) -> None:
        self._call(host, lambda c: c.lookupByName(vm_name).abortJob())

    def start_postcopy(self, host: str, vm_name: str) -> None:
        self._call(host, lambda c: c.lookupByName(vm_name).migrateStartPostCopy(0))

    def remove_leftover(self, host: str, vm_name: str) -> bool:
        return self._call(host, lambda c: _remove_leftover(c, vm_name))

    # -- HA (libvirt_drs.ha.HaHypervisor) ---------------------------------------------
    def domain_xml(self, host: str, vm_name: str) -> str | None:
        """The VM's definition as libvirt keeps it (no secrets: without VIR_DOMAIN_XML_SECURE),
        None if the host does not have it."""
        def read(conn: libvirt.virConnect) -> str | None:
            dom = _lookup(conn, vm_name)
            return None if dom is None else str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        return self._call(host, read)

    def define_and_start(self, host: str, xml: str) -> None:
        """Define the VM on `host` (persistently) and start it; libvirt's lock manager
        refuses the start if its disks are in use elsewhere."""
        def run(conn: libvirt.virConnect) -> None:
            conn.defineXML(xml).create()
        self._call(host, run)


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def _lookup(conn: libvirt.virConnect, vm_name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(vm_name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _job_active(dom: libvirt.virDomain) -> bool:
    try:
        return bool(dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE)
    except libvirt.libvirtError:
        return False


def _job_stats(conn: libvirt.virConnect, vm_name: str, flags: int) -> dict[str, Any] | None:
    dom = _lookup(conn, vm_name)
    return None if dom is None else dict(dom.jobStats(flags))


def _progress(stats: Mapping[str, Any]) -> Progress:
    dirty_pages_s = stats.get("memory_dirty_rate", 0)
    page_size = stats.get("memory_page_size", 4096)
    return Progress(
        bytes_processed=int(stats.get("data_processed", 0)),
        bytes_remaining=int(stats.get("data_remaining", 0)),
        bytes_total=int(stats.get("data_total", 0)),
        dirty_rate_bps=float(dirty_pages_s * page_size),
        iteration=int(stats.get("memory_iteration", 0)),
        elapsed_ms=float(stats.get("time_elapsed", 0)),
    )


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _find_pool(conn: libvirt.virConnect, directory: str) -> libvirt.virStoragePool | None:
    wanted = os.path.normpath(directory)
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        target = domxml.pool_target(pool.XMLDesc(0))
        if target and os.path.normpath(target) == wanted:
            return pool
    return None


def _exists(hv: LibvirtHypervisor, conn: libvirt.virConnect, path: str) -> bool:
    pool = hv._pool_for(conn, os.path.dirname(path))
    if pool is None:
        return False  # the directory itself does not exist there
    pool.refresh(0)
    try:
        conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return False
        raise
    return True


def _remove_leftover(conn: libvirt.virConnect, vm_name: str) -> bool:
    """Never touches a running domain: only a paused incoming copy or a shut-off definition."""
    dom = _lookup(conn, vm_name)
    if dom is None or dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
        return False
    if dom.isActive():
        dom.destroy()
    if dom.isPersistent():
        dom.undefine()
    return True
