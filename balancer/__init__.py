"""The pure balancing core: snapshot in, plan out. No libvirt, no SQLAlchemy."""

from libvirt_drs.balancer.demand import DemandEstimator, estimate_demand, estimate_spread
from libvirt_drs.balancer.model import (
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
from libvirt_drs.balancer.planner import plan
from libvirt_drs.balancer.report import render_html, render_json, render_markdown, render_text
from libvirt_drs.balancer.scoring import load_imbalance, target_imbalance

__all__ = [
    "ClusterSnapshot", "DemandEstimator", "Exclusion", "GroupRule", "HostState", "Move", "Plan",
    "Policy", "Rules", "Unmovable", "VmHostRule", "VmState", "estimate_demand",
    "estimate_spread", "host_eligible", "load_imbalance", "plan", "render_html", "render_json",
    "render_markdown", "render_text", "target_imbalance",
]
