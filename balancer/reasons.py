"""Operator-facing words for why a host cannot take a VM, shared by the constraint masks
(constraints.exclusions) and the rule resolution (rules.resolve)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from libvirt_drs.balancer.model import Exclusion

NO_HOST = "no host satisfies every hard constraint"


def ineligible(stale: bool) -> str:
    return "stale (no fresh samples)" if stale else "maintenance"


def vm_host_rule(name: str, kind: str, hosts: Sequence[str]) -> str:
    verb = "must run on" if kind == "must" else "must not run on"
    return f"rule {name!r} ({verb} {', '.join(hosts)})"


MAX_REASONS = 8  # distinct reasons spelled out; the hosts of the rest are counted
MAX_HOSTS = 6  # hosts named per reason


def _hosts(names: list[str]) -> str:
    if len(names) <= MAX_HOSTS:
        return ", ".join(names)
    return f"{', '.join(names[:MAX_HOSTS])} and {len(names) - MAX_HOSTS} more"


def describe(excluded: list[Exclusion]) -> str:
    """'h2 memory (needs 512 MiB, 300 free); h3, h4 maintenance': hosts with the same reason
    share it; beyond MAX_REASONS reasons, the other hosts are counted per constraint."""
    if not excluded:
        return "no other host"
    by_detail: dict[str, list[str]] = {}
    for e in excluded:
        by_detail.setdefault(e.detail, []).append(e.host)
    details = list(by_detail)
    parts = [f"{_hosts(by_detail[d])} {d}" for d in details[:MAX_REASONS]]
    unlisted = set(details[MAX_REASONS:])
    if unlisted:
        counts = Counter(e.constraint for e in excluded if e.detail in unlisted)
        parts.append(f"{sum(counts.values())} more host(s): "
                     + ", ".join(f"{n} {name}" for name, n in counts.most_common()))
    return "; ".join(parts)
