"""The lab as a whole: `up`, `down`, `status`, and helpers the tests share (migrate, reset)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from libvirt_drs.errors import UserError
from libvirt_drs.lab import config_out, guest, heartbeat, host, image, prereqs, procs, state
from libvirt_drs.lab.spec import LabSpec
from libvirt_drs.lab.state import LabHost, LabState, LabVm
from libvirt_drs.libvirt_errors import quiet_libvirt

log = logging.getLogger(__name__)
SILENT_S = 15.0  # a running guest whose serial log is older than this is considered dead

# progress(phase, done, total): phases "hosts" (libvirtd answering), "guests" (first heartbeat)
Progress = Callable[[str, int, int], None]


class LabExists(UserError):
    """The lab's name, directory or addresses are taken."""


class Lab:
    """A running lab, backed by its state file (so another process can take it down)."""

    def __init__(self, st: LabState) -> None:
        self.state = st
        self._t0 = time.monotonic()

    # --- lifecycle -----------------------------------------------------------

    @classmethod
    def up(cls, spec: LabSpec, config_out_path: str | Path | None = None,
           progress: Progress | None = None, boot_timeout_s: float = 240.0) -> Lab:
        """Start the hosts and guests of `spec`; on any failure, undo everything."""
        t0 = time.monotonic()
        prereqs.check()
        if state.load(spec.name) is not None:
            raise LabExists(f"lab {spec.name!r} already exists; take it down first: "
                            f"drs lab down --name {spec.name}")
        for address in spec.addresses:
            if host.address_in_use(address):
                raise LabExists(f"{address}:16509 is already in use (another lab?); choose "
                                "another --base-address")
        img = image.ensure()
        lab_dir = state.lab_dir(spec.name)
        lab_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            lab_dir.mkdir()  # atomic: of two sessions starting the same lab, one wins
        except FileExistsError:
            raise LabExists(f"{lab_dir} exists (a lab starting or left over); take it down "
                            f"with drs lab down --name {spec.name}, or remove it") from None
        st = LabState(name=spec.name, dir=str(lab_dir), storage=spec.storage,
                      host_cpu_cores=spec.host_cpu_cores, host_mem_mib=spec.host_mem_mib,
                      kernel=str(img.kernel), initrd=str(img.initrd), created_at=time.time())
        st.hosts = [host.new_host(h, spec.address(h), lab_dir, spec.tls_dir) for h in spec.hosts]
        st.save()
        lab = cls(st)
        lab._t0 = t0
        try:
            lab._start_hosts(progress)
            lab._start_guests(spec, progress, boot_timeout_s)
            if config_out_path:
                st.config_out = str(config_out.write(st, Path(config_out_path)))
        except BaseException:
            log.warning("lab %s: start failed; taking down what was started", spec.name)
            lab.down()
            raise
        st.up_wall_s = round(time.monotonic() - t0, 2)
        st.save()
        return lab

    @classmethod
    def load(cls, name: str) -> Lab:
        st = state.load(name)
        if st is None:
            raise UserError(f"no lab named {name!r} (labs: {', '.join(state.names()) or 'none'})")
        return cls(st)

    @staticmethod
    def down_by_name(name: str) -> None:
        """Take lab `name` down; without a state file, still end the processes holding its
        files open (what a crashed `up` or an old version left behind)."""
        st = state.load(name)
        if st is not None:
            Lab(st).down()
            return
        lab_dir = state.lab_dir(name)
        leftovers = [p for p in procs.pids_holding_files_under(lab_dir) if p != os.getpid()]
        if not leftovers and not lab_dir.exists():
            raise UserError(f"no lab named {name!r} (labs: {', '.join(state.names()) or 'none'})")
        if leftovers:
            log.warning("lab %s has no state; ending pids %s holding its files", name, leftovers)
            procs.terminate(leftovers, timeout_s=3.0)
        shutil.rmtree(lab_dir, ignore_errors=True)

    def down(self) -> None:
        """Stop every process the lab started and remove its directory. Works when some
        libvirtd already died; refuses to delete state while a lab process still runs."""
        host.stop(self.state.hosts)
        left = {h.name: [p for ns in [h.mnt_ns, *h.past_mnt_ns] for p in procs.pids_in_mnt_ns(ns)]
                + host.daemon_pid(h) for h in self.state.hosts}
        left = {k: v for k, v in left.items() if v}
        if left:
            raise UserError(f"lab {self.state.name}: processes still running {left}; "
                            "state kept in " + self.state.dir)
        shutil.rmtree(self.state.dir, ignore_errors=True)
        try:
            state.root_dir().rmdir()  # only if no other lab lives there
        except OSError:
            pass

    def _start_hosts(self, progress: Progress | None) -> None:
        hosts = self.state.hosts
        caps = image.cache_dir() / "qemu-capabilities"
        for h in hosts:
            host.prepare(h, caps)
            host.start(h)
        self.state.save()  # pids recorded before waiting: `down` can clean a failed start
        for i, h in enumerate(hosts):
            host.wait_ready(h)
            if progress:
                progress("hosts", i + 1, len(hosts))
        self.state.save()
        host.save_caps(hosts[0], caps)
        self.state.phase_s["hosts_ready"] = round(time.monotonic() - self._t0, 2)
        if self.state.storage == "per-host":
            for h in hosts:
                with self.connect(h.name) as conn:
                    host.define_pool(conn, host.IMAGES_INSIDE)

    def _start_guests(self, spec: LabSpec, progress: Progress | None,
                      boot_timeout_s: float) -> None:
        lab_dir = Path(self.state.dir)
        (lab_dir / "serial").mkdir()
        (lab_dir / "shared").mkdir()
        for vs in spec.vms:
            vm = LabVm(name=vs.name, host=vs.host, burn_pct=vs.burn_pct, mem_mib=vs.mem_mib,
                         touch_mib=vs.touch_mib, dirty_mib_s=vs.dirty_mib_s, disk_mib=vs.disk_mib,
                         heartbeat_ms=vs.heartbeat_ms,
                         uuid=str(uuid.uuid4()),
                         serial_log=str(lab_dir / "serial" / f"{vs.name}.log"))
            if vs.disk_mib:
                if self.state.storage == "shared":
                    vm.disk_path = str(lab_dir / "shared" / f"{vs.name}.qcow2")
                    guest.create_disk(Path(vm.disk_path), vs.disk_mib)
                else:
                    vm.disk_path = f"{host.IMAGES_INSIDE}/{vs.name}.qcow2"
                    guest.create_disk(self.state.host(vs.host).outside(vm.disk_path), vs.disk_mib)
            vm.xml = guest.domain_xml(vm, self.state.kernel, self.state.initrd)
            self.state.vms.append(vm)
        self.state.save()
        def start(vm: LabVm) -> None:
            with self.connect(vm.host) as conn:
                if vm.disk_path and self.state.storage == "per-host":
                    conn.storagePoolLookupByName(host.POOL_NAME).refresh(0)
                guest.define_and_start(conn, vm)

        # QEMU start-up is mostly waiting (spawn, QMP handshake): start the guests together
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(start, self.state.vms))
        self.state.phase_s["guests_started"] = round(time.monotonic() - self._t0, 2)
        booted = 0

        def on_boot(_vm: LabVm) -> None:
            nonlocal booted
            booted += 1
            if progress:
                progress("guests", booted, len(self.state.vms))

        if progress:
            progress("guests", 0, len(self.state.vms))
        guest.wait_booted(self.state.vms, boot_timeout_s, on_boot)
        self.state.phase_s["guests_booted"] = round(time.monotonic() - self._t0, 2)

    # --- what tests and the CLI use ------------------------------------------

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def hosts(self) -> list[LabHost]:
        return self.state.hosts

    @property
    def vms(self) -> list[LabVm]:
        return self.state.vms

    @property
    def config_path(self) -> str:
        return self.state.config_out

    def uri(self, host_name: str) -> str:
        return self.state.host(host_name).uri

    def serial_log(self, vm_name: str) -> str:
        return self.state.vm(vm_name).serial_log

    def connect(self, host_name: str):  # type: ignore[no-untyped-def]
        """A libvirt connection to a lab host (usable as a context manager)."""
        import libvirt  # noqa: PLC0415

        quiet_libvirt()
        return _Conn(libvirt.open(self.uri(host_name)))

    def where(self) -> dict[str, str]:
        """VM name -> the host it runs on now (VMs running nowhere are absent)."""
        found: dict[str, str] = {}
        for h in self.hosts:
            with self.connect(h.name) as conn:
                for dom in conn.listAllDomains(1):  # VIR_CONNECT_LIST_DOMAINS_ACTIVE
                    found[dom.name()] = h.name
        return found

    def migrate(self, vm_name: str, dst_host: str, copy_storage: bool | None = None,
                bandwidth_mib_s: int = 0) -> None:
        """Live-migrate a guest to `dst_host` (copying its disk in per-host storage mode),
        capped at `bandwidth_mib_s` (0 = uncapped)."""
        vm = self.state.vm(vm_name)
        src = self.where().get(vm_name)
        if src is None:
            raise UserError(f"lab {self.name}: {vm_name} runs nowhere")
        if src == dst_host:
            return
        if copy_storage is None:
            copy_storage = bool(vm.disk_path) and self.state.storage == "per-host"
        with self.connect(src) as conn:
            guest.migrate(conn, self.uri(dst_host), vm_name, copy_storage=copy_storage,
                          bandwidth_mib_s=bandwidth_mib_s)

    def stop_host(self, host_name: str) -> None:
        """Simulate a host failure: SIGKILL its libvirtd. Its guests keep running (as QEMU
        does when libvirtd crashes) and start_host's libvirtd reconnects to them."""
        h = self.state.host(host_name)
        pids = host.daemon_pid(h)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        procs.terminate(pids, timeout_s=10.0)  # waits (and reaps) until it is gone

    def kill_host(self, host_name: str) -> None:
        """A power cut of one host: every process of it (libvirtd, virtlockd, its QEMUs)
        is SIGKILLed at once; `drs lab fence` does this and reports success (exit 0) only
        when none is left."""
        h = self.state.host(host_name)
        left = host.kill(h)
        if left:
            raise UserError(f"lab host {host_name}: pids {left} survived SIGKILL")

    def start_host(self, host_name: str) -> None:
        """(Re)start a host's libvirtd, in a new namespace over the same directories."""
        h = self.state.host(host_name)
        if host.daemon_pid(h):
            return
        if h.mnt_ns:
            h.past_mnt_ns.append(h.mnt_ns)
            h.mnt_ns = ""
        host.start(h)
        self.state.save()
        host.wait_ready(h)
        self.state.save()

    def reset_placement(self, boot_timeout_s: float = 120.0) -> None:
        """Put every guest back on its home host, running; restart guests that died."""
        now = self.where()
        restarted = []
        for vm in self.vms:
            at = now.get(vm.name)
            if at is not None and self.dead(vm):
                # A TCG guest that oopsed (seen after live migrations) stays defined and
                # running but never beats again: start it afresh.
                log.warning("lab %s: %s stopped beating; restarting it", self.name, vm.name)
                with self.connect(at) as conn:
                    conn.lookupByName(vm.name).destroy()
                at = None
            if at == vm.host:
                continue
            if at is not None:
                self.migrate(vm.name, vm.host)
                continue
            self._undefine_everywhere(vm.name)
            with self.connect(vm.host) as conn:
                guest.define_and_start(conn, vm)
            restarted.append(vm)
        if restarted:
            started = time.time()
            pending = list(restarted)
            deadline = time.monotonic() + boot_timeout_s
            while pending and time.monotonic() < deadline:
                pending = [v for v in pending
                           if not heartbeat.since(heartbeat.read(v.serial_log), started)]
                time.sleep(0.2)
            if pending:
                raise UserError(f"lab {self.name}: {', '.join(v.name for v in pending)} "
                                "did not come back")

    def dead(self, vm: LabVm) -> bool:
        """The guest's last words are a kernel oops (it may go on printing soft-lockup
        reports, so the log still grows), or nothing was written for SILENT_S seconds."""
        try:
            silent = time.time() - Path(vm.serial_log).stat().st_mtime > SILENT_S
        except FileNotFoundError:
            return False
        return silent or heartbeat.last_oops(vm.serial_log) is not None

    def _undefine_everywhere(self, vm_name: str) -> None:
        import libvirt  # noqa: PLC0415

        for h in self.hosts:
            with self.connect(h.name) as conn:
                try:
                    conn.lookupByName(vm_name).undefine()
                except libvirt.libvirtError:
                    pass

    def cpu_pct(self, interval_s: float = 10.0) -> dict[str, float]:
        """Each running guest's CPU use in percent of one core over `interval_s`, from the
        cpu.time deltas of one bulk stats call per host at each end."""
        import libvirt  # noqa: PLC0415

        def sample() -> dict[str, tuple[int, float]]:
            out = {}
            for h in self.hosts:
                with self.connect(h.name) as conn:
                    stats = conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_CPU_TOTAL, 0)
                    now = time.monotonic()
                    out.update({d.name(): (s["cpu.time"], now) for d, s in stats})
            return out

        first = sample()
        time.sleep(interval_s)
        second = sample()
        return {vm: round(100.0 * (second[vm][0] - ns) / 1e9 / (second[vm][1] - t), 2)
                for vm, (ns, t) in first.items() if vm in second}

    def status(self) -> dict[str, Any]:
        """A JSON-ready view: each host's process and reachability, each guest's location."""
        import libvirt  # noqa: PLC0415

        hosts = []
        for h in self.hosts:
            entry: dict[str, Any] = {"name": h.name, "address": h.address, "uri": h.uri,
                                     "pid": h.pid, "running": bool(host.daemon_pid(h)),
                                     "reachable": False, "domains": []}
            if entry["running"]:
                try:
                    with self.connect(h.name) as conn:
                        entry["reachable"] = True
                        entry["domains"] = sorted(
                            d.name() for d in conn.listAllDomains(1))
                except libvirt.libvirtError as exc:
                    entry["error"] = str(exc)
            hosts.append(entry)
        on = {d: h["name"] for h in hosts for d in h["domains"]}
        vms = []
        for vm in self.vms:
            beat = heartbeat.last(vm.serial_log)
            vms.append({"name": vm.name, "home": vm.host, "host": on.get(vm.name),
                        "burn_pct": vm.burn_pct, "mem_mib": vm.mem_mib,
                        "touch_mib": vm.touch_mib, "disk_mib": vm.disk_mib,
                        "heartbeat": beat.counter if beat else None,
                        "heartbeat_age_s": round(time.time() - beat.timestamp, 1) if beat else None,
                        "serial_log": vm.serial_log})
        return {"name": self.name, "dir": self.state.dir, "storage": self.state.storage,
                "config": self.state.config_out or None, "up_wall_s": self.state.up_wall_s,
                "up_phases_s": self.state.phase_s,
                "hosts": hosts, "vms": vms}


class _Conn:
    """A libvirt connection closed at the end of a `with` block."""

    def __init__(self, conn) -> None:  # type: ignore[no-untyped-def]
        self.conn = conn

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)
