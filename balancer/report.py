"""Pure renderers of a plan: terminal text, JSON, Markdown (the HTML report, with the
console's charts, is libvirt_drs/web/reports.py).

`host_loads()` replays the plan's moves over the snapshot so every renderer can show
per-host load before and after.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from libvirt_drs.balancer.model import ClusterSnapshot, Plan


@dataclass(frozen=True)
class HostLoad:
    host: str
    cpu_before: float
    cpu_after: float
    mem_before: float
    mem_after: float
    has_data: bool = True  # False: a stale host, whose load is unknown (never shown as 0 %)


def host_loads(snapshot: ClusterSnapshot, plan: Plan) -> list[HostLoad]:
    """CPU and memory load (0..1+) of every host before and after the plan's moves."""
    where = {vm.name: vm.host for vm in snapshot.vms}
    after = dict(where)
    for move in plan.moves:
        after[move.vm] = move.destination
    caps = {h.name: h for h in snapshot.hosts}
    used: dict[tuple[str, str], list[float]] = {}
    for vm in snapshot.vms:
        if vm.host not in caps:
            continue
        mem = vm.mem_mib if vm.mem_demand_mib is None else vm.mem_demand_mib
        for phase, host in (("before", where[vm.name]), ("after", after[vm.name])):
            acc = used.setdefault((phase, host), [0.0, 0.0])
            acc[0] += vm.cpu_cores
            acc[1] += mem
    rows = []
    for h in snapshot.hosts:
        b = used.get(("before", h.name), [0.0, 0.0])
        a = used.get(("after", h.name), [0.0, 0.0])
        cpu, mem = max(h.cpu_cores, 1e-9), max(h.mem_mib, 1e-9)
        rows.append(HostLoad(h.name, b[0] / cpu, a[0] / cpu, b[1] / mem, a[1] / mem,
                             has_data=not h.stale))
    return rows


def _num(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 6)


def plan_dict(plan: Plan) -> dict[str, Any]:
    return {
        "imbalance_before": _num(plan.imbalance_before),
        "imbalance_after": _num(plan.imbalance_after),
        "target": _num(plan.target),
        "moves": [{"vm": m.vm, "source": m.source, "destination": m.destination,
                   "kind": m.kind, "reason": m.reason,
                   "imbalance_before": _num(m.imbalance_before),
                   "imbalance_after": _num(m.imbalance_after), "cost_s": _num(m.cost_s)}
                  for m in plan.moves],
        "notes": list(plan.notes),
        "unmovable": [{"vm": u.vm, "rule": u.rule, "reason": u.reason,
                       "excluded": [{"host": e.host, "constraint": e.constraint,
                                     "detail": e.detail} for e in u.excluded]}
                      for u in plan.unmovable],
    }


def render_json(plan: Plan) -> str:
    """JSON object; "cost_s" is the estimated migration time in seconds, "target" null at
    aggressiveness 1 (never balance)."""
    return json.dumps(plan_dict(plan), indent=2) + "\n"


def _fmt(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4f}"


def summary(plan: Plan) -> str:
    return (f"imbalance {_fmt(plan.imbalance_before)} -> {_fmt(plan.imbalance_after)} "
            f"(target {_fmt(plan.target)}), {len(plan.moves)} move(s)")


def render_text(plan: Plan) -> str:
    """A plain fixed-width table for terminals and logs."""
    header = ("VM", "FROM", "TO", "KIND", "IMB BEFORE", "IMB AFTER", "COST S", "REASON")
    rows = [(m.vm, m.source, m.destination, m.kind, _fmt(m.imbalance_before),
             _fmt(m.imbalance_after), f"{m.cost_s:.1f}", m.reason) for m in plan.moves]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header) - 1)]
    lines = [summary(plan)]
    if rows:
        for r in (header, *rows):
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False))
                         + "  " + r[-1])
    lines += [f"note: {n}" for n in plan.notes]
    lines += [f"unmovable: {u.vm} ({u.rule}): {u.reason}" for u in plan.unmovable]
    return "\n".join(lines) + "\n"


# inline markup inside a table cell: emphasis, code, links, HTML, strike-through, cells
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def _md(text: str) -> str:
    """Text as literal Markdown: every character Markdown could read as markup is escaped
    and line breaks become spaces (a name cannot break the table or inject a link)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def _pct(value: float, has_data: bool) -> str:
    return f"{value:.0%}" if has_data else "no data"


def render_markdown(plan: Plan, snapshot: ClusterSnapshot | None = None) -> str:
    out = ["# DRS plan", "", summary(plan), ""]
    if plan.moves:
        out += ["| VM | From | To | Kind | Imbalance before | after | Cost (s) | Reason |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        out += [f"| {_md(m.vm)} | {_md(m.source)} | {_md(m.destination)} | {m.kind} | "
                f"{_fmt(m.imbalance_before)} | {_fmt(m.imbalance_after)} | {m.cost_s:.1f} | "
                f"{_md(m.reason)} |" for m in plan.moves]
        out.append("")
    if snapshot is not None and snapshot.hosts:
        out += ["## Host load", "", "| Host | CPU before | CPU after | Mem before | Mem after |",
                "| --- | --- | --- | --- | --- |"]
        out += [f"| {_md(r.host)} | {_pct(r.cpu_before, r.has_data)} | "
                f"{_pct(r.cpu_after, r.has_data)} | {_pct(r.mem_before, r.has_data)} | "
                f"{_pct(r.mem_after, r.has_data)} |" for r in host_loads(snapshot, plan)]
        out.append("")
    out += [f"- note: {_md(n)}" for n in plan.notes]
    out += [f"- unmovable: {_md(u.vm)} ({_md(u.rule)}): {_md(u.reason)}" for u in plan.unmovable]
    return "\n".join(out).rstrip() + "\n"
