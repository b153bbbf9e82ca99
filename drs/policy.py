"""Map the configuration onto the balancer core's Policy and Rules (the core never sees Config)."""

from __future__ import annotations

from balancer.model import GroupRule, Policy, Rules, VmHostRule
from drs.config import Config, RulesConfig


def policy_from_config(cfg: Config) -> Policy:
    b, m = cfg.balancer, cfg.migrator
    return Policy(
        aggressiveness=b.aggressiveness,
        cpu_weight=b.cpu_weight,
        mem_weight=b.mem_weight,
        cpu_overcommit_ratio=b.cpu_overcommit_ratio,
        mem_reserve_mib=float(b.mem_reserve_mib),
        max_moves_per_pass=b.max_moves_per_pass,
        max_moves_per_host=b.max_moves_per_host,
        cooldown_s=b.cooldown_s,
        copy_storage=m.copy_storage,
        bandwidth_mib_s=float(m.bandwidth_mib_s),
    )


def rules_from_config(rules: RulesConfig) -> Rules:
    return Rules(
        affinity=tuple(GroupRule(r.name, r.vms) for r in rules.affinity),
        anti_affinity=tuple(GroupRule(r.name, r.vms) for r in rules.anti_affinity),
        vm_host=tuple(VmHostRule(r.name, r.kind, r.vms, r.hosts) for r in rules.vm_host),
        pinned=rules.pinned,
        excluded=rules.excluded,
    )
