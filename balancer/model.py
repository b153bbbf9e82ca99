"""Frozen value types of the balancer core: cluster state in, plan out.

Nothing here imports libvirt or SQLAlchemy; a ClusterSnapshot is built by the caller
(the store from the database, `drs simulate` from a trace, tests from literals).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

HOST_STATES = ("active", "maintenance")
MoveKind = Literal["mandatory", "balancing"]


@dataclass(frozen=True)
class HostState:
    """One hypervisor. Only `eligible` hosts count in the imbalance and receive VMs."""

    name: str
    cpu_cores: float
    mem_mib: float
    state: str = "active"  # active | maintenance (entering maintenance: evacuate)
    stale: bool = False  # no fresh samples: neither source nor destination
    group: str = "default"
    storage_group: str = "default"
    cpu_model: str = ""
    # CPU features this host offers; a VM may run here only if it needs a subset of them.
    cpu_features: frozenset[str] = frozenset()
    max_outgoing: int | None = None  # per-pass override of Policy.max_moves_per_host
    max_incoming: int | None = None

    @property
    def eligible(self) -> bool:
        return self.state == "active" and not self.stale


@dataclass(frozen=True)
class VmState:
    """One running VM with its estimated (smoothed) demand, see balancer.demand."""

    name: str
    host: str
    cpu_cores: float  # estimated CPU demand in cores (not the vCPU count)
    mem_mib: float  # allocated memory: what must fit on the destination
    cpu_spread_cores: float = 0.0  # std of recent CPU demand: overload risk (demand.spread)
    vcpus: int = 1
    mem_demand_mib: float | None = None  # active memory for balancing; None = mem_mib
    dirty_mib_s: float = 0.0  # observed page dirty rate, drives the migration cost
    last_migrated_s: float | None = None  # clock of the last completed migration
    last_source: str | None = None  # host it left then (anti ping-pong)
    # CPU features the guest CPU needs; None = whatever its current host offers.
    cpu_features: frozenset[str] | None = None
    storage_group: str | None = None  # where its disks live; None = its host's group


@dataclass(frozen=True)
class GroupRule:
    """Affinity (keep together) or anti-affinity (keep apart) between VMs."""

    name: str
    vms: tuple[str, ...]


@dataclass(frozen=True)
class VmHostRule:
    name: str
    kind: str  # must | must_not | should | should_not
    vms: tuple[str, ...]
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Rules:
    affinity: tuple[GroupRule, ...] = ()
    anti_affinity: tuple[GroupRule, ...] = ()
    vm_host: tuple[VmHostRule, ...] = ()
    pinned: tuple[str, ...] = ()  # never moved, not even for maintenance
    excluded: tuple[str, ...] = ()  # ignored by the balancer: never moved, load still counts


@dataclass(frozen=True)
class ClusterSnapshot:
    hosts: tuple[HostState, ...]
    vms: tuple[VmState, ...]
    rules: Rules = field(default_factory=Rules)
    now_s: float = 0.0  # clock of the snapshot, compared with VmState.last_migrated_s


@dataclass(frozen=True)
class Policy:
    """Every knob of the planner; see docs/balancer.md. Built by policy_from_config()."""

    aggressiveness: int = 3  # 1 = mandatory moves only .. 5 = chase the smallest imbalance
    cpu_weight: float = 1.0
    mem_weight: float = 1.0
    cpu_overcommit_ratio: float = 4.0  # vCPUs per host core on the destination
    mem_reserve_mib: float = 0.0  # kept free on every destination
    max_moves_per_pass: int = 16  # balancing moves per pass; 0 = mandatory moves only
    max_moves_per_host: int = 2  # as source and as destination, per pass
    cooldown_s: float = 3600.0  # a migrated VM is not balanced again (nor sent back) within it
    copy_storage: bool = False  # allow moves across storage groups (copies the disks)
    bandwidth_mib_s: float = 0.0  # migration bandwidth for the cost estimate; 0 = assume 1 GiB/s
    # Cost-benefit: a balancing move must cut the sum of squared host-load deviations by at
    # least min_gain plus cost_weight per second of estimated migration time.
    min_gain: float = 0.002
    cost_weight: float = 0.002
    # Overload risk: a host's CPU load plus risk_z times the spread of its VMs' demand above
    # hot_load counts, squared and times risk_weight, next to the imbalance.
    hot_load: float = 0.9
    risk_z: float = 1.0
    risk_weight: float = 0.0
    soft_rule_penalty: float = 0.05  # in imbalance units, per violated should / should-not rule
    source_hosts_per_step: int = 8  # most loaded hosts searched for candidates per step
    candidates_per_step: int = 256  # VMs of those hosts evaluated against every host


@dataclass(frozen=True)
class Move:
    vm: str
    source: str
    destination: str
    kind: MoveKind
    reason: str
    imbalance_before: float
    imbalance_after: float
    cost_s: float  # estimated migration time


@dataclass(frozen=True)
class Unmovable:
    vm: str
    rule: str
    reason: str


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]
    imbalance_before: float
    imbalance_after: float
    target: float
    notes: tuple[str, ...] = ()  # warnings: unknown names in rules, skipped rules
    unmovable: tuple[Unmovable, ...] = ()  # unsatisfiable rules, VM by VM
