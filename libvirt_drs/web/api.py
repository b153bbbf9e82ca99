"""The REST API, /api/v1: JSON in and out, every route one call of an operation.

Reads need a `viewer` token; actions an `operator`. Long actions answer 202 with the
queued jobs and run in the background; `GET /api/v1/jobs/{id}` shows their progress.
Errors: 401 no or bad token, 403 role or CSRF, 404 unknown name, 409 refused by the
cluster's state with a typed `reason`, 422 invalid input naming the `field`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from libvirt_drs.migrator.model import JobState
from libvirt_drs.operations import hosts, moves, placement, reads, views
from libvirt_drs.operations import replication as dr
from libvirt_drs.operations.caller import Caller
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import NotFound
from libvirt_drs.web.auth import current_caller

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")
Who = Annotated[Caller, Depends(current_caller)]
Name = Annotated[str, Field(min_length=1, max_length=255)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MigrationBody(_Body):
    vm: Name
    destination: Name
    copy_storage: bool = False


class ApplyBody(_Body):
    vm: Name | None = Field(None, description="Apply only this VM's move.")


class EvacuateBody(_Body):
    to_group: Name | None = Field(None, description="Only move into this host group.")


class FailoverBody(_Body):
    mode: Literal["failover", "planned", "test"] = Field(
        "failover", description="failover: from the recovery points (the site is lost); "
        "planned: a final sync of each paused VM, no write lost; test: isolated copies.")
    hosts_off_confirmed: bool = Field(
        False, description="You confirm the primary hosts that do not answer are powered "
        "off (fenced); without it a failover with such hosts is refused (409).")


class PlacementBody(_Body):
    cpu_cores: float = Field(ge=0, le=4096, description="Expected CPU demand in cores.")
    mem_mib: float = Field(gt=0, le=16 * 1024 * 1024, description="Memory in MiB.")
    vcpus: int = Field(1, ge=1, le=4096)
    labels: list[Name] = Field(default_factory=list, description="Host labels it needs.")
    name: Name = "new-vm"


def _cluster(request: Request) -> Cluster:
    cluster: Cluster = request.app.state.cluster
    return cluster


def _in_background(request: Request, what: str, fn: Callable[[], Any]) -> None:
    def run() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - a background failure is logged, the jobs say it
            log.exception("%s failed in the background", what)

    request.app.state.pool.submit(run)


def _accepted(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=202)


@router.get("/whoami", summary="The caller: token name and role")
def whoami(caller: Who) -> dict[str, Any]:
    return {"name": caller.name, "role": str(caller.role)}


@router.get("/status", summary="Hosts with load and capacity, imbalance and target")
def status(request: Request, caller: Who, window_s: float | None = Query(None, gt=0),
           vms: bool = Query(True, description="Include every VM (false: hosts only).")
           ) -> JSONResponse:
    return JSONResponse(views.status(reads.cluster_status(_cluster(request), caller, window_s,
                                                          with_vms=vms)))


@router.get("/hosts/{name}", summary="One host, its VMs, and those that could not leave it")
def host(request: Request, caller: Who, name: str) -> dict[str, Any]:
    cl = _cluster(request)
    cl.host(name)
    st = reads.cluster_status(cl, caller)
    data = views.status(st)
    row = next((h for h in data["hosts"] if h["name"] == name), None)
    if row is None:
        raise NotFound(f"host {name!r} has not been polled yet")
    vms = [v for v in data["vms"] if v["host"] == name]
    left: list[dict[str, str]] = []
    if row["state"] == "maintenance" and vms:
        preview = hosts.plan_maintenance(cl, caller, name, refresh=False)
        left = [{"vm": x.vm, "reason": x.reason} for x in hosts.left_behind(cl, {name}, preview)]
    return {**row, "vm_list": vms, "left": left}


@router.post("/hosts/{name}/maintenance", status_code=202,
             summary="Enter maintenance: mark the host and move its VMs away")
def enter_maintenance(request: Request, caller: Who, name: str) -> JSONResponse:
    cl = _cluster(request)
    evac = hosts.request_maintenance(cl, caller, name)
    _in_background(request, f"maintenance of {name}", lambda: moves.run_jobs(cl, evac.jobs))
    return _accepted(views.evacuation(evac))


@router.delete("/hosts/{name}/maintenance", summary="Leave maintenance: the host takes VMs again")
def exit_maintenance(request: Request, caller: Who, name: str) -> dict[str, Any]:
    hosts.exit_maintenance(_cluster(request), caller, name)
    return {"host": name, "state": "active"}


@router.post("/groups/{group}/evacuate", status_code=202,
             summary="Move every VM away from a host group (its hosts enter maintenance)")
def evacuate(request: Request, caller: Who, group: str, body: EvacuateBody | None = None
             ) -> JSONResponse:
    cl = _cluster(request)
    evac = hosts.request_evacuation(cl, caller, group, body.to_group if body else None)
    _in_background(request, f"evacuation of {group}", lambda: moves.run_jobs(cl, evac.jobs))
    return _accepted(views.evacuation(evac))


SortKey = Literal["name", "host", "cpu_cores", "mem_mib", "vcpus"]


@router.get("/vms", summary="VMs with host, demand, memory and the rules that name them")
def vms(request: Request, caller: Who, search: str = Query("", max_length=255),
        sort: SortKey = "name", order: Literal["asc", "desc"] = "asc",
        limit: int = Query(1000, ge=1, le=20000), offset: int = Query(0, ge=0)) -> JSONResponse:
    cl = _cluster(request)
    needle = search.lower()
    found = [v for v in reads.vm_list(cl, caller)
             if needle in v.name.lower() or needle in (v.host or "").lower()]
    attr = {"name": "name", "host": "host", "cpu_cores": "cpu_cores", "mem_mib": "mem_used_mib",
            "vcpus": "vcpus"}[sort]

    def key(v: Any) -> tuple[bool, Any]:
        value = getattr(v, attr)
        return value is None, value if value is not None else 0  # no data sorts last

    found.sort(key=key, reverse=order == "desc")
    page = found[offset:offset + limit]
    rules = reads.rules_by_vm(cl.cfg.rules)
    # a JSONResponse skips FastAPI's generic encoder: 10,000 VMs in a fraction of the time
    return JSONResponse({"total": len(found), "vms": [views.vm(v, rules.get(v.name, []))
                                                      for v in page]})


@router.get("/vms/{name}", summary="One VM")
def vm(request: Request, caller: Who, name: str) -> dict[str, Any]:
    cl = _cluster(request)
    found = next((v for v in reads.vm_list(cl, caller) if v.name == name), None)
    if found is None:
        raise NotFound(f"no VM named {name!r}")
    return views.vm(found, reads.rules_by_vm(cl.cfg.rules).get(name, []))


@router.get("/vms/{name}/targets",
            summary="Where a VM could move: free CPU and memory and every pre-check per host")
def targets(request: Request, caller: Who, name: str) -> dict[str, Any]:
    source, found = moves.migration_targets(_cluster(request), caller, name)
    return views.targets(name, source, found)


@router.get("/history", summary="Host loads and the imbalance over time")
def history(request: Request, caller: Who, since_s: float | None = Query(None),
            until_s: float | None = Query(None), step_s: float | None = Query(None, gt=0)
            ) -> dict[str, Any]:
    now = time.time()
    until = until_s if until_s is not None else now
    since = since_s if since_s is not None else until - 3600.0
    return views.history(reads.history(_cluster(request), caller, since, until, step_s))


@router.get("/recommendation", summary="What the balancer would do now (a dry run)")
def recommendation(request: Request, caller: Who) -> dict[str, Any]:
    return views.planned(moves.recommend(_cluster(request), caller))


@router.get("/plans", summary="Recorded plans, newest first")
def plans(request: Request, caller: Who, limit: int = Query(20, ge=1, le=500),
          mode: Literal["manual", "automatic"] | None = None) -> list[dict[str, Any]]:
    return [views.plan_record(p) for p in reads.plan_list(_cluster(request), caller, limit, mode)]


@router.post("/plans", status_code=201,
             summary="Record what the balancer recommends now, to review and apply")
def record(request: Request, caller: Who) -> JSONResponse:
    cl = _cluster(request)
    plan_id = moves.record_recommendation(cl, caller)
    return JSONResponse(views.plan_record(reads.plan(cl, caller, plan_id)), status_code=201)


@router.get("/plans/{plan_id}", summary="One recorded plan with its moves and their jobs")
def plan(request: Request, caller: Who, plan_id: int) -> dict[str, Any]:
    return views.plan_record(reads.plan(_cluster(request), caller, plan_id))


@router.post("/plans/{plan_id}/apply", status_code=202,
             summary="Carry out a recorded plan, or one of its moves")
def apply(request: Request, caller: Who, plan_id: int, body: ApplyBody | None = None
          ) -> JSONResponse:
    cl = _cluster(request)
    applied = moves.apply_plan(cl, caller, plan_id, body.vm if body else None,
                               wait_for_slot=True)
    _in_background(request, f"plan {plan_id}", lambda: moves.run_jobs(cl, applied.jobs))
    return _accepted(views.applied(applied))


@router.post("/migrations/check", summary="Every pre-check of a migration; moves nothing")
def check(request: Request, caller: Who, body: MigrationBody) -> dict[str, Any]:
    return views.check(moves.check_migration(_cluster(request), caller, body.vm,
                                             body.destination, body.copy_storage))


@router.post("/migrations", status_code=202,
             summary="Live-migrate a VM (refused with 409 by a failed pre-check or the limits)")
def migrate(request: Request, caller: Who, body: MigrationBody) -> JSONResponse:
    cl = _cluster(request)
    jobs = moves.request_migration(cl, caller, body.vm, body.destination, body.copy_storage,
                                   wait_for_slot=False)
    _in_background(request, f"migration of {body.vm}", lambda: moves.run_jobs(cl, jobs))
    return _accepted(views.job(jobs[0]))


@router.get("/jobs", summary="Migration jobs, newest last, with live progress")
def jobs(request: Request, caller: Who, limit: int = Query(50, ge=1, le=5000),
         state: Annotated[list[JobState] | None, Query()] = None) -> list[dict[str, Any]]:
    rows = reads.jobs(_cluster(request), caller, limit, tuple(state) if state else None)
    return [views.job(j) for j in rows]


@router.get("/jobs/{job_id}", summary="One migration job: percent, MiB/s, remaining, downtime")
def job(request: Request, caller: Who, job_id: int) -> dict[str, Any]:
    return views.job(reads.job(_cluster(request), caller, job_id))


@router.get("/audit", summary="The audit log, oldest first")
def audit(request: Request, caller: Who, limit: int = Query(100, ge=1, le=10000),
          actor: str | None = None, action: str | None = None, subject: str | None = None,
          before_id: int | None = Query(None, ge=1)) -> list[dict[str, Any]]:
    rows = reads.audit_log(_cluster(request), caller, limit, actor=actor, action_prefix=action,
                           subject=subject, before_id=before_id)
    return [views.audit_record(r) for r in rows]


@router.post("/placement", summary="The best host for a new VM of this size and these labels")
def place(request: Request, caller: Who, body: PlacementBody) -> dict[str, Any]:
    return views.placement(placement.best_host(_cluster(request), caller, body.cpu_cores,
                                               body.mem_mib, tuple(body.labels), body.vcpus,
                                               body.name))


@router.get("/replication", summary="Per protected VM: its recovery point's age against the RPO")
def replication_status(request: Request, caller: Who) -> dict[str, Any]:
    return views.replication_status(dr.status(_cluster(request), caller))


@router.post("/sites/{site}/failover",
             summary="Start a site's protected VMs on their recovery site (or test copies)")
def failover(request: Request, caller: Who, site: str, body: FailoverBody | None = None
             ) -> dict[str, Any]:
    body = body or FailoverBody(mode="failover", hosts_off_confirmed=False)
    return views.failover(dr.failover(_cluster(request), caller, site,
                                      hosts_off_confirmed=body.hosts_off_confirmed,
                                      mode=body.mode))


@router.delete("/sites/{site}/failover-tests",
               summary="Stop and remove the test copies a test failover started")
def remove_failover_tests(request: Request, caller: Who, site: str) -> dict[str, Any]:
    return views.test_copies_removed(site, dr.remove_test_copies(_cluster(request), caller, site))


@router.post("/sites/{site}/failback",
             summary="Return a site's VMs from the recovery site, with no write lost")
def failback(request: Request, caller: Who, site: str) -> dict[str, Any]:
    return views.failover(dr.failback(_cluster(request), caller, site))
