"""plan(snapshot, policy) -> Plan: mandatory moves first, then greedy balancing moves.

Balancing, one move per step while the imbalance is above the target and the pass's
move budget lasts: take the VMs on the most loaded hosts (that may still send), evaluate
moving each of them to every host at once (a (vm, host) array of the resulting
imbalance; on a large cluster to the least loaded hosts only, see _destinations), drop
what a hard constraint forbids, and keep the move with the largest net gain if that gain
pays for the migration (cost-benefit). The search width and the budget scale with the
cluster (search_width, move_budget). On small clusters the chosen moves are then refined
(refine.py, exact.py) without adding any. Moves are recorded best first. Deterministic:
ties go to the lowest index.
"""

from __future__ import annotations

import math

import numpy as np

from libvirt_drs.balancer.arrays import F64, I64, Bool, Cluster, build_cluster
from libvirt_drs.balancer.constraints import allowed, soft_penalty
from libvirt_drs.balancer.exact import exact
from libvirt_drs.balancer.mandatory import mandatory_moves
from libvirt_drs.balancer.model import ClusterSnapshot, Move, Plan, Policy
from libvirt_drs.balancer.refine import refine
from libvirt_drs.balancer.rules import resolve
from libvirt_drs.balancer.scoring import host_loads, imbalance, moved_imbalance, risk_delta, target_imbalance
from libvirt_drs.balancer.state import PlanState, build_state

DESTINATIONS_PER_STEP = 32  # least loaded hosts scored per step on a large cluster


def _source_hosts(state: PlanState) -> I64:
    """The most loaded eligible hosts that may still send, most loaded first."""
    c, p = state.cluster, state.policy
    cpu, mem = host_loads(c)
    ok = c.host_eligible & (state.out_count < c.host_max_out)
    if not ok.any():
        return np.array([], dtype=np.int64)
    excess = p.cpu_weight * (cpu - cpu[ok].mean()) + p.mem_weight * (mem - mem[ok].mean())
    excess = np.where(ok, excess, -np.inf)
    order = np.argsort(-excess, kind="stable")[: search_width(p, c)]
    return order[np.isfinite(excess[order]) & (excess[order] > 0)]


def search_width(policy: Policy, cluster: Cluster) -> int:
    """Source hosts searched per step: enough of them to hold about search_vms_per_step VMs
    (the VMs of 8 hosts are too few a choice when a host runs 5), at least
    source_hosts_per_step."""
    ok = cluster.host_eligible
    per_host = cluster.n_vms / max(int(ok.sum()), 1)
    return max(policy.source_hosts_per_step,
               math.ceil(policy.search_vms_per_step / max(per_host, 1.0)))


def move_budget(policy: Policy, cluster: Cluster) -> int:
    """Balancing moves per pass: moves_per_host_per_pass per eligible host, at least
    min_moves_per_pass, at most max_moves_per_pass and what the per-host limits let the
    eligible hosts send and take (each move takes one outgoing and one incoming slot)."""
    ok = cluster.host_eligible
    slots = min(int(cluster.host_max_out[ok].sum()), int(cluster.host_max_in[ok].sum()))
    scaled = max(policy.min_moves_per_pass, math.ceil(policy.moves_per_host_per_pass * ok.sum()))
    return min(policy.max_moves_per_pass, scaled, slots)


def _destinations(state: PlanState, vms: I64, penalty: F64) -> I64:
    """Hosts a step scores: all on a small cluster; on a large one the
    DESTINATIONS_PER_STEP least loaded hosts that may still receive, plus every host where
    a candidate would break fewer soft rules than where it is. Moving load to a cold host
    is what lowers the imbalance: on identical hosts balanced on one resource the rest of
    the row cannot win; with two resources it is a heuristic."""
    c = state.cluster
    if c.n_hosts <= 2 * DESTINATIONS_PER_STEP:
        return np.arange(c.n_hosts)
    load = _open_host_load(state)
    coldest = np.argsort(load, kind="stable")[:DESTINATIONS_PER_STEP]
    keep = np.zeros(c.n_hosts, dtype=bool)
    keep[coldest[np.isfinite(load[coldest])]] = True
    here = penalty[np.arange(vms.size), c.vm_host[vms]]
    keep |= (penalty < here[:, None]).any(axis=0) & np.isfinite(load)
    return np.flatnonzero(keep)


def _open_host_load(state: PlanState) -> F64:
    """Weighted CPU + memory load of each host that may still receive; inf for the others."""
    c, p = state.cluster, state.policy
    cpu, mem = host_loads(c)
    open_hosts = c.host_eligible & (state.in_count < c.host_max_in)
    return np.where(open_hosts, p.cpu_weight * cpu + p.mem_weight * mem, np.inf)


def _shortlist(state: PlanState, vms: I64) -> I64:
    """At most candidates_per_step VMs: those whose move to the least loaded open host
    would cut the imbalance most (a cheap 1-column pre-score; ties by index)."""
    c, p = state.cluster, state.policy
    if vms.size <= p.candidates_per_step:
        return vms
    load = _open_host_load(state)
    if not np.isfinite(load).any():
        return vms[: p.candidates_per_step]
    coldest = int(np.argmin(load))
    pre = moved_imbalance(c, p, vms, np.array([coldest]))[:, 0]
    keep = np.argsort(pre, kind="stable")[: p.candidates_per_step]
    return vms[np.sort(keep)]


def _best_move(state: PlanState, candidates: Bool, current: float) -> tuple[int, int] | None:
    c = state.cluster
    is_source = np.zeros(c.n_hosts, dtype=bool)
    is_source[_source_hosts(state)] = True
    vms = np.flatnonzero(candidates & is_source[c.vm_host])
    if vms.size == 0:
        return None
    vms = _shortlist(state, vms)
    ok = allowed(state, vms) & (state.in_count < c.host_max_in)[None, :]
    penalty = soft_penalty(state, vms)
    dests = _destinations(state, vms, penalty)
    best = _best_among(state, vms, dests, ok, penalty, current)
    if best is None and dests.size < c.n_hosts:  # the cold hosts refused them all: look wider
        best = _best_among(state, vms, np.arange(c.n_hosts), ok, penalty, current)
    return best


def _best_among(state: PlanState, vms: I64, dests: I64, ok: Bool, penalty: F64,
                current: float) -> tuple[int, int] | None:
    """The (VM, host) of the largest net gain among `vms` x `dests`, or None."""
    c, p = state.cluster, state.policy
    after = moved_imbalance(c, p, vms, dests)
    here = penalty[np.arange(vms.size), c.vm_host[vms]]
    n_hosts = max(int(c.host_eligible.sum()), 1)
    # gain in the sum of squared host-load deviations: comparable across cluster sizes
    gain = n_hosts * (current**2 - (after + penalty[:, dests] - here[:, None]) ** 2)
    if p.risk_weight > 0:
        gain -= p.risk_weight * risk_delta(c, p, vms)[:, dests]
    net = gain - p.min_gain - p.cost_weight * c.vm_cost_s[vms][:, None]
    net = np.where(ok[:, dests] & (after < current - 1e-12) & (net > 0), net, -np.inf)
    flat = int(np.argmax(net))
    if not np.isfinite(net.flat[flat]):
        return None
    k, j = divmod(flat, dests.size)
    return int(vms[k]), int(dests[j])


def _reason(c: Cluster, vm: int, src: int, dest: int) -> str:
    cpu, mem = host_loads(c)
    cpu, mem = np.maximum(cpu, 0.0), np.maximum(mem, 0.0)  # no "-0%" from float rounding
    text = (f"balance: {c.host_names[src]} cpu {cpu[src]:.0%} mem {mem[src]:.0%} -> "
            f"{c.host_names[dest]} cpu {cpu[dest]:.0%} mem {mem[dest]:.0%} "
            f"(VM cpu {c.vm_cpu_cores[vm]:.2f} cores)")
    return text + contention_note(c, vm, src)


CONTENTION_NOTE_CORES = 0.01  # below this much waiting on the source, a move says nothing


def contention_note(c: Cluster, vm: int, src: int) -> str:
    """'; contention on h1: its VMs wait 0.38 cores for CPU, this VM 0.14 (27 % of its
    demand)', or '' where the source's VMs do not wait."""
    on_src = c.vm_host == src
    waited = float(c.vm_cpu_wait_cores[on_src].sum())
    if waited < CONTENTION_NOTE_CORES:
        return ""
    own = float(c.vm_cpu_wait_cores[vm])
    share = own / c.vm_cpu_cores[vm] if c.vm_cpu_cores[vm] > 0 else 0.0
    return (f"; contention on {c.host_names[src]}: its VMs wait {waited:.2f} cores for CPU, "
            f"this VM {own:.2f} ({share:.0%} of its demand)")


def _candidates(state: PlanState, moved: set[int]) -> Bool:
    """VMs balancing may move: not frozen, not in an affinity group, not cooling down,
    on an eligible host, not already moved by a mandatory move."""
    c = state.cluster
    candidates = (~state.rules.frozen & ~state.in_affinity & ~c.vm_cooling
                  & c.host_eligible[c.vm_host])
    if moved:
        candidates[list(moved)] = False
    return candidates


def _greedy(state: PlanState, candidates: Bool, target: float) -> dict[int, int]:
    """Apply the best move while above target; returns VM -> source host."""
    c, p = state.cluster, state.policy
    candidates = candidates.copy()
    chosen: dict[int, int] = {}
    budget = move_budget(p, c)
    while len(chosen) < budget:
        current = imbalance(c, p)
        if current <= target:
            break
        best = _best_move(state, candidates, current)
        if best is None:
            break
        vm, dest = best
        chosen[vm] = int(c.vm_host[vm])
        state.apply(vm, dest)
        candidates[vm] = False
    return chosen


def _record(state: PlanState, chosen: dict[int, int]) -> list[Move]:
    """Replay the chosen moves, best first, as Move records with before/after imbalance."""
    c, p = state.cluster, state.policy
    dest = {vm: int(c.vm_host[vm]) for vm in chosen}
    for vm, src in chosen.items():
        state.revert(vm, src)
    moves: list[Move] = []
    left = sorted(chosen)
    while left:
        before = imbalance(c, p)
        pending = np.array(left, dtype=np.int64)
        after = moved_imbalance(c, p, pending, np.array([dest[vm] for vm in left])[:, None])
        order = np.argsort(after[:, 0], kind="stable")
        # the best move whose destination takes it now (a move that fits only after another
        # one freed room waits for it: the order is the one the migrations may run in)
        vm = next((int(pending[k]) for k in order.tolist()
                   if bool(allowed(state, pending[k:k + 1])[0, dest[int(pending[k])]])),
                  int(pending[order[0]]))
        left.remove(vm)
        src = chosen[vm]
        reason = _reason(c, vm, src, dest[vm])
        state.apply(vm, dest[vm])
        moves.append(Move(vm=c.vm_names[vm], source=c.host_names[src],
                          destination=c.host_names[dest[vm]], kind="balancing", reason=reason,
                          imbalance_before=before, imbalance_after=imbalance(c, p),
                          cost_s=float(c.vm_cost_s[vm])))
    return moves


def balancing_moves(state: PlanState, moved: set[int], target: float) -> list[Move]:
    candidates = _candidates(state, moved)
    start = imbalance(state.cluster, state.policy)
    chosen = refine(state, _greedy(state, candidates, target), candidates, start)
    chosen = exact(state, chosen, candidates, start)
    return _record(state, chosen)


def plan(snapshot: ClusterSnapshot, policy: Policy) -> Plan:
    """A pure function of its arguments: the same snapshot and policy give the same plan."""
    resolved = resolve(snapshot)
    notes = list(resolved.notes)
    if not snapshot.hosts:
        return Plan(moves=(), imbalance_before=0.0, imbalance_after=0.0, target=0.0,
                    notes=(*notes, "empty cluster: no hosts, nothing to plan"))
    vms = tuple(snapshot.vms[i] for i in resolved.vm_keep)
    cluster = build_cluster(snapshot, vms, policy, resolved.vm_host)
    state = build_state(cluster, resolved, policy)
    n_eligible = int(cluster.host_eligible.sum())
    target = target_imbalance(policy.aggressiveness, n_eligible)
    if n_eligible == 0:
        notes.append("no eligible host (all in maintenance or stale): nothing can move")
    before = imbalance(cluster, policy)
    moved: set[int] = set()
    mandatory, unmovable = mandatory_moves(state, moved) if n_eligible else ([], [])
    balancing = balancing_moves(state, moved, target) if n_eligible else []
    after = imbalance(cluster, policy)
    if n_eligible and not balancing and before > target > 0.0:
        notes.append(_why_no_balancing(cluster, policy, before, target))
    elif n_eligible and balancing and after > target > 0.0:
        notes.append(_why_stopped(state, len(balancing), after, target))
    return Plan(moves=(*mandatory, *balancing), imbalance_before=before,
                imbalance_after=after, target=target,
                notes=tuple(notes), unmovable=(*resolved.unmovable, *unmovable))


def _limited_hosts(state: PlanState) -> str:
    """Hosts whose per-pass move limit is used up, as 'h1 (2 out)'; '' if none."""
    c = state.cluster
    full = []
    for h in range(c.n_hosts):
        parts = []
        if state.out_count[h] and state.out_count[h] >= c.host_max_out[h]:
            parts.append(f"{int(state.out_count[h])} out")
        if state.in_count[h] and state.in_count[h] >= c.host_max_in[h]:
            parts.append(f"{int(state.in_count[h])} in")
        if parts:
            full.append(f"{c.host_names[h]} ({', '.join(parts)})")
    return ", ".join(full)


def _why_stopped(state: PlanState, n_balancing: int, after: float, target: float) -> str:
    """Why a plan with balancing moves still ends above target: which limit stopped it."""
    p = state.policy
    text = f"the plan ends at imbalance {after:.4f}, above the target {target:.4f}: "
    budget = move_budget(p, state.cluster)
    if n_balancing >= budget:
        if budget >= p.max_moves_per_pass:
            return text + (f"stopped at balancer.max_moves_per_pass = {p.max_moves_per_pass} "
                           "moves; the next round goes on")
        return text + (f"stopped at this pass's budget of {budget} moves (at least "
                       f"{p.min_moves_per_pass}, {p.moves_per_host_per_pass:g} per eligible "
                       "host); the next round goes on")
    limited = _limited_hosts(state)
    if limited:
        return text + (f"the per-host move limit (balancer.max_moves_per_host = "
                       f"{p.max_moves_per_host}, or the host's max_outgoing / max_incoming) "
                       f"is used up on {limited}; the next round goes on")
    return text + "no further move gains enough for its cost within the rules and capacity"


def _why_no_balancing(cluster: Cluster, policy: Policy, before: float, target: float) -> str:
    """An operator-facing reason for 'above target, yet nothing to do'."""
    text = f"imbalance {before:.4f} is above the target {target:.4f} but no balancing move qualifies"
    cooling = int(cluster.vm_cooling.sum())
    if cooling:
        text += (f": {cooling} of {cluster.n_vms} VM(s) migrated less than "
                 f"{policy.cooldown_s:.0f} s ago and wait out their cooldown (balancer.cooldown_s)")
        if cooling < cluster.n_vms:
            text += "; no move of the others gains enough for its cost within the rules"
    else:
        text += ": no move gains enough for its cost within the rules and capacity"
    return text
