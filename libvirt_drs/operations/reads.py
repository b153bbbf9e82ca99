"""Read models: the cluster, its VMs, jobs, plans and the audit log, as `drs status`,
`drs jobs`, `drs plans`, `drs audit`, the API and the console show them.

Every figure comes from the database edge (libvirt_drs.db) and the balancer's own
functions (one imbalance, one eligibility rule); nothing here computes balance itself.
A host without samples has no load (None, "no data"), never 0 %.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from libvirt_drs.balancer.contention import host_wait_cores, served_ratio
from libvirt_drs.balancer.model import Rules
from libvirt_drs.balancer.scoring import load_imbalance
from libvirt_drs.db import audit, plans
from libvirt_drs.db.jobs import SqlJobStore
from libvirt_drs.db.snapshot import stale_after_s
from libvirt_drs.db.status import HostView, VmView, cluster_imbalance, load_hosts, load_vms
from libvirt_drs.db.status import target_imbalance as status_target
from libvirt_drs.db.timeline import Timeline, load_timeline
from libvirt_drs.migrator.model import Job, JobState
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Invalid, NotFound
from libvirt_drs.operations.planning import balancing_window
from libvirt_drs.windows import WindowState


@dataclass(frozen=True)
class HostStatus:
    view: HostView
    why_stale: str | None  # the collector's error or how long since the last good poll

    @property
    def has_data(self) -> bool:
        return self.view.cpu_load is not None and self.view.mem_load is not None


@dataclass(frozen=True)
class ClusterStatus:
    now_s: float
    window_s: float
    hosts: tuple[HostStatus, ...]
    vms: tuple[VmView, ...]
    imbalance: float | None  # over the eligible hosts with data; None: none has data
    target: float | None  # None: aggressiveness 1 or no eligible host
    aggressiveness: int
    mode: str  # automatic | manual
    window: WindowState  # balancing windows: may automatic mode move VMs now

    @property
    def balancing(self) -> str:
        """One line: the mode and, in automatic mode, whether balancing moves run now."""
        if self.mode != "automatic":
            return "manual mode: plans are recorded as recommendations (drs plans)"
        w = self.window
        if w.next_change_s is None:
            return "automatic mode: balancing moves run (no balancing window configured)"
        at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(w.next_change_s))
        if w.open:
            return f"automatic mode: inside balancing window {w.window!r} until {at}"
        return (f"automatic mode: outside the balancing windows until {at}: balancing moves "
                "are recorded as recommendations, mandatory moves go on")

    @property
    def cpu_served(self) -> float | None:
        """The cluster's CPU served ratio over the VMs that report their wait
        (balancer.contention); None when none does."""
        pairs = [(v.cpu_cores, v.cpu_wait_cores) for v in self.vms
                 if v.cpu_cores is not None and v.cpu_wait_cores is not None]
        return served_ratio(pairs) if pairs else None

    def host_cpu_wait_cores(self) -> dict[str, float]:
        """Host -> cores its VMs waited for a CPU (hosts none of whose VMs report it are
        absent)."""
        return host_wait_cores((v.host, v.cpu_wait_cores) for v in self.vms
                               if v.host is not None and v.cpu_wait_cores is not None)

    @property
    def contention(self) -> str | None:
        """One line on CPU contention, or None when no VM reports its wait."""
        served = self.cpu_served
        if served is None:
            return None
        waiting = [v for v in self.vms if (v.cpu_wait or 0.0) >= 0.005]
        if not waiting:
            return f"contention: none (VMs got {served:.1%} of the CPU they asked for)"
        worst = max(waiting, key=lambda v: v.cpu_wait or 0.0)
        return (f"contention: VMs got {served:.1%} of the CPU they asked for; "
                f"{len(waiting)} VM(s) wait, most {worst.name} on {worst.host or '-'} "
                f"({worst.cpu_wait or 0.0:.1%} of its vCPU time)")

    @property
    def eligible_without_data(self) -> tuple[str, ...]:
        return tuple(h.view.name for h in self.hosts if h.view.eligible and not h.has_data)

    @property
    def verdict(self) -> str:
        """One line: within or above target, and whatever makes that figure incomplete."""
        missing = self.eligible_without_data
        if self.imbalance is None:
            text = "no eligible host with samples: run the collector (drs collect)"
        elif self.target is None:
            text = ("level 1: balancing off" if self.aggressiveness == 1
                    else "no eligible host")
        else:
            text = "above target" if self.imbalance > self.target else "within target"
        if missing and self.imbalance is not None:
            text = (f"unknown, no load data for {', '.join(missing)} (the imbalance counts only "
                    f"the hosts with data; would be {text})")
        stale = [h.view.name for h in self.hosts if h.view.stale]
        if stale:
            text += f"; not counted (stale): {', '.join(stale)}"
        return text


def _window(cl: Cluster, window_s: float | None) -> float:
    c = cl.cfg.collector
    return window_s if window_s is not None else max(3 * c.interval_s, 60.0)


def vm_list(cl: Cluster, caller: Caller, window_s: float | None = None,
            now_s: float | None = None) -> list[VmView]:
    """Every VM with its host and mean demand over the window (the VM list)."""
    require(caller, Role.VIEWER, "list VMs")
    return load_vms(cl.engine, cl.clock() if now_s is None else now_s, _window(cl, window_s))


def cluster_status(cl: Cluster, caller: Caller, window_s: float | None = None,
                   now_s: float | None = None, with_vms: bool = True) -> ClusterStatus:
    """Hosts, imbalance and target, and (unless `with_vms` is False) every VM."""
    require(caller, Role.VIEWER, "read the cluster status")
    cfg = cl.cfg
    now = cl.clock() if now_s is None else now_s
    window = _window(cl, window_s)
    configured = {h.name for h in cfg.hosts}
    views = [h for h in load_hosts(cl.engine, now, window, stale_after_s(cfg))
             if h.name in configured or not configured]
    policy = cfg.balancer.policy
    eligible = [h for h in views if h.eligible]
    return ClusterStatus(
        now_s=now, window_s=window,
        hosts=tuple(HostStatus(h, _why_stale(h, now)) for h in views),
        vms=tuple(load_vms(cl.engine, now, window)) if with_vms else (),
        imbalance=cluster_imbalance(views, policy.cpu_weight, policy.mem_weight),
        target=status_target(policy.aggressiveness, len(eligible)) if eligible else None,
        aggressiveness=policy.aggressiveness, mode=cfg.balancer.mode,
        window=balancing_window(cfg, now))


def _why_stale(h: HostView, now_s: float) -> str | None:
    if h.last_error or not h.stale:
        return h.last_error
    if h.last_seen_s is None:
        return "never polled"
    return f"no successful poll for {now_s - h.last_seen_s:.0f} s (is the collector running?)"


def jobs(cl: Cluster, caller: Caller, limit: int = 50,
         states: tuple[JobState, ...] | None = None) -> list[Job]:
    require(caller, Role.VIEWER, "list migration jobs")
    return SqlJobStore(cl.engine).jobs(states=states, limit=limit)


def job(cl: Cluster, caller: Caller, job_id: int) -> Job:
    require(caller, Role.VIEWER, "read a migration job")
    found = SqlJobStore(cl.engine).find(job_id)
    if found is None:
        raise NotFound(f"no migration job {job_id}")
    return found


def plan_list(cl: Cluster, caller: Caller, limit: int = 20,
              mode: str | None = None) -> list[plans.PlanRecord]:
    require(caller, Role.VIEWER, "list plans")
    return plans.plans(cl.engine, limit, mode=mode)


def plan(cl: Cluster, caller: Caller, plan_id: int) -> plans.PlanRecord:
    require(caller, Role.VIEWER, "read a plan")
    found = plans.plan(cl.engine, plan_id)
    if found is None:
        raise NotFound(f"no plan {plan_id}")
    return found


def audit_log(cl: Cluster, caller: Caller, limit: int = 100, *, actor: str | None = None,
              action_prefix: str | None = None, subject: str | None = None,
              before_id: int | None = None) -> list[audit.AuditRecord]:
    require(caller, Role.VIEWER, "read the audit log")
    return audit.events(cl.engine, limit, actor=actor, action_prefix=action_prefix,
                        subject=subject, before_id=before_id)


@dataclass(frozen=True)
class History:
    timeline: Timeline
    imbalance: tuple[float | None, ...]  # per bucket, over the hosts with data in it
    target: float | None


def history(cl: Cluster, caller: Caller, since_s: float, until_s: float,
            step_s: float | None = None) -> History:
    """Host loads and the imbalance over [since_s, until_s), in at most about 300 buckets."""
    require(caller, Role.VIEWER, "read the history")
    if until_s <= since_s:
        raise Invalid("the history must end after it starts", "until")
    step = step_s or max(cl.cfg.collector.interval_s, (until_s - since_s) / 300.0)
    if (until_s - since_s) / step > 5000:
        raise Invalid(f"step {step:g} s gives more than 5000 buckets", "step_s")
    configured = {h.name for h in cl.cfg.hosts}
    tl = load_timeline(cl.engine, since_s, until_s, step)
    keep = [i for i, h in enumerate(tl.hosts) if h in configured or not configured]
    tl = Timeline(tl.start_s, tl.step_s, tuple(tl.hosts[i] for i in keep),
                  tuple(tl.cpu[i] for i in keep), tuple(tl.mem[i] for i in keep))
    policy = cl.cfg.balancer.policy
    imbalance: list[float | None] = []
    for k in range(tl.buckets):
        pairs = [(c[k], m[k]) for c, m in zip(tl.cpu, tl.mem, strict=True)
                 if c[k] is not None and m[k] is not None]
        if len(pairs) < 1:
            imbalance.append(None)
            continue
        cpu, mem = zip(*pairs, strict=True)
        imbalance.append(float(load_imbalance(cpu, mem, [True] * len(pairs),
                                              policy.cpu_weight, policy.mem_weight)))
    n = len(tl.hosts)
    return History(tl, tuple(imbalance),
                   status_target(policy.aggressiveness, n) if n else None)


def rules_by_vm(rules: Rules) -> dict[str, list[str]]:
    """For every VM a rule names: those rules, as an operator reads them (one pass over
    the rules, so a list of 10,000 VMs costs nothing more)."""
    out: dict[str, list[str]] = {}
    for kind, groups in (("affinity", rules.affinity), ("anti-affinity", rules.anti_affinity)):
        for g in groups:
            for vm in g.vms:
                out.setdefault(vm, []).append(
                    f"{kind} {g.name!r} with {', '.join(v for v in g.vms if v != vm)}")
    for r in rules.vm_host:
        for vm in r.vms:
            out.setdefault(vm, []).append(
                f"{r.kind.replace('_', ' ')} run on {', '.join(r.hosts)} ({r.name!r})")
    for vm in rules.pinned:
        out.setdefault(vm, []).append("pinned: never moved by the balancer")
    for vm in rules.excluded:
        out.setdefault(vm, []).append("excluded: ignored by the balancer")
    return out
