"""Disaster recovery replication as operations: take recovery points now (`drs replicate
--once`) and read how far behind each protected VM is (`drs replication status`)."""

from __future__ import annotations

from dataclasses import dataclass

from libvirt_drs.db import audit
from libvirt_drs.db import replication as store
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import NotFound
from libvirt_drs.replication import schedule
from libvirt_drs.replication.transfer import Connections, ReplicationError, replicate_vm


@dataclass(frozen=True)
class Outcome:
    vm: str
    point: store.Point | None  # None: this attempt failed
    error: str
    seconds: float


@dataclass(frozen=True)
class ReplicaStatus:
    vm: str
    policy: str
    rpo_s: float
    point: store.Point | None  # the recovery point a failover would use
    age_s: float | None  # now - the point's time: the RPO actually held
    bytes_sent: int
    chain_length: int
    attempts: store.Attempts | None

    @property
    def within_rpo(self) -> bool:
        return self.age_s is not None and self.age_s <= self.rpo_s


def protected(cl: Cluster, vms: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(vm, policy name) of the protected VMs, or of `vms` (each must be protected)."""
    pairs = [(vm, p.name) for p in cl.cfg.replication.policies for vm in p.vms]
    if not vms:
        return pairs
    known = dict(pairs)
    unknown = [vm for vm in vms if vm not in known]
    if unknown:
        raise NotFound(f"not in any protection policy: {', '.join(unknown)} (protected: "
                       f"{', '.join(known) or 'none'})")
    return [(vm, known[vm]) for vm in vms]


def replicate(cl: Cluster, caller: Caller, vms: tuple[str, ...] = ()) -> list[Outcome]:
    """One recovery point for each protected VM (or each of `vms`), one VM after another;
    a VM that fails is recorded and the others go on."""
    require(caller, Role.OPERATOR, "replicate VMs")
    targets = protected(cl, vms)
    conns = Connections(cl.cfg)
    outcomes = []
    try:
        for vm, policy_name in targets:
            policy = next(p for p in cl.cfg.replication.policies if p.name == policy_name)
            start = cl.clock()
            try:
                point = replicate_vm(cl.cfg, cl.engine, conns, policy, vm, cl.clock)
                outcomes.append(Outcome(vm, point, "", cl.clock() - start))
            except ReplicationError as exc:
                store.record_failure(cl.engine, vm, str(exc), cl.clock())
                audit.record(cl.engine, cl.clock(), caller.name, "replication.failed", vm, str(exc))
                outcomes.append(Outcome(vm, None, str(exc), cl.clock() - start))
    finally:
        conns.close()
    return outcomes


def status(cl: Cluster, caller: Caller) -> list[ReplicaStatus]:
    require(caller, Role.VIEWER, "read the replication status")
    now = cl.clock()
    latest = store.latest(cl.engine)
    sent = store.bytes_sent(cl.engine)
    tried = store.attempts(cl.engine)
    out = []
    for p in cl.cfg.replication.policies:
        for vm in p.vms:
            point = latest.get(vm)
            out.append(ReplicaStatus(vm, p.name, p.rpo_s, point,
                                     None if point is None else now - point.taken_s,
                                     sent.get(vm, 0), len(store.chain(cl.engine, vm)),
                                     tried.get(vm)))
    return out


def due(cl: Cluster, caller: Caller) -> list[str]:
    """The protected VMs whose next recovery point is due now (replication/schedule.py)."""
    replicas = []
    for s in status(cl, caller):
        failed = s.attempts.last_error_s if s.attempts and s.attempts.last_error else None
        replicas.append(schedule.Replica(s.vm, s.rpo_s, s.point.taken_s if s.point else None,
                                         failed))
    return schedule.due(replicas, cl.clock())
