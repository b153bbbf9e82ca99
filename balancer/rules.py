"""Rules resolved against a snapshot: names to indices, bad names to notes, contradictions
to unsatisfiable rules whose VMs are reported as not movable.

VMs come and go, so a rule naming an unknown VM is a note, not a failure; a rule naming
an unknown host is a note too (the config check already rejects unknown hosts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from libvirt_drs.balancer.arrays import I64, Bool
from libvirt_drs.balancer.model import ClusterSnapshot, Exclusion, HostState, Unmovable, VmHostRule
from libvirt_drs.balancer.reasons import describe, ineligible, vm_host_rule


@dataclass(frozen=True)
class HostRule:
    name: str
    kind: str  # must | must_not | should | should_not
    vms: I64
    hosts: Bool  # (n_hosts,) the hosts the rule names


@dataclass(frozen=True)
class GroupIdx:
    name: str
    vms: I64


@dataclass
class Resolved:
    vm_host: I64  # host index of every VM kept in the snapshot
    vm_keep: list[int]  # indices into snapshot.vms of the VMs that are planned over
    frozen: Bool  # never moved: pinned, excluded, unsatisfiable
    anti_affinity: list[GroupIdx] = field(default_factory=list)
    affinity: list[GroupIdx] = field(default_factory=list)
    host_rules: list[HostRule] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unmovable: list[Unmovable] = field(default_factory=list)


def _place(snapshot: ClusterSnapshot, host_index: dict[str, int],
           notes: list[str]) -> tuple[list[int], I64]:
    keep: list[int] = []
    where: list[int] = []
    seen: set[str] = set()
    for i, vm in enumerate(snapshot.vms):
        if vm.name in seen:
            notes.append(f"VM {vm.name!r} appears twice in the snapshot; the first is kept")
            continue
        if vm.host not in host_index:
            notes.append(f"VM {vm.name!r} runs on unknown host {vm.host!r}; ignored")
            continue
        seen.add(vm.name)
        keep.append(i)
        where.append(host_index[vm.host])
    return keep, np.array(where, dtype=np.int64)


def _vm_idx(rule: str, names: tuple[str, ...], vm_index: dict[str, int],
            notes: list[str]) -> I64:
    unknown = [n for n in names if n not in vm_index]
    if unknown:
        notes.append(f"rule {rule!r}: unknown VM(s) {', '.join(map(repr, unknown))} ignored")
    return np.array(sorted({vm_index[n] for n in names if n in vm_index}), dtype=np.int64)


def _host_mask(rule: VmHostRule, host_index: dict[str, int], n_hosts: int,
               notes: list[str]) -> Bool:
    unknown = [h for h in rule.hosts if h not in host_index]
    if unknown:
        notes.append(f"rule {rule.name!r}: unknown host(s) {', '.join(map(repr, unknown))} ignored")
    mask = np.zeros(n_hosts, dtype=bool)
    mask[[host_index[h] for h in rule.hosts if h in host_index]] = True
    return mask


def _freeze(res: Resolved, vms: I64, names: list[str], rule: str, reason: str,
            excluded: dict[int, tuple[Exclusion, ...]] | None = None) -> None:
    for v in vms.tolist():
        if not res.frozen[v]:
            res.unmovable.append(Unmovable(vm=names[v], rule=rule,
                                           reason=reason + _listed(excluded, v),
                                           excluded=(excluded or {}).get(v, ())))
        res.frozen[v] = True


def _listed(excluded: dict[int, tuple[Exclusion, ...]] | None, v: int) -> str:
    return f": {describe(list(excluded[v]))}" if excluded and v in excluded else ""


def _check_must(res: Resolved, names: list[str], hosts: tuple[HostState, ...]) -> None:
    """A VM whose must hosts are all ineligible or all excluded by its must-not rules."""
    eligible = np.array([h.eligible for h in hosts], dtype=bool)
    hard = [r for r in res.host_rules if r.kind in ("must", "must_not")]
    allowed: dict[int, Bool] = {}
    for r in hard:
        for v in r.vms.tolist():
            mask = allowed.get(v, eligible)
            allowed[v] = mask & (r.hosts if r.kind == "must" else ~r.hosts)
    bad = np.array(sorted(v for v, mask in allowed.items() if not mask.any()), dtype=np.int64)
    excluded = {v: _why_no_host(v, hard, hosts) for v in bad.tolist()}
    for r in hard:
        _freeze(res, np.intersect1d(r.vms, bad), names, r.name,
                f"rule {r.name!r} unsatisfiable: no eligible host allowed by the VM's rules",
                excluded)


def _why_no_host(v: int, hard: list[HostRule], hosts: tuple[HostState, ...]
                 ) -> tuple[Exclusion, ...]:
    """Per host, what excludes it for VM v: not eligible, else its first hard rule."""
    host_names = [h.name for h in hosts]
    out = []
    for i, h in enumerate(hosts):
        if not h.eligible:
            out.append(Exclusion(h.name, "eligible_destination", ineligible(h.stale)))
            continue
        for r in hard:
            if v in r.vms and bool(r.hosts[i]) == (r.kind == "must_not"):
                named = [host_names[k] for k in np.flatnonzero(r.hosts).tolist()]
                out.append(Exclusion(h.name, "vm_host_rules", vm_host_rule(r.name, r.kind, named)))
                break
    return tuple(out)


def resolve(snapshot: ClusterSnapshot) -> Resolved:
    rules = snapshot.rules
    host_index = {h.name: i for i, h in enumerate(snapshot.hosts)}
    notes: list[str] = []
    keep, vm_host = _place(snapshot, host_index, notes)
    names = [snapshot.vms[i].name for i in keep]
    vm_index = {n: i for i, n in enumerate(names)}
    res = Resolved(vm_host=vm_host, vm_keep=keep, frozen=np.zeros(len(keep), dtype=bool),
                   notes=notes)
    for kind, vms, reason in (("pinned", rules.pinned, "pinned"),
                              ("excluded", rules.excluded, "excluded from balancing")):
        idx = _vm_idx(kind, vms, vm_index, notes)
        res.frozen[idx] = True
        for v in idx.tolist():
            if not snapshot.hosts[int(vm_host[v])].eligible:
                res.unmovable.append(Unmovable(vm=names[v], rule=kind,
                                               reason=f"{reason}; stays on host in maintenance"))
    eligible = np.array([h.eligible for h in snapshot.hosts], dtype=bool)
    for g in rules.anti_affinity:
        idx = _vm_idx(g.name, g.vms, vm_index, notes)
        if idx.size > int(eligible.sum()):
            _freeze(res, idx, names, g.name,
                    f"rule {g.name!r} unsatisfiable: {idx.size} VMs to keep apart but only "
                    f"{int(eligible.sum())} eligible hosts")
            continue
        res.anti_affinity.append(GroupIdx(g.name, idx))
    res.affinity = [GroupIdx(g.name, _vm_idx(g.name, g.vms, vm_index, notes))
                    for g in rules.affinity]
    for r in rules.vm_host:
        res.host_rules.append(HostRule(r.name, r.kind, _vm_idx(r.name, r.vms, vm_index, notes),
                                       _host_mask(r, host_index, len(snapshot.hosts), notes)))
    _check_must(res, names, snapshot.hosts)
    return res
