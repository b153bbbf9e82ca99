"""Disaster recovery replication as operations: take recovery points now (`drs replicate
--once`) and read how far behind each protected VM is (`drs replication status`)."""

from __future__ import annotations

from dataclasses import dataclass

from libvirt_drs.config import ProtectionPolicy
from libvirt_drs.db import audit
from libvirt_drs.db import replication as store
from libvirt_drs.operations.caller import Caller, Role, require
from libvirt_drs.operations.context import Cluster
from libvirt_drs.operations.errors import Conflict, NotFound
from libvirt_drs.replication import failover as fo
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
    chains = store.chain_lengths(cl.engine)
    out = []
    for p in cl.cfg.replication.policies:
        for vm in p.vms:
            point = latest.get(vm)
            out.append(ReplicaStatus(vm, p.name, p.rpo_s, point,
                                     None if point is None else now - point.taken_s,
                                     sent.get(vm, 0), chains.get(vm, 0),
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


@dataclass(frozen=True)
class Failover:
    site: str
    mode: str  # failover | planned | test | failback
    started: tuple[fo.Started, ...]
    skipped: tuple[tuple[str, str], ...]  # (vm, why): already where it was to start
    refused: tuple[tuple[str, str], ...]  # (vm, why): still running at the primary, no point
    failed: tuple[tuple[str, str], ...]  # (vm, error)
    unreachable: tuple[str, ...]  # primary hosts that did not answer (confirmed off)
    seconds: float


MODES = ("failover", "planned", "test")


def _policies_of_site(cl: Cluster, site: str) -> list[ProtectionPolicy]:
    policies = [p for p in cl.cfg.replication.policies if p.primary == site]
    if not policies:
        sites = sorted({p.primary for p in cl.cfg.replication.policies})
        raise NotFound(f"no protection policy has primary site {site!r} (primary sites: "
                       f"{', '.join(sites) or 'none'})")
    return policies


def failover_preview(cl: Cluster, caller: Caller, site: str) -> fo.PrimaryView:
    """Which primary hosts answer and where the site's protected VMs still run."""
    require(caller, Role.VIEWER, "read the primary site")
    conns = Connections(cl.cfg)
    try:
        return fo.look_at_primary(cl.cfg, conns, _policies_of_site(cl, site))
    finally:
        conns.close()


def failover(cl: Cluster, caller: Caller, site: str, hosts_off_confirmed: bool,
             mode: str = "failover") -> Failover:
    """Start the protected VMs of primary site `site` on the recovery site, in priority
    order, each on the host holding its replica.

    - failover: from each VM's recovery point. Primary hosts that do not answer must be
      confirmed off (fenced) by the caller; a VM still running on a reachable primary host
      is refused, one already running on the recovery site is skipped: nothing runs twice.
    - planned: every primary host must answer; each VM is paused, synchronised one last
      time and moved (no write lost).
    - test: an isolated copy of each (<vm>-drtest, no network) from its recovery point;
      production and replication are not touched (remove them with remove_test_copies).
    """
    if mode not in MODES:
        raise ValueError(mode)
    require(caller, Role.OPERATOR, "fail over a site" if mode != "test" else "test a failover")
    policies = _policies_of_site(cl, site)
    recovery_hosts = {h.name for h in cl.cfg.hosts
                      if h.group in {p.recovery for p in policies}}
    start_s = cl.clock()
    conns = Connections(cl.cfg)
    started, skipped, refused, failed = [], [], [], []
    try:
        view = fo.look_at_primary(cl.cfg, conns, policies)
        if view.unreachable and mode == "planned":
            raise Conflict(f"primary hosts {', '.join(view.unreachable)} do not answer: a "
                           "planned migration needs the whole site (fail over without "
                           "--planned instead)", "site_down")
        if view.unreachable and mode == "failover" and not hosts_off_confirmed:
            raise Conflict(f"primary hosts {', '.join(view.unreachable)} do not answer: confirm "
                           "they are powered off (fenced) before their VMs start elsewhere",
                           "fence_unconfirmed")
        latest = store.latest(cl.engine, on_hosts=recovery_hosts)
        for policy, vm in fo.start_order(policies):
            point = latest.get(vm)
            name = f"{vm}{fo.TEST_SUFFIX}" if mode == "test" else vm
            here = point.recovery_host if point else ""
            try:
                s = None
                if here and fo.running_on(conns, here, name):
                    skipped.append((vm, f"{name} already runs on {here}"))
                elif mode == "planned" and vm not in view.running:
                    refused.append((vm, "does not run at the primary site: nothing to "
                                        "synchronise (fail over without --planned)"))
                elif mode == "planned":
                    s = fo.planned_move(cl.cfg, cl.engine, conns, policy, vm, start_s, cl.clock)
                elif mode == "failover" and vm in view.running:
                    refused.append((vm, f"still runs on {view.running[vm]}, which answers: "
                                        "not started a second time"))
                elif point is None:
                    refused.append((vm, "has no recovery point"))
                else:
                    s = fo.start_from_point(conns, policy, point, start_s, cl.clock,
                                            test=mode == "test")
            except ReplicationError as exc:
                failed.append((vm, str(exc)))
                continue
            if s is not None:
                started.append(s)
                audit.record(cl.engine, cl.clock(), caller.name, f"{mode}.started", s.name,
                             f"on {s.host} from recovery point {s.point.seq} "
                             f"({s.data_loss_window_s:.1f} s of writes lost at most)")
    finally:
        conns.close()
    return Failover(site, mode, tuple(started), tuple(skipped), tuple(refused), tuple(failed),
                    view.unreachable, cl.clock() - start_s)


def failback(cl: Cluster, caller: Caller, site: str) -> Failover:
    """Return the protected VMs of primary site `site` that run on the recovery site (after
    a failover) to it, each as a planned move: paused, its final point taken to the primary
    site (replication runs in reverse after a failover), stopped, started there. Replication
    to the recovery site goes on from the next point (a full one)."""
    require(caller, Role.OPERATOR, "fail back a site")
    policies = _policies_of_site(cl, site)
    primary_hosts = {h.name for h in cl.cfg.hosts if h.group == site}
    start_s = cl.clock()
    conns = Connections(cl.cfg)
    started, skipped, failed = [], [], []
    try:
        view = fo.look_at_primary(cl.cfg, conns, policies)
        if len(view.unreachable) == len(primary_hosts):
            raise Conflict(f"no host of site {site} answers ({', '.join(view.unreachable)}): "
                           "nothing to fail back to", "site_down")
        for policy, vm in fo.start_order(policies):
            if vm in view.running:
                skipped.append((vm, f"already runs on {view.running[vm]}"))
                continue
            try:
                s = fo.planned_move(cl.cfg, cl.engine, conns, policy, vm, start_s, cl.clock)
            except ReplicationError as exc:
                failed.append((vm, str(exc)))
                continue
            started.append(s)
            audit.record(cl.engine, cl.clock(), caller.name, "failback.started", vm,
                         f"on {s.host} from final point {s.point.seq} (no write lost)")
    finally:
        conns.close()
    return Failover(site, "failback", tuple(started), tuple(skipped), (), tuple(failed),
                    view.unreachable, cl.clock() - start_s)


def remove_test_copies(cl: Cluster, caller: Caller, site: str) -> list[tuple[str, str]]:
    """Stop and remove the test copies (<vm>-drtest) of the site's protected VMs."""
    require(caller, Role.OPERATOR, "remove failover test copies")
    policies = _policies_of_site(cl, site)
    conns = Connections(cl.cfg)
    try:
        removed = fo.remove_test_copies(conns, cl.cfg, policies)
    except ReplicationError as exc:
        raise Conflict(str(exc), "cleanup_failed") from None
    finally:
        conns.close()
    for name, host in removed:
        audit.record(cl.engine, cl.clock(), caller.name, "failover.test_removed", name,
                     f"on {host}")
    return removed
