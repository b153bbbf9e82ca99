"""The pure balancing core: snapshot in, plan out. No libvirt, no SQLAlchemy.

The public names below load on first use (PEP 562), so importing the value types of
`balancer.model` (as the configuration does) does not load numpy and the planner.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ClusterSnapshot": "model", "Exclusion": "model", "GroupRule": "model",
    "HostState": "model", "Move": "model", "Plan": "model", "Policy": "model",
    "Rules": "model", "Unmovable": "model", "VmHostRule": "model", "VmState": "model",
    "host_eligible": "model", "DemandEstimator": "demand", "estimate_demand": "demand",
    "estimate_spread": "demand", "plan": "planner", "render_json": "report",
    "render_markdown": "report", "render_text": "report",
    "load_imbalance": "scoring", "snapshot_loads": "scoring", "target_imbalance": "scoring",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
