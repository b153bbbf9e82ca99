"""One lab host: a libvirtd in its own mount namespace, own address, UUID, dirs, pid file."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from libvirt_drs.errors import UserError
from libvirt_drs.lab import procs
from libvirt_drs.lab.spec import LIBVIRT_TCP_PORT, LIBVIRT_TLS_PORT, host_uri
from libvirt_drs.lab.state import BIND_TARGETS, LabHost
from libvirt_drs.libvirt_errors import quiet_libvirt

log = logging.getLogger(__name__)

IMAGES_INSIDE = "/var/lib/libvirt/images"  # per-host storage: same path, distinct per host
POOL_NAME = "lab-images"


def libvirtd_conf(address: str, host_uuid: str, tls_dir: str = "") -> str:
    """TCP without authentication (lab only) and, with `tls_dir`, TLS with client
    certificates signed by its CA: how production hosts are reached (docs/production.md)."""
    tls = ("listen_tls = 0\n" if not tls_dir else
           "listen_tls = 1\n"
           f'tls_port = "{LIBVIRT_TLS_PORT}"\n'
           f'ca_file = "{tls_dir}/cacert.pem"\n'
           f'cert_file = "{tls_dir}/{address}/servercert.pem"\n'
           f'key_file = "{tls_dir}/{address}/serverkey.pem"\n'
           'auth_tls = "none"\n')
    return (
        "# drs lab host: lab use only (no authentication on TCP)\n"
        f"{tls}"
        "listen_tcp = 1\n"
        f'listen_addr = "{address}"\n'
        'auth_tcp = "none"\n'
        'auth_unix_rw = "none"\n'
        f'host_uuid = "{host_uuid}"\n'
        'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
        "max_clients = 200\n"
        "max_workers = 40\n"
    )


def qemu_conf(address: str) -> str:
    """QEMU as root without virtlogd or cgroups, migration on the host's own address, and
    libvirt's lock manager (virtlockd): a disk in use by one QEMU cannot be started by a
    second, on this host or any other lab host (they share the image files)."""
    return (
        'lock_manager = "lockd"\n'
        'user = "root"\n'
        'group = "root"\n'
        "dynamic_ownership = 0\n"
        "remember_owner = 0\n"
        'security_driver = "none"\n'
        'stdio_handler = "file"\n'
        "cgroup_controllers = [ ]\n"
        # no private mount namespace per QEMU: every guest stays in its host's namespace,
        # which is how `lab down` finds (and the namespace's end proves gone) all of them
        "namespaces = [ ]\n"
        f'migration_address = "{address}"\n'
        f'migration_host = "{address}"\n'
    )


# virtlockd leases every disk by locking the image file itself (no lockspace directory):
# on the lab's shared storage that is one file for all hosts
QEMU_LOCKD_CONF = "auto_disk_leases = 1\nrequire_lease_for_disks = 1\n"
VIRTLOCKD_CONF = 'log_outputs = "3:file:/var/log/libvirt/virtlockd.log"\n'


def new_host(name: str, address: str, lab_dir: Path, tls_dir: str = "") -> LabHost:
    host_dir = lab_dir / "hosts" / name
    return LabHost(name=name, address=address, uri=host_uri(address),
                   host_uuid=str(uuid.uuid4()), dir=str(host_dir), tls_dir=tls_dir)


def address_in_use(address: str, port: int = LIBVIRT_TCP_PORT) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((address, port)) == 0


def prepare(host: LabHost, caps_cache: Path | None = None) -> None:
    """Create the per-host directories and write libvirtd.conf and qemu.conf.

    `caps_cache` holds QEMU capabilities XML saved from an earlier host: libvirtd checks
    it is still valid (binary ctimes, versions) and skips probing QEMU (seconds of CPU)."""
    for key in BIND_TARGETS:
        host.sub(key).mkdir(parents=True, exist_ok=True)
    if caps_cache and caps_cache.is_dir():
        dst = host.sub("cache") / "qemu" / "capabilities"
        dst.mkdir(parents=True, exist_ok=True)
        for xml in caps_cache.glob("*.xml"):
            shutil.copy2(xml, dst / xml.name)
    (host.sub("lib") / "images").mkdir(exist_ok=True)
    (host.sub("log") / "qemu").mkdir(exist_ok=True)
    (host.sub("etc") / "libvirtd.conf").write_text(libvirtd_conf(host.address, host.host_uuid,
                                                                 host.tls_dir))
    (host.sub("etc") / "qemu.conf").write_text(qemu_conf(host.address))
    (host.sub("etc") / "qemu-lockd.conf").write_text(QEMU_LOCKD_CONF)
    (host.sub("etc") / "virtlockd.conf").write_text(VIRTLOCKD_CONF)


# GLib before 2.76 (Debian 12 has 2.74) allocates GObjects from its slice allocator, whose
# lock a fork can copy held: libvirtd's child between fork and exec of a QEMU takes the disk
# leases (virDomainLockProcessStart -> virtlockd client -> g_slice_alloc) and hung there,
# with virDomainCreate and its caller waiting forever (seen in CI: the first lab test ran
# into CI's 90-minute limit). Plain malloc is safe across fork. docs/ha.md says the same
# for production hosts.
LIBVIRTD_ENV = {"G_SLICE": "always-malloc"}


def start(host: LabHost) -> None:
    """Start libvirtd inside a new private mount namespace; its pid is also the ns holder."""
    binds = " && ".join(f"mkdir -p {target} && mount --bind {host.sub(key)} {target}"
                        for key, target in BIND_TARGETS.items())
    pidfile = Path(host.dir) / "libvirtd.pid"
    lockd_pid = Path(host.dir) / "virtlockd.pid"
    lockd_pid.unlink(missing_ok=True)
    # virtlockd first (libvirtd's lock manager talks to it over /run/libvirt/virtlockd-sock)
    script = (f"set -e; {binds}; virtlockd -d -f /etc/libvirt/virtlockd.conf -p {lockd_pid}; "
              f"exec libvirtd -f /etc/libvirt/libvirtd.conf -p {pidfile} --listen")
    logfile = open(Path(host.dir) / "libvirtd.stderr", "ab")  # noqa: SIM115 (child keeps it)
    try:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, start_new_session=True,
            close_fds=True, env={**os.environ, **LIBVIRTD_ENV})
    finally:
        logfile.close()
    host.pid = proc.pid  # unshare and sh exec, so this is libvirtd's pid


def wait_ready(host: LabHost, timeout_s: float = 60.0) -> None:
    """Wait until the host answers on its TCP URI; remember its mount namespace."""
    import libvirt  # noqa: PLC0415 (only the lab and collectors need the binding)

    quiet_libvirt()

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if not procs.alive(host.pid):
            raise UserError(f"libvirtd of lab host {host.name} exited at start; see "
                            f"{Path(host.dir) / 'libvirtd.stderr'}")
        if not host.mnt_ns:
            ns = procs.mnt_ns(host.pid)
            if ns and ns != procs.mnt_ns(os.getpid()):
                host.mnt_ns = ns
        try:
            conn = libvirt.open(host.uri)
        except libvirt.libvirtError as exc:
            last = str(exc)
            time.sleep(0.1)
            continue
        try:
            conn.getCapabilities()
            return
        finally:
            conn.close()
    raise UserError(f"lab host {host.name} did not answer on {host.uri} within "
                    f"{timeout_s:.0f} s ({last})")


def save_caps(host: LabHost, caps_cache: Path) -> None:
    """Keep the host's QEMU capabilities XML for the next hosts (see prepare)."""
    src = host.sub("cache") / "qemu" / "capabilities"
    found = list(src.glob("*.xml")) if src.is_dir() else []
    if not found:
        return
    caps_cache.mkdir(parents=True, exist_ok=True)
    for xml in found:
        tmp = caps_cache / f".{xml.name}.tmp"
        shutil.copy2(xml, tmp)
        os.replace(tmp, caps_cache / xml.name)


def define_pool(conn, path: str) -> None:  # type: ignore[no-untyped-def]
    """A dir pool over the images directory, so copy-storage migration can precreate disks."""
    xml = (f"<pool type='dir'><name>{POOL_NAME}</name>"
           f"<target><path>{path}</path></target></pool>")
    pool = conn.storagePoolDefineXML(xml, 0)
    pool.setAutostart(1)
    pool.create(0)


def guest_pids(host: LabHost) -> list[int]:
    """QEMU pids from the host's pid files, kept only if they are this host's guests: in its
    mount namespace, or holding a file of this lab open (a serial log, a disk)."""
    found = [procs.read_pidfile(p) for p in (host.sub("run") / "qemu").glob("*.pid")]
    lab_dir = Path(host.dir).parents[1]
    return [p for p in found if p and p != host.pid
            and (_in_ns(p, host) or procs.has_open_file_under(p, lab_dir))]


def daemon_pid(host: LabHost) -> list[int]:
    """libvirtd's pid, if it still runs: once the host's namespace is known, only a process
    in it (a recorded pid may belong to another process after a reboot)."""
    pid = host.pid
    ours = _in_ns(pid, host) if host.mnt_ns else _is_libvirtd(pid)
    return [pid] if procs.alive(pid) and ours else []


def lockd_pid(host: LabHost) -> list[int]:
    pid = procs.read_pidfile(Path(host.dir) / "virtlockd.pid")
    return [pid] if pid and procs.alive(pid) and _in_ns(pid, host) else []


def kill(host: LabHost, timeout_s: float = 10.0) -> list[int]:
    """A power cut: SIGKILL every process of the host (guests, virtlockd, libvirtd) at
    once; returns the pids still alive after `timeout_s` (none, normally)."""
    pids = [*guest_pids(host), *lockd_pid(host), *daemon_pid(host),
            *(procs.pids_in_mnt_ns(host.mnt_ns) if host.mnt_ns else [])]
    for pid in set(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    procs.terminate(set(pids), timeout_s)
    return [p for p in set(pids) if procs.alive(p)]


def stop(hosts: list[LabHost], timeout_s: float = 3.0) -> None:
    """End every process of the hosts' mount namespaces: guests first (they are disposable,
    so SIGKILL), then libvirtd. The bind mounts vanish with the namespace."""
    procs.terminate([p for h in hosts for p in guest_pids(h)], timeout_s=0)
    procs.terminate([p for h in hosts for p in daemon_pid(h)], timeout_s)
    procs.terminate([p for h in hosts for p in lockd_pid(h)], timeout_s)
    # Anything else still in a namespace (e.g. a QEMU whose pid file was lost).
    for h in hosts:
        rest = [p for ns in [h.mnt_ns, *h.past_mnt_ns] for p in procs.pids_in_mnt_ns(ns)]
        if rest:
            log.warning("lab host %s: ending leftover pids %s", h.name, rest)
            procs.terminate(rest, timeout_s)
    if hosts:  # a QEMU outside every namespace that still holds a file of this lab
        lab_dir = Path(hosts[0].dir).parents[1]
        rest = [p for p in procs.pids_holding_files_under(lab_dir) if p != os.getpid()]
        if rest:
            log.warning("lab %s: ending leftover pids %s holding its files", lab_dir.name, rest)
            procs.terminate(rest, timeout_s)


def _is_libvirtd(pid: int) -> bool:
    args = procs.cmdline(pid)
    return bool(args) and Path(args[0]).name in ("libvirtd", "unshare", "sh")


def _in_ns(pid: int, host: LabHost) -> bool:
    """Whether `pid` runs in the host's private mount namespace. Never true for the caller's
    own namespace: a leftover lab's recorded namespace (and its pid files) may, after a
    reboot, name the namespace and pids of unrelated processes."""
    ns = procs.mnt_ns(pid)
    return bool(host.mnt_ns) and ns == host.mnt_ns and ns != procs.mnt_ns(os.getpid())
