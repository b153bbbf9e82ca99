"""Frozen value types of the balancer core: cluster state in, plan out.

Nothing here imports libvirt or SQLAlchemy; a ClusterSnapshot is built by the caller
(the store from the database, `drs simulate` from a trace, tests from literals).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

HOST_STATES = ("active", "maintenance")
MoveKind = Literal["mandatory", "balancing"]


def host_eligible(state: str, stale: bool) -> bool:
    """The one eligibility rule: a host counts in the imbalance and receives VMs only when
    it is active (not in maintenance) and has fresh samples (not stale)."""
    return state == "active" and not stale


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
        return host_eligible(self.state, self.stale)


@dataclass(frozen=True)
class VmState:
    """One running VM with its estimated (smoothed) demand, see balancer.demand."""

    name: str
    host: str
    cpu_cores: float  # estimated CPU demand in cores (not the vCPU count), wait included
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
    # Contention: of cpu_cores, the cores its vCPUs waited for a host CPU (run-queue delay,
    # steal): demand the host did not serve. Moving the VM off a contended host serves it.
    cpu_wait_cores: float = 0.0


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
    """Every knob of the planner; see docs/balancer.md.

    The fields that are settings carry their declaration in their metadata: `section`
    (the TOML table of drs.toml that sets them, under the field's name), bounds (`gt`,
    `ge`, `le`), `unit` and `note`, which libvirt_drs.config validates and reports from; `from`
    names a setting declared elsewhere that the field takes (libvirt_drs.config fills it in).
    The other fields are the planner's tuning, not settings.
    """

    aggressiveness: int = field(default=3, metadata={
        "section": "balancer", "ge": 1, "le": 5,
        "note": "1 = mandatory moves only .. 5 = chase the smallest imbalance"})
    cpu_weight: float = field(default=1.0, metadata={"section": "balancer", "ge": 0})
    mem_weight: float = field(default=1.0, metadata={"section": "balancer", "ge": 0})
    # vCPUs per host core on the destination
    cpu_overcommit_ratio: float = field(default=4.0, metadata={"section": "balancer", "gt": 0})
    # kept free on every destination (a whole number in drs.toml)
    mem_reserve_mib: float = field(default=0.0, metadata={
        "section": "balancer", "toml": "int", "ge": 0, "unit": "MiB"})
    # ceiling on balancing moves per pass (the budget itself scales with the cluster:
    # planner.move_budget); 0 = mandatory moves only
    max_moves_per_pass: int = field(default=512, metadata={"section": "balancer", "ge": 0})
    # as source and as destination, per pass
    max_moves_per_host: int = field(default=2, metadata={"section": "balancer", "ge": 1})
    # a migrated VM is not balanced again (nor sent back) within it
    cooldown_s: float = field(default=3600.0, metadata={
        "section": "balancer", "ge": 0, "unit": "seconds"})
    # allow moves across storage groups (copies the disks)
    copy_storage: bool = field(default=False, metadata={"from": "migrator.copy_storage"})
    # migration bandwidth for the cost estimate; 0 = assume 1 GiB/s
    bandwidth_mib_s: float = field(default=0.0, metadata={"from": "migrator.bandwidth_mib_s"})
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
    # Search width and move budget, scaled with the cluster (planner.search_width,
    # planner.move_budget): the most loaded hosts searched per step hold about
    # search_vms_per_step VMs (at least source_hosts_per_step hosts); a pass makes up to
    # moves_per_host_per_pass moves per eligible host, at least min_moves_per_pass.
    source_hosts_per_step: int = 8
    search_vms_per_step: int = 160
    min_moves_per_pass: int = 16
    moves_per_host_per_pass: float = 0.15
    candidates_per_step: int = 256  # VMs of those hosts evaluated against every host

    def invalid(self) -> tuple[str, str] | None:
        """The first setting that contradicts another: (its name, what is expected)."""
        if self.cpu_weight + self.mem_weight <= 0:
            return "cpu_weight", "cpu_weight + mem_weight must be > 0"
        return None


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
class Exclusion:
    """Why one host cannot take a VM: the first hard constraint (constraints.HARD_CONSTRAINTS
    order) that excluded it, and the numbers or rule behind it."""

    host: str
    constraint: str  # e.g. memory_fits, anti_affinity, vm_host_rules
    detail: str  # e.g. "memory (needs 512 MiB, 300 free)", "anti-affinity 'web' (with db1)"


@dataclass(frozen=True)
class Unmovable:
    vm: str
    rule: str
    reason: str  # ends with the hosts and what excluded each, when a host search failed
    excluded: tuple[Exclusion, ...] = ()  # per host, for a VM no host could take


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]
    imbalance_before: float
    imbalance_after: float
    target: float
    notes: tuple[str, ...] = ()  # warnings: unknown names in rules, skipped rules
    unmovable: tuple[Unmovable, ...] = ()  # unsatisfiable rules, VM by VM
