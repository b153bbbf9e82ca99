"""Map the configuration onto the balancer core's Policy (the core never sees Config).

Rules need no mapping: drs.config parses them straight into balancer.model.Rules."""

from __future__ import annotations

from balancer.model import Policy
from drs.config import Config


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
