"""Read models: the cluster, its VMs, jobs, plans and the audit log, as `drs status`,
`drs jobs`, `drs plans`, `drs audit`, the API and the console show them.

Every figure comes from the database edge (libvirt_drs.db) and the balancer's own
functions (one imbalance, one eligibility rule); nothing here computes balance itself.
A host without samples has no load (None, "no data"), never 0 %.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from libvirt_drs.db import audit, plans
from libvirt_drs.db.jobs import SqlJobStore
from libvirt_drs.db.snapshot import stale_after_s
from libvirt_drs.db.status import HostView, VmView, cluster_imbalance, load_hosts, load_vms
from libvirt_drs.db.status import target_imbalance as status_target
from libvirt_drs.migrator.model import Job, JobState
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import NotFound
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


def cluster_status(cl: Cluster, caller: Caller, window_s: float | None = None,
                   now_s: float | None = None) -> ClusterStatus:
    require(caller, Role.VIEWER, "read the cluster status")
    cfg = cl.cfg
    now = cl.clock() if now_s is None else now_s
    c = cfg.collector
    window = window_s if window_s is not None else max(3 * c.interval_s, 60.0)
    configured = {h.name for h in cfg.hosts}
    views = [h for h in load_hosts(cl.engine, now, window, stale_after_s(cfg))
             if h.name in configured or not configured]
    policy = cfg.balancer.policy
    eligible = [h for h in views if h.eligible]
    return ClusterStatus(
        now_s=now, window_s=window,
        hosts=tuple(HostStatus(h, _why_stale(h, now)) for h in views),
        vms=tuple(load_vms(cl.engine, now, window)),
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
