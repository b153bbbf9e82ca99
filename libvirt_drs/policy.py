"""The balancer core's Policy from the configuration (the core never sees Config).

libvirt_drs.config parses [balancer] (and the two [migrator] settings the planner uses) straight
into balancer.model.Policy, which declares them; rules likewise into balancer.model.Rules."""

from __future__ import annotations

from libvirt_drs.balancer.model import Policy
from libvirt_drs.config import Config


def policy_from_config(cfg: Config) -> Policy:
    return cfg.balancer.policy
