"""An in-memory cluster behind the migrator's Hypervisor Protocol, and an in-memory JobStore."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from libvirt_drs.migrator.admission import Decision, Limits, choose
from libvirt_drs.migrator.hypervisor import (
    CpuCompare,
    CpuModel,
    Disk,
    DomainInfo,
    DomainRunState,
    HostFacts,
    HypervisorError,
    Nic,
)
from libvirt_drs.migrator.model import CompletedStats, Job, JobState, MigrationOptions, MoveRequest, Progress

MIB = 1024 * 1024


@dataclass
class Behaviour:
    """How the fake migration of one VM goes."""

    duration_s: float = 0.05
    fail: str | None = None  # libvirt error raised at the end
    stall: bool = False  # bytes stop moving; only abort ends it
    hang: bool = False  # progresses forever; only abort ends it
    downtime_ms: float = 42.0


@dataclass
class FakeHost:
    free_mem_mib: int = 4096
    networks: frozenset[str] = frozenset({"default"})
    bridges: frozenset[str] | None = frozenset({"br0"})
    paths: set[str] = field(default_factory=set)
    cpu: CpuCompare = CpuCompare.COMPATIBLE
    reachable: bool = True
    domains: dict[str, DomainInfo] = field(default_factory=dict)


class FakeHypervisor:
    def __init__(self, hosts: Sequence[str]) -> None:
        self.hosts = {h: FakeHost() for h in hosts}
        self.behaviour: dict[str, Behaviour] = {}
        self.lock = threading.Lock()
        self.active: dict[str, tuple[str, str, float, threading.Event]] = {}
        self.outgoing: Counter[str] = Counter()
        self.incoming: Counter[str] = Counter()
        self.max_outgoing: Counter[str] = Counter()
        self.max_incoming: Counter[str] = Counter()
        self.max_total = 0
        self.migrations: list[tuple[str, str, str, MigrationOptions]] = []
        self.aborted: list[str] = []
        self.postcopy: list[str] = []
        self.completed: dict[str, CompletedStats] = {}

    def add_vm(self, host: str, name: str, mem_mib: int = 256, disks: Sequence[Disk] = (),
               nics: Sequence[Nic] = (), state: DomainRunState = DomainRunState.RUNNING,
               cpu_xml: str | None = "<cpu><model>qemu64</model></cpu>") -> None:
        self.hosts[host].domains[name] = DomainInfo(
            name=name, uuid=f"uuid-{name}", state=state, persistent=True, mem_mib=mem_mib,
            disks=tuple(disks), nics=tuple(nics), cpu=CpuModel(xml=cpu_xml))
        for d in disks:
            self.hosts[host].paths.add(d.path)

    def _host(self, host: str) -> FakeHost:
        h = self.hosts.get(host)
        if h is None or not h.reachable:
            raise HypervisorError(f"{host}: cannot connect: Connection refused")
        return h

    def where(self, name: str) -> list[str]:
        return [h for h, fh in self.hosts.items() if name in fh.domains]

    # -- HA (libvirt_drs.ha.HaHypervisor) ------------------------------------------------
    def domain_xml(self, host: str, vm_name: str) -> str | None:
        dom = self._host(host).domains.get(vm_name)
        return None if dom is None else f"<domain><name>{vm_name}</name><memory unit='MiB'>" \
            f"{dom.mem_mib}</memory></domain>"

    def define_and_start(self, host: str, xml: str) -> None:
        import re  # noqa: PLC0415

        name = re.search(r"<name>([^<]+)</name>", xml)
        mem = re.search(r"<memory unit='MiB'>(\d+)</memory>", xml)
        assert name is not None and mem is not None
        running = [fh.domains.get(name.group(1)) for fh in self.hosts.values()]
        if any(d is not None and d.state is DomainRunState.RUNNING for d in running):
            raise HypervisorError(f"{host}: resource busy: the disks of {name.group(1)} are "
                                  "locked by another host (lock manager)")
        self._host(host)
        self.add_vm(host, name.group(1), mem_mib=int(mem.group(1)))

    # -- Protocol ---------------------------------------------------------------------
    def domain(self, host: str, vm_name: str) -> DomainInfo | None:
        with self.lock:
            dom = self._host(host).domains.get(vm_name)
            if dom is not None and vm_name in self.active and self.active[vm_name][0] == host:
                return replace(dom, job_active=True)
            return dom

    def host_facts(self, host: str) -> HostFacts:
        h = self._host(host)
        return HostFacts(h.free_mem_mib, h.networks, h.bridges)

    def compare_cpu(self, host: str, cpu: CpuModel) -> CpuCompare:
        if cpu.xml is None:
            return CpuCompare.UNKNOWN
        return self._host(host).cpu

    def missing_paths(self, host: str, paths: tuple[str, ...]) -> tuple[str, ...]:
        h = self._host(host)
        return tuple(p for p in paths if p not in h.paths)

    def prepare_storage(self, host: str, disks: tuple[Disk, ...]) -> None:
        self._host(host)

    def migrate(self, source: str, destination: str, vm_name: str,
                options: MigrationOptions) -> None:
        b = self.behaviour.get(vm_name, Behaviour())
        abort = threading.Event()
        with self.lock:
            self._host(source)
            self._host(destination)
            self.migrations.append((vm_name, source, destination, options))
            self.active[vm_name] = (source, destination, time.monotonic(), abort)
            self.outgoing[source] += 1
            self.incoming[destination] += 1
            self.max_outgoing[source] = max(self.max_outgoing[source], self.outgoing[source])
            self.max_incoming[destination] = max(self.max_incoming[destination],
                                                 self.incoming[destination])
            self.max_total = max(self.max_total, sum(self.outgoing.values()))
        try:
            finished = abort.wait(b.duration_s) if not (b.stall or b.hang) else abort.wait(30)
            if finished or b.stall or b.hang:
                raise HypervisorError("operation aborted: migration out job: canceled by client")
            if b.fail:
                raise HypervisorError(b.fail)
            with self.lock:
                dom = self.hosts[source].domains.pop(vm_name)
                self.hosts[destination].domains[vm_name] = dom
                if options.copy_storage:
                    self.hosts[destination].paths.update(d.path for d in dom.disks)
                self.completed[vm_name] = CompletedStats(b.duration_s * 1000, b.downtime_ms,
                                                         256 * MIB)
        finally:
            with self.lock:
                self.active.pop(vm_name, None)
                self.outgoing[source] -= 1
                self.incoming[destination] -= 1

    def job_progress(self, host: str, vm_name: str) -> Progress | None:
        with self.lock:
            entry = self.active.get(vm_name)
        if entry is None or entry[0] != host:
            return None
        b = self.behaviour.get(vm_name, Behaviour())
        elapsed = time.monotonic() - entry[2]
        if b.stall:
            done = 10 * MIB
        elif b.hang:
            done = int(elapsed * 100 * MIB)
        else:
            done = int(min(1.0, elapsed / b.duration_s) * 256 * MIB)
        return Progress(done, max(0, 256 * MIB - done), 256 * MIB, 1e6, 1 + int(elapsed * 10),
                        elapsed * 1000)

    def completed_stats(self, host: str, vm_name: str) -> CompletedStats:
        return self.completed.get(vm_name, CompletedStats())

    def abort_job(self, host: str, vm_name: str) -> None:
        with self.lock:
            entry = self.active.get(vm_name)
        if entry is None:
            raise HypervisorError("Requested operation is not valid: no job is active")
        self.aborted.append(vm_name)
        entry[3].set()

    def start_postcopy(self, host: str, vm_name: str) -> None:
        self.postcopy.append(vm_name)

    def remove_leftover(self, host: str, vm_name: str) -> bool:
        with self.lock:
            dom = self._host(host).domains.get(vm_name)
            if dom is None or dom.state is DomainRunState.RUNNING:
                return False
            del self.hosts[host].domains[vm_name]
            return True


class MemoryJobStore:
    """The JobStore Protocol in memory (one lock = the exclusive transaction)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[int, Job] = {}
        self.ids = itertools.count(1)
        self.maintenance: set[str] = set()
        self.events: list[tuple[str, str, str, str]] = []
        self.progress: list[tuple[int, Progress]] = []

    def enqueue(self, moves: Sequence[MoveRequest], owner: str) -> list[Job]:
        with self.lock:
            jobs = [Job(id=next(self.ids), vm_name=m.vm_name, source=m.source,
                        destination=m.destination, state=JobState.QUEUED,
                        copy_storage=m.copy_storage, owner=owner, queued_s=time.time(),
                        updated_s=time.time()) for m in moves]
            self.rows.update({j.id: j for j in jobs})
            return jobs

    def admit(self, limits: Limits, owner: str, candidates: Collection[int] | None) -> Decision:
        with self.lock:
            rows = sorted(self.rows.values(), key=lambda j: j.id)
            d = choose([j for j in rows if j.state is JobState.QUEUED],
                       [j for j in rows if j.state is JobState.RUNNING], limits, candidates)
            if d.admitted is None:
                return d
            job = replace(d.admitted, state=JobState.RUNNING, owner=owner, started_s=time.time())
            self.rows[job.id] = job
            return Decision(job, d.blocked)

    def get(self, job_id: int) -> Job:
        return self.rows[job_id]

    def jobs(self, states: Collection[JobState] | None = None,
             limit: int | None = None) -> list[Job]:
        rows = sorted(self.rows.values(), key=lambda j: j.id)
        return [j for j in rows if states is None or j.state in states]

    def record_progress(self, job_id: int, progress: Progress) -> None:
        self.progress.append((job_id, progress))
        with self.lock:
            self.rows[job_id] = replace(self.rows[job_id], bytes_processed=progress.bytes_processed,
                                        iteration=progress.iteration, updated_s=time.time())

    def adopt(self, job_id: int, owner: str) -> None:
        with self.lock:
            self.rows[job_id] = replace(self.rows[job_id], owner=owner)

    def finish(self, job_id: int, state: JobState, error: str | None,
               stats: CompletedStats) -> Job:
        with self.lock:
            job = replace(self.rows[job_id], state=state, error=error, finished_s=time.time(),
                          downtime_ms=stats.downtime_ms, total_ms=stats.total_ms)
            self.rows[job_id] = job
            return job

    def in_maintenance(self, host: str) -> bool:
        return host in self.maintenance

    def set_host_state(self, host: str, state: str, reason: str | None) -> None:
        if state == "maintenance":
            self.maintenance.add(host)
        else:
            self.maintenance.discard(host)

    def audit(self, actor: str, action: str, subject: str, detail: str = "") -> None:
        self.events.append((actor, action, subject, detail))
