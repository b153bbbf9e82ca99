"""Mandatory moves: evacuate hosts entering maintenance and repair rule violations.

They come before any balancing move, are exempt from the per-pass cap (the migrator
admits them under its own per-host limits) but count towards the per-host limits so
balancing fills what is left. A violation with no legal destination is reported as
unmovable with the rule's name.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from libvirt_drs.balancer.constraints import allowed, exclusions, soft_penalty
from libvirt_drs.balancer.model import Exclusion, Move, Unmovable
from libvirt_drs.balancer.reasons import NO_HOST, describe
from libvirt_drs.balancer.scoring import imbalance, moved_imbalance
from libvirt_drs.balancer.state import PlanState

Violation = tuple[int, str, str, int | None]  # vm, rule, reason, forced destination


def _maintenance(state: PlanState) -> Iterator[Violation]:
    c = state.cluster
    leaving = ~c.host_eligible & ~c.host_stale
    for v in np.flatnonzero(leaving[c.vm_host]).tolist():
        host = c.host_names[int(c.vm_host[v])]
        yield v, "maintenance", f"host {host} entering maintenance", None


def _vm_host(state: PlanState) -> Iterator[Violation]:
    c = state.cluster
    for rule in state.rules.host_rules:
        if rule.kind not in ("must", "must_not"):
            continue
        on_named = rule.hosts[c.vm_host[rule.vms]]
        bad = rule.vms[~on_named] if rule.kind == "must" else rule.vms[on_named]
        named = ", ".join(c.host_names[h] for h in np.flatnonzero(rule.hosts).tolist())
        verb = "must run on" if rule.kind == "must" else "must not run on"
        for v in bad.tolist():
            yield v, rule.name, f"rule {rule.name!r}: {c.vm_names[v]} {verb} {named}", None


def _anti_affinity(state: PlanState) -> Iterator[Violation]:
    c = state.cluster
    for group in state.rules.anti_affinity:
        seen: set[int] = set()
        for v in group.vms.tolist():
            host = int(c.vm_host[v])
            if host in seen:
                yield v, group.name, f"rule {group.name!r}: anti-affinity, shares host " \
                    f"{c.host_names[host]} with another member", None
            seen.add(host)


def _affinity(state: PlanState) -> Iterator[Violation]:
    c = state.cluster
    for group in state.rules.affinity:
        if group.vms.size < 2:
            continue
        hosts = c.vm_host[group.vms]
        home = int(np.bincount(hosts).argmax())  # fewest moves: join the majority
        for v in group.vms[hosts != home].tolist():
            yield v, group.name, f"rule {group.name!r}: affinity, joins the group on " \
                f"{c.host_names[home]}", home


CHECKS = {"maintenance": _maintenance, "vm_host": _vm_host,
          "anti_affinity": _anti_affinity, "affinity": _affinity}


def _destination(state: PlanState, vm: int, forced: int | None) -> int | None:
    vms = np.array([vm], dtype=np.int64)
    ok = allowed(state, vms)[0]
    if forced is not None:
        return forced if ok[forced] else None
    if not ok.any():
        return None
    score = moved_imbalance(state.cluster, state.policy, vms)[0] + soft_penalty(state, vms)[0]
    return int(np.argmin(np.where(ok, score, np.inf)))


def _excluded(state: PlanState, vm: int, rule: str, forced: int | None) -> list[Exclusion]:
    """Why no host can take `vm`; a forced destination (affinity) rules out the others."""
    if forced is None:
        return exclusions(state, vm)
    c = state.cluster
    detail = f"affinity {rule!r} (the group gathers on {c.host_names[forced]})"
    out: list[Exclusion] = []
    for h in range(c.n_hosts):
        if h == forced:
            out += exclusions(state, vm, only=forced)
        elif h != c.vm_host[vm]:
            out.append(Exclusion(c.host_names[h], "affinity", detail))
    return out



def mandatory_moves(state: PlanState, moved: set[int]) -> tuple[list[Move], list[Unmovable]]:
    """Repair every violation it can, in the order of CHECKS; `moved` collects the VMs moved."""
    moves: list[Move] = []
    unmovable: list[Unmovable] = []
    c = state.cluster
    for check in CHECKS.values():
        for vm, rule, reason, forced in list(check(state)):
            if vm in moved or state.rules.frozen[vm]:
                continue
            dest = _destination(state, vm, forced)
            if dest is None:
                excluded = _excluded(state, vm, rule, forced)
                unmovable.append(Unmovable(
                    vm=c.vm_names[vm], rule=rule, excluded=tuple(excluded),
                    reason=f"{reason}; {NO_HOST}: {describe(excluded)}"))
                continue
            before = imbalance(c, state.policy)
            src = int(c.vm_host[vm])
            state.apply(vm, dest)
            moved.add(vm)
            moves.append(Move(vm=c.vm_names[vm], source=c.host_names[src],
                              destination=c.host_names[dest], kind="mandatory", reason=reason,
                              imbalance_before=before, imbalance_after=imbalance(c, state.policy),
                              cost_s=float(c.vm_cost_s[vm])))
    return moves, unmovable
