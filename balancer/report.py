"""Pure renderers of a plan: terminal text, JSON, Markdown, one self-contained HTML file.

`host_loads()` replays the plan's moves over the snapshot so every renderer can show
per-host load before and after. The HTML has an inline SVG chart and no external
script, style sheet or font: it works offline.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from html import escape
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


def _summary(plan: Plan) -> str:
    return (f"imbalance {_fmt(plan.imbalance_before)} -> {_fmt(plan.imbalance_after)} "
            f"(target {_fmt(plan.target)}), {len(plan.moves)} move(s)")


def render_text(plan: Plan) -> str:
    """A plain fixed-width table for terminals and logs."""
    header = ("VM", "FROM", "TO", "KIND", "IMB BEFORE", "IMB AFTER", "COST S", "REASON")
    rows = [(m.vm, m.source, m.destination, m.kind, _fmt(m.imbalance_before),
             _fmt(m.imbalance_after), f"{m.cost_s:.1f}", m.reason) for m in plan.moves]
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header) - 1)]
    lines = [_summary(plan)]
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
    out = ["# DRS plan", "", _summary(plan), ""]
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


def _svg_chart(rows: list[HostLoad], title: str, before: str, after: str) -> str:
    """Grouped bars per host (before grey, after blue), a dashed line at 100%."""
    bar_px, gap_px, height_px, pad_px = 8, 6, 180, 30
    width_px = pad_px + len(rows) * (2 * bar_px + gap_px) + pad_px
    top = max([1.0] + [getattr(r, f) for r in rows for f in (before, after)])
    scale = height_px / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width_px}" '
             f'height="{height_px + 70}" role="img" aria-label="{escape(title)}">',
             f'<text x="{pad_px}" y="14" font-size="13">{escape(title)}</text>']
    base = height_px + 25
    for i, r in enumerate(rows):
        x = pad_px + i * (2 * bar_px + gap_px)
        for j, (field, colour) in enumerate(((before, "#9e9e9e"), (after, "#1e88e5"))):
            value = getattr(r, field)
            h = value * scale
            parts.append(f'<rect x="{x + j * bar_px}" y="{base - h:.1f}" width="{bar_px - 1}" '
                         f'height="{h:.1f}" fill="{colour}"><title>{escape(r.host)} '
                         f'{"before" if j == 0 else "after"}: {value:.0%}</title></rect>')
        parts.append(f'<text x="{x}" y="{base + 12}" font-size="9" transform="rotate(45 {x} '
                     f'{base + 12})">{escape(r.host[:16])}</text>')
    line_y = base - scale
    parts.append(f'<line x1="{pad_px}" x2="{width_px - pad_px}" y1="{line_y:.1f}" '
                 f'y2="{line_y:.1f}" stroke="#e53935" stroke-dasharray="4 3"/>')
    parts.append("</svg>")
    return "".join(parts)


_STYLE = ("body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}"
          ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}")


def render_html(plan: Plan, snapshot: ClusterSnapshot) -> str:
    """One self-contained HTML page: summary, load chart before/after, moves, notes."""
    rows = host_loads(snapshot, plan)
    moves = "".join(
        f"<tr><td>{escape(m.vm)}</td><td>{escape(m.source)}</td><td>{escape(m.destination)}"
        f"</td><td>{m.kind}</td><td>{_fmt(m.imbalance_before)}</td>"
        f"<td>{_fmt(m.imbalance_after)}</td><td>{m.cost_s:.1f}</td><td>{escape(m.reason)}</td>"
        "</tr>" for m in plan.moves)
    notes = "".join(f"<li>{escape(n)}</li>" for n in plan.notes)
    notes += "".join(f"<li>unmovable: {escape(u.vm)} ({escape(u.rule)}): {escape(u.reason)}"
                     "</li>" for u in plan.unmovable)
    charts = (_svg_chart(rows, "CPU load per host", "cpu_before", "cpu_after") + "<br>"
              + _svg_chart(rows, "Memory load per host", "mem_before", "mem_after")) if rows else ""
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>DRS plan</title>"
        f"<style>{_STYLE}</style></head><body><h1>DRS plan</h1><p>{escape(_summary(plan))}</p>"
        '<p class="legend"><span style="background:#9e9e9e"></span>before'
        '<span style="background:#1e88e5"></span>after'
        '<span style="background:#e53935"></span>100% of capacity</p>'
        f"{charts}<h2>Moves</h2><table><tr><th>VM</th><th>From</th><th>To</th><th>Kind</th>"
        "<th>Imbalance before</th><th>after</th><th>Cost (s)</th><th>Reason</th></tr>"
        f"{moves}</table>" + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + "</body></html>\n")
