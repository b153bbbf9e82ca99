"""The planner as operations use it: plan the cluster as it is now (balancing, or the
mandatory moves that empty hosts), record a plan, and turn moves into migration requests.

The balancer decides where each VM goes (its rules and capacity checks); the migrator
moves them under the shared limits.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from libvirt_drs.balancer.model import ClusterSnapshot, Move, Plan, Policy
from libvirt_drs.balancer.planner import plan as plan_moves
from libvirt_drs.config import Config
from libvirt_drs.db.plans import record_plan
from libvirt_drs.db.snapshot import load_snapshot
from libvirt_drs.migrator.model import MoveRequest
from libvirt_drs.migrator_builder import needs_copy_storage
from libvirt_drs.operations.context import Cluster
from libvirt_drs.windows import WindowState, window_state, zone


@dataclass(frozen=True)
class Planned:
    """A plan with the snapshot it was made from and how long planning took."""

    plan: Plan
    snapshot: ClusterSnapshot
    plan_ms: float


def make_plan(snapshot: ClusterSnapshot, policy: Policy) -> Planned:
    t0 = time.perf_counter()
    result = plan_moves(snapshot, policy)
    return Planned(result, snapshot, (time.perf_counter() - t0) * 1000.0)


def balance_plan(cl: Cluster) -> Planned:
    """What the balancer would do now (rules, capacity, cooldown, limits)."""
    return make_plan(load_snapshot(cl.engine, cl.cfg, cl.clock()), cl.cfg.balancer.policy)


def evacuation_snapshot(snapshot: ClusterSnapshot, leaving: Collection[str],
                        destinations: Collection[str] | None) -> ClusterSnapshot:
    """Hosts in `leaving` are evacuated; hosts outside `destinations` neither give nor take."""
    hosts = []
    for h in snapshot.hosts:
        if h.name in leaving:
            h = replace(h, state="maintenance")
        elif destinations is not None and h.name not in destinations:
            h = replace(h, stale=True)
        hosts.append(h)
    return replace(snapshot, hosts=tuple(hosts))


def evacuation_plan(cl: Cluster, leaving: Collection[str], destinations: Collection[str] | None,
                    copy_storage: bool) -> tuple[Planned, list[Move]]:
    """Mandatory moves only (no balancing); the plan and its moves off `leaving`."""
    snapshot = evacuation_snapshot(load_snapshot(cl.engine, cl.cfg, cl.clock()), leaving,
                                   destinations)
    policy = replace(cl.cfg.balancer.policy, max_moves_per_pass=0,
                     copy_storage=copy_storage or cl.cfg.migrator.copy_storage)
    planned = make_plan(snapshot, policy)
    return planned, [mv for mv in planned.plan.moves if mv.source in leaving]


def record(cl: Cluster, planned: Planned, *, mode: str, trigger: str, actor: str) -> int:
    return record_plan(cl.engine, planned.plan, mode=mode, plan_ms=planned.plan_ms,
                       now_s=cl.clock(), trigger=trigger, actor=actor)


def move_requests(cfg: Config, moves: Iterable[Move], plan_id: int | None,
                  force_copy: bool = False) -> list[MoveRequest]:
    """The migration requests for planned moves (copy storage where the hosts do not share
    it); the one place a move becomes a MoveRequest."""
    return [MoveRequest(mv.vm, mv.source, mv.destination, plan_id=plan_id,
                        copy_storage=needs_copy_storage(cfg, mv.source, mv.destination,
                                                        force_copy))
            for mv in moves]


def balancing_window(cfg: Config, now_s: float) -> WindowState:
    """Whether automatic mode may carry out balancing moves at `now_s` ([balancer] windows)."""
    b = cfg.balancer
    tz = zone(b.timezone)
    assert tz is not None  # validated with the config
    return window_state(b.balancing_windows(), tz, now_s)
