"""The balancer core's Policy from the configuration (the core never sees Config).

drs.config parses [balancer] (and the two [migrator] settings the planner uses) straight
into balancer.model.Policy, which declares them; rules likewise into balancer.model.Rules."""

from __future__ import annotations

from balancer.model import Policy
from drs.config import Config


def policy_from_config(cfg: Config) -> Policy:
    return cfg.balancer.policy
