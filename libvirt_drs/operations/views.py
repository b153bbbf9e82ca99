"""The JSON shape of every result: `--json` on the CLI and the REST API's bodies are these
dicts, so both say the same thing in the same words. Times are ISO 8601 UTC strings (and
`*_s` epoch seconds where a client computes with them); units are in the key names.
"""

from __future__ import annotations

import math
import time
from typing import Any

from libvirt_drs.balancer import report
from libvirt_drs.balancer.placement import Placement
from libvirt_drs.db.audit import AuditRecord
from libvirt_drs.db.plans import PlanRecord
from libvirt_drs.db.status import VmView
from libvirt_drs.migrator.model import Job, JobState
from libvirt_drs.operations.ha import HaStatus
from libvirt_drs.operations.hosts import Evacuation, Left
from libvirt_drs.operations.moves import Applied, MigrationCheck, Target
from libvirt_drs.operations.planning import Planned
from libvirt_drs.operations.reads import ClusterStatus, History
from libvirt_drs.operations.replication import Failover, Outcome, ReplicaStatus

MIB = 1024 * 1024


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def status(s: ClusterStatus) -> dict[str, Any]:
    waits = s.host_cpu_wait_cores()
    return {
        "hosts": [{"name": h.view.name, "cpu_load": _round(h.view.cpu_load),
                   "mem_load": _round(h.view.mem_load), "has_data": h.has_data,
                   "vms": h.view.vms, "stale": h.view.stale, "state": h.view.state,
                   "eligible": h.view.eligible, "error": h.why_stale,
                   "cpu_cores": h.view.cpu_cores, "mem_mib": h.view.mem_mib,
                   "cpu_cores_used": _round(h.view.cpu_cores_used, 3),
                   "mem_used_mib": _round(h.view.mem_used_mib, 1),
                   "group": h.view.group, "storage_group": h.view.storage_group,
                   "last_seen_at": iso(h.view.last_seen_s),
                   "cpu_wait_cores": _round(waits.get(h.view.name), 3)} for h in s.hosts],
        "vms": [{"name": v.name, "host": v.host, "cpu_cores": _round(v.cpu_cores),
                 "mem_mib": _round(v.mem_used_mib, 1), "uuid": v.uuid, "vcpus": v.vcpus,
                 "mem_max_mib": v.mem_mib, "state": v.state,
                 "last_migrated_at": iso(v.last_migrated_s),
                 "cpu_wait_cores": _round(v.cpu_wait_cores, 3), "cpu_wait": _round(v.cpu_wait),
                 "swap_in_kib_s": _round(v.swap_in_kib_s, 1)} for v in s.vms],
        "cpu_served": _round(s.cpu_served),
        "contention": s.contention,
        "imbalance": _round(s.imbalance),
        "target": _round(s.target),
        "verdict": s.verdict,
        "hosts_without_data": list(s.eligible_without_data),
        "window_s": s.window_s,
        "at": iso(s.now_s),
        "balancing": {"mode": s.mode, "window_open": s.window.open,
                      "window": s.window.window, "next_change_at": iso(s.window.next_change_s),
                      "summary": s.balancing},
    }


def job(j: Job) -> dict[str, Any]:
    rate = None
    if j.state is JobState.RUNNING and j.started_s and j.updated_s and j.bytes_processed:
        elapsed_s = max(j.updated_s - j.started_s, 1e-3)
        rate = j.bytes_processed / MIB / elapsed_s
    percent = None
    if j.state is JobState.SUCCEEDED:
        percent = 100.0
    elif j.bytes_total:
        percent = 100.0 * (j.bytes_total - (j.bytes_remaining or 0)) / j.bytes_total
    return {
        "id": j.id, "vm": j.vm_name, "source": j.source, "destination": j.destination,
        "state": str(j.state), "plan_id": j.plan_id, "copy_storage": j.copy_storage,
        "queued_at": iso(j.queued_s), "started_at": iso(j.started_s),
        "finished_at": iso(j.finished_s), "total_ms": _round(j.total_ms, 1),
        "downtime_ms": _round(j.downtime_ms, 1), "bytes": j.bytes_processed,
        "bytes_remaining": j.bytes_remaining, "bytes_total": j.bytes_total,
        "percent": _round(percent, 1), "mib_per_s": _round(rate, 1),
        "error": j.error,
    }


def plan_record(p: PlanRecord) -> dict[str, Any]:
    return {
        "id": p.id, "created_at": iso(p.created_s), "trigger": p.trigger, "mode": p.mode,
        "imbalance_before": _round(p.imbalance_before, 6),
        "imbalance_after": _round(p.imbalance_after, 6), "target": _round(p.target, 6),
        "plan_ms": _round(p.plan_ms, 1), "notes": list(p.notes),
        "applied_at": iso(p.applied_s), "applied_by": p.applied_by,
        "moves": [{**_move(pm.move), "job_id": pm.job_id,
                   "job_state": str(pm.job_state) if pm.job_state else None,
                   "job_error": pm.job_error} for pm in p.moves],
    }


def _move(m: Any) -> dict[str, Any]:
    return {"vm": m.vm, "source": m.source, "destination": m.destination, "kind": m.kind,
            "reason": m.reason, "imbalance_before": _round(m.imbalance_before, 6),
            "imbalance_after": _round(m.imbalance_after, 6),
            "cost_s": _round(m.cost_s, 2)}


def planned(p: Planned) -> dict[str, Any]:
    """A plan as the planner made it (recommendation, rebalance preview)."""
    return {**report.plan_dict(p.plan), "plan_ms": _round(p.plan_ms, 1)}


def check(c: MigrationCheck) -> dict[str, Any]:
    return {"vm": c.vm, "source": c.source, "destination": c.destination,
            "copy_storage": c.copy_storage, "ok": c.ok,
            "checks": [{"name": r.name, "status": str(r.status), "detail": r.detail,
                        "reason": str(r.reason) if r.reason else None} for r in c.results]}


def evacuation(e: Evacuation, left: list[Left] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "hosts": list(e.hosts), "plan_id": e.plan_id,
        "moves": [_move(m) for m in e.moves],
        "unmovable": report.plan_dict(e.planned.plan)["unmovable"],
        "notes": list(e.planned.plan.notes),
        "jobs": [job(j) for j in e.jobs],
    }
    if left is not None:
        data["left"] = [{"vm": x.vm, "host": x.host, "reason": x.reason} for x in left]
    return data


def applied(a: Applied) -> dict[str, Any]:
    return {"plan_id": a.plan_id, "jobs": [job(j) for j in a.jobs],
            "skipped": [{"vm": vm, "reason": why} for vm, why in a.skipped]}


def audit_record(r: AuditRecord) -> dict[str, Any]:
    return {"id": r.id, "at": iso(r.ts_s), "actor": r.actor, "action": r.action,
            "subject": r.subject, "detail": r.detail}


def vm(v: VmView, rules: list[str]) -> dict[str, Any]:
    return {"name": v.name, "host": v.host, "state": v.state, "uuid": v.uuid, "vcpus": v.vcpus,
            "cpu_cores": _round(v.cpu_cores), "mem_mib": _round(v.mem_used_mib, 1),
            "mem_max_mib": v.mem_mib, "last_migrated_at": iso(v.last_migrated_s),
            "cpu_wait_cores": _round(v.cpu_wait_cores, 3), "cpu_wait": _round(v.cpu_wait),
            "rules": rules}


def history(h: History) -> dict[str, Any]:
    tl = h.timeline
    return {"start_at": iso(tl.start_s), "start_s": tl.start_s, "step_s": tl.step_s,
            "times": [iso(tl.start_s + k * tl.step_s) for k in range(tl.buckets)],
            "hosts": {name: {"cpu_load": [_round(x) for x in tl.cpu[i]],
                             "mem_load": [_round(x) for x in tl.mem[i]]}
                      for i, name in enumerate(tl.hosts)},
            "imbalance": [_round(x) for x in h.imbalance], "target": _round(h.target)}


def targets(vm_name: str, source: str, found: list[Target]) -> dict[str, Any]:
    return {"vm": vm_name, "source": source,
            "targets": [{"host": t.host, "state": t.state,
                         "free_cpu_cores": _round(t.free_cpu_cores, 2),
                         "free_mem_mib": _round(t.free_mem_mib, 0), **check(t.check)}
                        for t in found]}


def placement(p: Placement) -> dict[str, Any]:
    def cand(c: Any) -> dict[str, Any]:
        return {"host": c.host, "imbalance_after": _round(c.imbalance_after),
                "cpu_load_after": _round(c.cpu_load_after), "mem_load_after": _round(c.mem_load_after)}

    return {"host": p.best.host if p.best else None, "imbalance_before": _round(p.imbalance_before),
            "ranked": [cand(c) for c in p.ranked],
            "excluded": [{"host": e.host, "constraint": e.constraint, "detail": e.detail}
                         for e in p.excluded]}


def ha_status(s: HaStatus) -> dict[str, Any]:
    return {
        "enabled": s.enabled,
        "protected": [{"vm": p.vm, "group": p.group, "priority": p.priority, "order": p.order,
                       "host": p.host, "definition_saved_at": iso(p.definition_saved_s)}
                      for p in s.protected],
        "hosts": [{"host": h.host, "state": h.state, "since": iso(h.since_s),
                   "detail": h.detail, "fence_attempts": h.fence_attempts} for h in s.hosts],
        "restarts": [{"id": r.id, "vm": r.vm, "failed_host": r.failed_host,
                      "destination": r.destination, "priority": r.priority, "state": r.state,
                      "detail": r.detail, "created_at": iso(r.created_s),
                      "running_at": iso(r.running_s),
                      "seconds_to_running": None if r.running_s is None
                      else round(r.running_s - r.created_s, 1)} for r in s.restarts],
    }


def replication_status(rows: list[ReplicaStatus]) -> dict[str, Any]:
    return {"vms": [{
        "vm": r.vm, "policy": r.policy, "rpo_s": r.rpo_s,
        "recovery_point_at": iso(r.point.taken_s) if r.point else None,
        "recovery_point_age_s": _round(r.age_s, 1), "within_rpo": r.within_rpo,
        "recovery_host": r.point.recovery_host if r.point else None,
        "point_kind": r.point.kind if r.point else None,
        "point_bytes": r.point.bytes_sent if r.point else None,
        "bytes_sent_total": r.bytes_sent, "chain_length": r.chain_length,
        "failures": r.attempts.failures if r.attempts else 0,
        "last_error": (r.attempts.last_error or None) if r.attempts else None,
        "last_attempt_at": iso(r.attempts.last_attempt_s) if r.attempts else None,
    } for r in rows]}


def replication_outcomes(outcomes: list[Outcome]) -> dict[str, Any]:
    return {"replicated": [{
        "vm": o.vm, "ok": o.point is not None, "error": o.error or None,
        "seconds": round(o.seconds, 2),
        "point": None if o.point is None else {
            "seq": o.point.seq, "kind": o.point.kind, "taken_at": iso(o.point.taken_s),
            "source_host": o.point.source_host, "recovery_host": o.point.recovery_host,
            "bytes": o.point.bytes_sent},
    } for o in outcomes]}


def failover(f: Failover) -> dict[str, Any]:
    return {"site": f.site, "mode": f.mode, "seconds": round(f.seconds, 2),
            "primary_hosts_unreachable": list(f.unreachable),
            "started": [{"vm": s.vm, "name": s.name, "host": s.host,
                         "recovery_point_seq": s.point.seq,
                         "recovery_point_at": iso(s.point.taken_s),
                         "data_loss_window_s": round(s.data_loss_window_s, 1),
                         "seconds_to_running": round(s.seconds_to_running, 2)}
                        for s in f.started],
            "skipped": [{"vm": vm, "why": why} for vm, why in f.skipped],
            "refused": [{"vm": vm, "why": why} for vm, why in f.refused],
            "failed": [{"vm": vm, "error": err} for vm, err in f.failed]}


def test_copies_removed(site: str, removed: list[tuple[str, str]]) -> dict[str, Any]:
    return {"site": site, "removed": [{"name": name, "host": host} for name, host in removed]}
