"""Pairwise re-routing of the balancing moves greedy chose (small clusters only).

Greedy is myopic where one VM is a large share of a host: its best first move can rule
out the best pair. This pass takes every pair of planned balancing moves, takes both
back, and re-places the two VMs jointly (each may also stay), keeping the pair only if
the imbalance (with soft-rule penalties) drops. The number of moves never grows. Runs
on at most MAX_HOSTS hosts and MAX_PAIRS pairs per round.
"""

from __future__ import annotations

import numpy as np

from libvirt_drs.balancer.arrays import F64, I64, Bool
from libvirt_drs.balancer.constraints import allowed, apply_in_order, soft_penalty
from libvirt_drs.balancer.scoring import imbalance, moved_imbalance
from libvirt_drs.balancer.state import PlanState

MAX_HOSTS = 16  # above this one move is a small share of a host and greedy is near-optimal
MAX_ROUNDS = 50
MAX_PAIRS = 64  # per round; beyond it the pass costs more than it is worth


def _options(state: PlanState, vm: int, home: int) -> tuple[I64, F64]:
    """Hosts `vm` may go to from `home` (including staying) and the resulting score."""
    c = state.cluster
    vms = np.array([vm], dtype=np.int64)
    ok = allowed(state, vms)[0] & (state.in_count < c.host_max_in)
    ok &= state.out_count[home] < c.host_max_out[home]
    ok[home] = True
    penalty = soft_penalty(state, vms)[0]
    score = moved_imbalance(c, state.policy, vms)[0] + penalty
    hosts = np.flatnonzero(ok)
    return hosts, score[hosts]


def _penalty(state: PlanState, vm: int) -> float:
    """Soft-rule penalty of `vm` where it is now."""
    here = int(state.cluster.vm_host[vm])
    return float(soft_penalty(state, np.array([vm], dtype=np.int64))[0, here])


def _best_pair(state: PlanState, a: int, sa: int, b: int, sb: int,
               budget: int) -> tuple[float, int, int]:
    """Lowest imbalance + penalties of a and b over joint placements using at most `budget`
    moves (both start at home)."""
    best = (np.inf, sa, sb)
    hosts_a, _ = _options(state, a, sa)
    for da in hosts_a.tolist():
        if da != sa:
            state.apply(a, da)
        hosts_b, score_b = _options(state, b, sb)
        if budget - (da != sa) < 1:
            score_b = np.where(hosts_b == sb, score_b, np.inf)
        k = int(np.argmin(score_b))
        total = float(score_b[k]) + _penalty(state, a)
        if total < best[0] - 1e-12:
            best = (total, da, int(hosts_b[k]))
        if da != sa:
            state.revert(a, sa)
    return best


def _orderable(state: PlanState, sources: dict[int, int]) -> bool:
    """Whether the moves now applied (VM -> source host) can run one after another, each
    allowed when it starts. Re-placing a pair can break that: taking a move back refills
    the room a later move of another VM was planned into."""
    c = state.cluster
    dests = {vm: int(c.vm_host[vm]) for vm, src in sources.items() if int(c.vm_host[vm]) != src}
    for vm in dests:
        state.revert(vm, sources[vm])
    if apply_in_order(state, dests) is None:
        for vm, dest in dests.items():
            state.apply(vm, dest)
        return False
    return True


def _try_pair(state: PlanState, moves: dict[int, int], a: int, b: int, ceiling: float) -> bool:
    """Re-place a (moved) and b (moved or not) jointly; True if that lowered the score."""
    c = state.cluster
    sa = moves[a]
    sb = moves.get(b, int(c.vm_host[b]))
    da, db = int(c.vm_host[a]), int(c.vm_host[b])
    now = imbalance(c, state.policy) + _penalty(state, a) + _penalty(state, b)
    state.revert(a, sa)
    if b in moves:
        state.revert(b, sb)
    score, na, nb = _best_pair(state, a, sa, b, sb, 2 if b in moves else 1)
    improve = score < now - 1e-9
    for vm, src, dst in ((a, sa, na), (b, sb, nb)):
        if dst != src:
            state.apply(vm, dst)
    if improve and imbalance(c, state.policy) > ceiling + 1e-12:
        improve = False  # a penalty may not buy a worse imbalance than the pass started with
    if improve and not _orderable(state, {**moves, b: sb}):
        improve = False
    if not improve:
        for vm, src, dst in ((a, sa, na), (b, sb, nb)):
            if dst != src:
                state.revert(vm, src)
        for vm, src, dst in ((a, sa, da), (b, sb, db)):
            if dst != src:
                state.apply(vm, dst)
    if improve and b not in moves and nb != sb:
        moves[b] = sb
    return improve


def refine(state: PlanState, moves: dict[int, int], candidates: Bool,
           ceiling: float) -> dict[int, int]:
    """moves: VM -> source host of each balancing move (already applied to `state`);
    candidates: VMs balancing may move; ceiling: the imbalance never ends above it."""
    if state.cluster.n_hosts > MAX_HOSTS or not moves:
        return moves
    others = np.flatnonzero(candidates).tolist()
    for _ in range(MAX_ROUNDS):
        pairs = [(a, b) for a in sorted(moves) for b in sorted(set(moves) | set(others))
                 if a != b and (b not in moves or a < b)]
        if len(pairs) > MAX_PAIRS:
            break
        improved = any(_try_pair(state, moves, a, b, ceiling) for a, b in pairs)
        moves = {vm: src for vm, src in moves.items() if int(state.cluster.vm_host[vm]) != src}
        if not improved:
            break
    return moves
