"""Self-contained HTML reports with the console's charts: `drs recommend --format html`
(a plan: load per host before and after, the moves with their reasons) and the demo's
run report (libvirt_drs/service/report.py adds its sections to the same page).

One file that works offline: the console's style sheet, Chart.js and the console's chart
code are inlined, the chart data is a JSON block, every value is escaped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from libvirt_drs.balancer.model import ClusterSnapshot, Plan
from libvirt_drs.balancer.report import host_loads, summary

STATIC = Path(__file__).resolve().parent / "static"


def _inline(name: str) -> str:
    # a script's text may not close its own element
    return (STATIC / name).read_text(encoding="utf-8").replace("</script", "<\\/script")


def _json(data: Any) -> str:
    return json.dumps(data).replace("</", "<\\/")


def _num(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


@dataclass
class Page:
    """A report page being built: sections of escaped HTML and chart specs (charts.js)."""

    title: str
    sections: list[str] = field(default_factory=list)
    charts: list[dict[str, Any]] = field(default_factory=list)

    def chart(self, spec: dict[str, Any], caption: str) -> str:
        canvas = f"chart-{len(self.charts) + 1}"
        self.charts.append({**spec, "canvas": canvas})
        return (f'<figure><figcaption>{escape(caption)}</figcaption><div class="chart">'
                f'<canvas id="{canvas}"></canvas></div></figure>')

    def load_chart(self, title: str, hosts: list[str], series: list[tuple[str, list[float | None], str]]
                   ) -> str:
        return self.chart({"kind": "load", "title": title, "hosts": hosts,
                           "series": [{"label": label, "values": values, "colour": colour}
                                      for label, values, colour in series]}, title)

    def imbalance_chart(self, title: str, labels: list[str], x_title: str,
                        values: list[float | None], target: float | None) -> str:
        return self.chart({"kind": "imbalance", "title": title, "labels": labels,
                           "x_title": x_title, "values": values, "target": target}, title)

    def render(self) -> str:
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{escape(self.title)}</title><style>{(STATIC / 'console.css').read_text()}"
                "</style></head><body><main>" + "".join(self.sections)
                + f'<script type="application/json" id="drs-charts">{_json(self.charts)}</script>'
                f"<script>{_inline('vendor/chart.umd.min.js')}</script>"
                f"<script>{_inline('charts.js')}</script></main></body></html>\n")


def plan_sections(page: Page, plan: Plan, snapshot: ClusterSnapshot) -> None:
    """The plan: its summary, load per host before and after, the moves, notes."""
    rows = host_loads(snapshot, plan)
    hosts = [r.host for r in rows]

    def values(attr: str) -> list[float | None]:
        return [_num(getattr(r, attr)) if r.has_data else None for r in rows]

    charts = ""
    if rows:
        charts = ('<section class="charts">'
                  + page.load_chart("CPU load per host, before and after the plan", hosts, [
                      ("before", values("cpu_before"), "#9e9e9e"),
                      ("after", values("cpu_after"), "#1e88e5")])
                  + page.load_chart("Memory load per host, before and after the plan", hosts, [
                      ("before", values("mem_before"), "#9e9e9e"),
                      ("after", values("mem_after"), "#1e88e5")])
                  + "</section>")
    moves = "".join(
        f"<tr><td>{escape(m.vm)}</td><td>{escape(m.source)}</td><td>{escape(m.destination)}"
        f"</td><td>{escape(m.kind)}</td><td>{_fmt(m.imbalance_before)} &rarr; "
        f"{_fmt(m.imbalance_after)}</td><td>{m.cost_s:.1f}</td><td>{escape(m.reason)}</td></tr>"
        for m in plan.moves)
    notes = "".join(f"<li>{escape(n)}</li>" for n in plan.notes)
    notes += "".join(f"<li>unmovable: {escape(u.vm)} ({escape(u.rule)}): {escape(u.reason)}</li>"
                     for u in plan.unmovable)
    page.sections.append(
        f"<p>{escape(summary(plan))}</p>{charts}<h2>Moves</h2>"
        "<table><tr><th>VM</th><th>from</th><th>to</th><th>kind</th><th>imbalance</th>"
        f"<th>cost (s)</th><th>reason</th></tr>{moves}</table>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""))


def _fmt(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4f}"


def plan_html(plan: Plan, snapshot: ClusterSnapshot, title: str = "DRS plan") -> str:
    page = Page(title, [f"<h1>{escape(title)}</h1>"])
    plan_sections(page, plan, snapshot)
    return page.render()
