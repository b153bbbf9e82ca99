"""The HTML report of a service run (`drs demo`).

What only the service knows comes first: measured loads before and after, the imbalance
round by round against its target (a chart), and every migration with its result and
downtime. Then the run as one plan (libvirt_drs/web/reports.py, the same page as `drs
recommend --format html`): the moves carried out, replayed over the first round's
snapshot, with the load charts before and after. One self-contained file (the console's
charts and styles inlined, every value escaped) that can be mailed or attached to a
ticket as it is.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from libvirt_drs.balancer.model import ClusterSnapshot, Plan
from libvirt_drs.files import write_private
from libvirt_drs.migrator.model import JobState
from libvirt_drs.service.balance import ClusterLoads, Round
from libvirt_drs.web.reports import Page, plan_sections


class MigrationRow(NamedTuple):
    vm_name: str
    source: str
    destination: str
    state: str
    total_ms: float | None
    downtime_ms: float | None
    error: str | None


@dataclass(frozen=True)
class ReportData:
    title: str
    created_s: float
    rounds: list[Round]
    converged_round: int | None
    before: ClusterLoads
    after: ClusterLoads
    migrations: list[MigrationRow]
    heartbeat_max_gap_s: float | None
    duration_s: float
    snapshot: ClusterSnapshot | None = None  # the cluster at the first round


def run_as_plan(rounds: list[Round], after: ClusterLoads) -> Plan:
    """The whole run as one plan: every move carried out, first imbalance to the last."""
    moves = tuple(m for r in rounds for m in r.carried_out())
    first = rounds[0].imbalance_before if rounds else after.imbalance
    return Plan(moves=moves, imbalance_before=first, imbalance_after=after.imbalance,
                target=after.target,
                notes=(f"{len(rounds)} balance round(s) of drs serve; the moves listed are the "
                       "migrations that succeeded, the loads after are replayed from the "
                       "first round's snapshot (measured loads below).",))


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _hosts_table(before: ClusterLoads, after: ClusterLoads) -> str:
    rows = []
    for h in sorted(set(before.cpu) | set(after.cpu)):
        rows.append(
            f"<tr><td>{_e(h)}</td><td>{_pct(before.cpu.get(h))}</td>"
            f"<td>{_pct(after.cpu.get(h))}</td><td>{_pct(before.memory.get(h))}</td>"
            f"<td>{_pct(after.memory.get(h))}</td><td>{before.vms.get(h, 0)}</td>"
            f"<td>{after.vms.get(h, 0)}</td></tr>")
    return ("<table><tr><th>host</th><th>CPU before</th><th>CPU after</th><th>memory before"
            "</th><th>memory after</th><th>VMs before</th><th>VMs after</th></tr>"
            + "".join(rows) + "</table>")


def _rounds_table(rounds: list[Round]) -> str:
    rows = []
    for i, r in enumerate(rounds):
        outcomes = ", ".join(f"{v} {k}" for k, v in sorted(r.outcomes.items())) or "-"
        rows.append(f"<tr><td>{i + 1}</td><td>{r.plan_id}</td><td>{r.imbalance_before:.4f}</td>"
                    f"<td>{r.imbalance_after:.4f}</td><td>{r.target:.4f}</td><td>{r.moves}</td>"
                    f"<td>{_e(outcomes)}</td></tr>")
    return ("<table><tr><th>round</th><th>plan</th><th>imbalance</th><th>planned after</th>"
            "<th>target</th><th>moves</th><th>outcomes</th></tr>" + "".join(rows) + "</table>")


def _migrations_table(migrations: list[MigrationRow]) -> str:
    if not migrations:
        return "<p>No migration.</p>"
    rows = []
    for m in migrations:
        cls = "ok" if m.state == JobState.SUCCEEDED else "bad"
        rows.append(f"<tr><td>{_e(m.vm_name)}</td><td>{_e(m.source)}</td>"
                    f"<td>{_e(m.destination)}</td><td class=\"{cls}\">{_e(m.state)}</td>"
                    f"<td>{_ms(m.total_ms)}</td><td>{_ms(m.downtime_ms)}</td>"
                    f"<td>{_e(m.error or '')}</td></tr>")
    return ("<table><tr><th>VM</th><th>from</th><th>to</th><th>result</th><th>total ms</th>"
            "<th>downtime ms</th><th>error</th></tr>" + "".join(rows) + "</table>")


def render_html(data: ReportData) -> str:
    b, a = data.before, data.after
    ok = sum(1 for m in data.migrations if m.state == JobState.SUCCEEDED)
    conv = (f'<span class="ok">converged: round {data.converged_round} found the imbalance '
            "under target</span>" if data.converged_round else
            '<span class="bad">not converged within the rounds allowed</span>')
    gap = ("" if data.heartbeat_max_gap_s is None else
           f"<li>guests ran throughout: longest heartbeat gap "
           f"{data.heartbeat_max_gap_s:.1f} s</li>")
    downtimes = [m.downtime_ms for m in data.migrations if m.downtime_ms is not None]
    down = f"<li>downtime: max {max(downtimes):.0f} ms</li>" if downtimes else ""
    page = Page(data.title)
    rounds = ("<p>No balance round ran.</p>" if not data.rounds else page.imbalance_chart(
        "Imbalance at the start of each balance round, against the target",
        [str(i + 1) for i in range(len(data.rounds))], "balance round",
        [r.imbalance_before for r in data.rounds],
        next((r.target for r in reversed(data.rounds) if math.isfinite(r.target)), None)))
    page.sections.append(
        f"<h1>{_e(data.title)}</h1>"
        f"<p>{_e(time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(data.created_s)))}; "
        f"{data.duration_s:.0f} s of <code>drs serve</code> in automatic mode.</p>"
        f"<ul><li>imbalance {b.imbalance:.4f} &rarr; {a.imbalance:.4f} (target "
        f"{a.target:.4f})</li><li>{conv}</li><li>{len(data.migrations)} migration(s), {ok} "
        f"succeeded</li>{down}{gap}</ul>"
        f"<h2>Hosts before and after (measured)</h2>{_hosts_table(b, a)}"
        f'<h2>Imbalance per round</h2><section class="charts">{rounds}</section>'
        f"{_rounds_table(data.rounds)}"
        f"<h2>Migrations</h2>{_migrations_table(data.migrations)}")
    if data.snapshot is not None:
        page.sections.append("<hr><h1>The run as one plan</h1>")
        plan_sections(page, run_as_plan(data.rounds, a), data.snapshot)
    return page.render()


def write_report(path: Path, data: ReportData) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, render_html(data))
    return path
