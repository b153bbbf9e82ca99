"""The HA job of the leading `drs serve`, every collector interval: keep the definitions of
the protected VMs, suspect and fence hosts that stopped answering, restart the protected
VMs of fenced hosts elsewhere (highest priority first), and say what waits and why."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, select

from libvirt_drs.config import Config
from libvirt_drs.db import ha as store
from libvirt_drs.db.jobs import SqlJobStore
from libvirt_drs.db.models import Host, Vm
from libvirt_drs.db.snapshot import load_snapshot
from libvirt_drs.ha import decide
from libvirt_drs.ha.fence import Fencer
from libvirt_drs.migrator.hypervisor import DomainRunState, Hypervisor, HypervisorError

log = logging.getLogger(__name__)
T = TypeVar("T")
ACTOR = "drs-serve"
OUT_OF_SERVICE = ("suspected", "fenced", "fence_failed")  # never a restart destination


class HaMetrics(Protocol):
    def record_ha(self, host_states: dict[str, str], waiting: int, protected: int) -> None: ...

    def count_fence(self, host: str, ok: bool) -> None: ...

    def count_restart(self, result: str) -> None: ...


@dataclass(frozen=True)
class HaRound:
    failed: tuple[str, ...]
    fenced: tuple[str, ...]
    restarted: tuple[str, ...]
    waiting: tuple[str, ...]


_MEMORY = re.compile(r"<memory unit=['\"](\w+)['\"]>(\d+)</memory>")
_UNIT_MIB = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "k": 1 / 1024, "M": 1, "G": 1024}


class HaJob:
    def __init__(self, cfg: Config, engine: Engine, hv: Hypervisor, fencer: Fencer,
                 metrics: HaMetrics, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.engine, self.hv, self.fencer = cfg, engine, hv, fencer
        self.metrics, self.clock = metrics, clock
        self.jobs = SqlJobStore(engine, clock=clock)  # host maintenance state, audit
        self.protected = {vm: g for g in cfg.ha.groups for vm in g.vms}
        # libvirt calls to all hosts at once, so one that hangs delays nobody
        self._pool = ThreadPoolExecutor(max_workers=max(4, 2 * len(cfg.hosts)),
                                        thread_name_prefix="drs-ha")
        self._inflight: dict[str, Future[Any]] = {}

    def __call__(self) -> HaRound:
        now = self.clock()
        seen = self._last_seen()
        states = store.hosts(self.engine)
        grace_s = self.cfg.ha.failure_intervals * self.cfg.collector.interval_s
        failed = decide.failed([decide.HostSeen(h, seen.get(h)) for h in seen], now, grace_s)
        answering = [h for h in seen if h not in failed and seen[h] is not None]
        self._save_definitions(answering, now)
        for host in answering:  # nothing was restarted from a host that was not fenced
            if states.get(host) is not None and states[host].state in ("suspected",
                                                                       "fence_failed"):
                store.clear_host(self.engine, host, now, ACTOR, "answers again; not fenced, "
                                 "nothing of it was restarted")
                log.warning("ha: %s answers again: no longer suspected", host)
        fenced_now = [h for h in failed if self._handle_failed(h, states.get(h), now)]
        restarted, waiting = self._restart(now)
        publish(self.cfg, self.engine, self.metrics)
        return HaRound(tuple(failed), tuple(fenced_now), tuple(restarted), tuple(waiting))

    # --- hosts ---------------------------------------------------------------

    def _last_seen(self) -> dict[str, float | None]:
        names = {h.name for h in self.cfg.hosts}
        with self.engine.connect() as conn:
            rows = dict(conn.execute(select(Host.name, Host.last_seen_s)).all())
        return {n: rows.get(n) for n in sorted(names)}

    def _handle_failed(self, host: str, state: store.HaHostRecord | None, now: float) -> bool:
        """Suspect and fence `host`; True when it was fenced in this round."""
        if state is not None and state.state == "fenced":
            return False  # done: its VMs are being restarted, it waits for an operator
        if state is None:
            store.set_host(self.engine, host, "suspected", "stopped answering", now, ACTOR)
            log.warning("ha: %s stopped answering for more than %d collector intervals: "
                        "fencing it", host, self.cfg.ha.failure_intervals)
        result = self.fencer.fence(host)
        self.metrics.count_fence(host, result.ok)
        if not result.ok:
            store.set_host(self.engine, host, "fence_failed", result.detail, now, ACTOR,
                           fence_attempt=True)
            log.error("ha: fencing %s FAILED (%s): its VMs are NOT restarted elsewhere; "
                      "power it off by hand, then confirm with `drs ha fenced %s`", host,
                      result.detail, host)
            return False
        vms = record_fenced(self.cfg, self.engine, host, result.detail, now, ACTOR,
                            fence_attempt=True)
        log.warning("ha: %s fenced (%s); restarting %d protected VM(s): %s", host,
                    result.detail, len(vms), ", ".join(vms) or "none")
        return True

    # --- definitions ---------------------------------------------------------

    def _ask(self, hosts: list[str], fn: Callable[[str], T]) -> dict[str, T]:
        """`fn(host)` on every host at once; the hosts that did not answer within the
        collector's timeout (a partitioned host hangs a TCP connect) are left out."""
        if not hosts:
            return {}
        # a host whose earlier call still hangs gets no second one (the pool stays free)
        futures = {h: self._pool.submit(fn, h) for h in hosts
                   if h not in self._inflight or self._inflight[h].done()}
        self._inflight.update(futures)
        done, _late = wait(futures.values(), timeout=self.cfg.collector.timeout_s)
        out: dict[str, T] = {}
        for h, f in futures.items():
            if f in done and f.exception() is None:
                out[h] = f.result()
        return out

    def _running(self, host: str) -> dict[str, str | None]:
        """Protected VM -> its XML, for those running on `host`."""
        found: dict[str, str | None] = {}
        for vm in self.protected:
            try:
                dom = self.hv.domain(host, vm)
                if dom is not None and dom.state is DomainRunState.RUNNING:
                    found[vm] = self.hv.domain_xml(host, vm)
            except HypervisorError as exc:
                log.debug("ha: cannot read %s on %s: %s", vm, host, exc)
        return found

    def _save_definitions(self, answering: list[str], now: float) -> None:
        """The latest XML of every protected VM running on an answering host."""
        if not self.protected:
            return
        for host, running in self._ask(answering, self._running).items():
            for vm, xml in running.items():
                if xml is not None:
                    store.save_definition(self.engine, vm, host, xml, now)

    # --- restarts ------------------------------------------------------------


    def _restart(self, now: float) -> tuple[list[str], list[str]]:
        pending = store.restarts(self.engine, states=("waiting",))
        if not pending:
            return [], []
        out_of_service = {h for h, r in store.hosts(self.engine).items()
                          if r.state in OUT_OF_SERVICE}
        allowed = frozenset(h.name for h in self.cfg.hosts
                            if h.ha_target and h.name not in out_of_service)
        snapshot = load_snapshot(self.engine, self.cfg, now)
        demand = {v.name: v for v in snapshot.vms}
        defs = store.definitions(self.engine)
        # where the protected VMs run now, on every host that answers (never start twice)
        runs = {vm: h for h, running in self._ask([h.name for h in self.cfg.hosts],
                                                  self._running).items() for vm in running}
        snapshot = decide.with_running(snapshot, runs, lambda vm: _memory_mib(
            defs[vm][1]) if vm in defs else 0.0)
        candidates, rows = [], {}
        for r in pending:
            where = runs.get(r.vm)
            if where is not None:
                store.update_restart(self.engine, r.id, "running", f"already runs on {where}",
                                     now, ACTOR, where)
                continue
            if r.vm not in defs:
                store.update_restart(self.engine, r.id, "failed", "no saved definition", now,
                                     ACTOR)
                self.metrics.count_restart("failed")
                continue
            group = self.protected.get(r.vm)
            seen = demand.get(r.vm)
            candidates.append(decide.Candidate(
                r.vm, r.priority, group.order if group else 0,
                seen.cpu_cores if seen else 0.0,
                seen.mem_mib if seen else _memory_mib(defs[r.vm][1]),
                seen.vcpus if seen else 1))
            rows[r.vm] = r
        restarted, waiting = [], []
        for p in decide.place_restarts(snapshot, self.cfg.balancer.policy, candidates, allowed):
            r = rows[p.vm]
            if p.host is None:
                store.update_restart(self.engine, r.id, "waiting", p.reason, now, ACTOR)
                waiting.append(p.vm)
                continue
            try:
                self.hv.define_and_start(p.host, defs[p.vm][1])
            except HypervisorError as exc:
                store.update_restart(self.engine, r.id, "failed", f"start on {p.host}: {exc}",
                                     now, ACTOR, p.host)
                self.metrics.count_restart("failed")
                log.error("ha: restarting %s on %s failed: %s", p.vm, p.host, exc)
                continue
            store.update_restart(self.engine, r.id, "running",
                                 f"restarted on {p.host} ({p.reason})", now, ACTOR, p.host)
            self.metrics.count_restart("running")
            restarted.append(p.vm)
            log.warning("ha: %s restarted on %s (%s priority, %.1f s after its host was "
                        "fenced)", p.vm, p.host, r.priority, now - r.created_s)
        if waiting:
            log.warning("ha: waiting for capacity: %s", ", ".join(waiting))
        return restarted, waiting


def _memory_mib(xml: str) -> float:
    m = _MEMORY.search(xml)
    if m is None:
        return 0.0
    return int(m.group(2)) * _UNIT_MIB.get(m.group(1), 1 / 1024)


def record_fenced(cfg: Config, engine: Engine, host: str, detail: str, now: float, actor: str,
                  fence_attempt: bool = False) -> list[str]:
    """`host` is off: out of service (in maintenance until `drs ha clear`) and a restart
    queued for every protected VM last seen there; returns those VMs. The HA job calls it
    after a successful fence, `drs ha fenced` when an operator powered the host off."""
    store.set_host(engine, host, "fenced", detail, now, actor, fence_attempt=fence_attempt)
    SqlJobStore(engine, clock=lambda: now).set_host_state(
        host, "maintenance", f"fenced by HA ({detail}); `drs ha clear {host}` when it is repaired")
    with engine.connect() as conn:
        seen = set(conn.execute(select(Vm.name).join(Host, Host.id == Vm.host_id).where(
            Host.name == host, Vm.gone_s.is_(None))).scalars())
    last_there = {vm for vm, (h, _xml, _t) in store.definitions(engine).items() if h == host}
    protected = {vm: g for g in cfg.ha.groups for vm in g.vms}
    vms = sorted(vm for vm in last_there | seen if vm in protected)
    store.add_restarts(engine, host, [(vm, protected[vm].priority) for vm in vms], now)
    return vms


def publish(cfg: Config, engine: Engine, metrics: HaMetrics) -> None:
    """Every host's HA state (ok when nothing happened to it), the restarts waiting and the
    protected VMs, as metrics (the service's observe job and the HA job call it)."""
    states = store.hosts(engine)
    metrics.record_ha({h.name: states[h.name].state if h.name in states else "ok"
                       for h in cfg.hosts},
                      len(store.restarts(engine, states=("waiting",))),
                      sum(len(g.vms) for g in cfg.ha.groups))
