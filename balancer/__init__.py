"""The pure balancing core: snapshot in, plan out. No libvirt, no SQLAlchemy."""

from balancer.demand import DemandEstimator, estimate_demand, estimate_spread
from balancer.model import (
                            ClusterSnapshot,
                            Exclusion,
                            GroupRule,
                            HostState,
                            Move,
                            Plan,
                            Policy,
                            Rules,
                            Unmovable,
                            VmHostRule,
                            VmState,
                            host_eligible,
)
from balancer.planner import plan
from balancer.report import render_html, render_json, render_markdown, render_text
from balancer.scoring import load_imbalance, target_imbalance

__all__ = [
    "ClusterSnapshot", "DemandEstimator", "Exclusion", "GroupRule", "HostState", "Move", "Plan",
    "Policy", "Rules", "Unmovable", "VmHostRule", "VmState", "estimate_demand",
    "estimate_spread", "host_eligible", "load_imbalance", "plan", "render_html", "render_json",
    "render_markdown", "render_text", "target_imbalance",
]
