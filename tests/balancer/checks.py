"""An independent, slow, obvious re-check of every hard constraint over a plan's moves."""

from __future__ import annotations

from libvirt_drs.balancer.model import ClusterSnapshot, Plan, Policy


def violations(snap: ClusterSnapshot, plan: Plan, policy: Policy) -> list[str]:
    """Replay the moves one by one on plain dicts; describe every broken hard constraint."""
    hosts = {h.name: h for h in snap.hosts}
    vm = {v.name: v for v in snap.vms}
    where = {v.name: v.host for v in snap.vms}
    frozen = set(snap.rules.pinned) | set(snap.rules.excluded)
    out_n: dict[str, int] = {}
    in_n: dict[str, int] = {}
    moved: set[str] = set()
    bad: list[str] = []
    balancing = 0
    for m in plan.moves:
        v, dst, src = vm[m.vm], hosts[m.destination], hosts[m.source]
        tag = f"{m.vm} {m.source}->{m.destination}"
        if where[m.vm] != m.source:
            bad.append(f"{tag}: not on source")
        if m.vm in moved:
            bad.append(f"{tag}: moved twice")
        if m.vm in frozen:
            bad.append(f"{tag}: pinned/excluded")
        if not dst.eligible:
            bad.append(f"{tag}: destination not eligible")
        mem = sum(vm[n].mem_mib for n, h in where.items() if h == dst.name) + v.mem_mib
        if mem > dst.mem_mib - policy.mem_reserve_mib + 1e-6:
            bad.append(f"{tag}: memory does not fit")
        vcpus = sum(vm[n].vcpus for n, h in where.items() if h == dst.name) + v.vcpus
        if vcpus > dst.cpu_cores * policy.cpu_overcommit_ratio + 1e-9:
            bad.append(f"{tag}: overcommit")
        need = v.cpu_features if v.cpu_features is not None else src.cpu_features
        if not need <= dst.cpu_features:
            bad.append(f"{tag}: cpu incompatible")
        storage = v.storage_group or snap_host(snap, v.host).storage_group
        if not policy.copy_storage and storage != dst.storage_group:
            bad.append(f"{tag}: storage unreachable")
        for g in snap.rules.anti_affinity:
            if m.vm in g.vms and any(where.get(o) == dst.name for o in g.vms if o != m.vm):
                bad.append(f"{tag}: anti-affinity {g.name}")
        for r in snap.rules.vm_host:
            if m.vm in r.vms and r.kind == "must" and dst.name not in r.hosts:
                bad.append(f"{tag}: must {r.name}")
            if m.vm in r.vms and r.kind == "must_not" and dst.name in r.hosts:
                bad.append(f"{tag}: must_not {r.name}")
        cooling = (v.last_migrated_s is not None
                   and snap.now_s - v.last_migrated_s < policy.cooldown_s)
        if cooling and v.last_source == dst.name:
            bad.append(f"{tag}: back within cooldown")
        if m.kind == "balancing":
            balancing += 1
            if cooling:
                bad.append(f"{tag}: balanced within cooldown")
            per_host = policy.max_moves_per_host
            lim_out = src.max_outgoing if src.max_outgoing is not None else per_host
            lim_in = dst.max_incoming if dst.max_incoming is not None else per_host
            if out_n.get(src.name, 0) >= lim_out or in_n.get(dst.name, 0) >= lim_in:
                bad.append(f"{tag}: per-host limit")
        out_n[src.name] = out_n.get(src.name, 0) + 1
        in_n[dst.name] = in_n.get(dst.name, 0) + 1
        where[m.vm] = dst.name
        moved.add(m.vm)
    if balancing > policy.max_moves_per_pass:
        bad.append(f"{balancing} balancing moves > cap {policy.max_moves_per_pass}")
    return bad


def snap_host(snap: ClusterSnapshot, name: str):  # type: ignore[no-untyped-def]
    return next(h for h in snap.hosts if h.name == name)
