"""The demo's HTML report: self-contained, escaped, with the figures that matter."""

from __future__ import annotations

import json
from pathlib import Path

from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Move, Plan, VmState
from libvirt_drs.service.balance import ClusterLoads, Round
from libvirt_drs.service.report import MigrationRow, ReportData, run_as_plan, write_report


def _loads(cpu: dict[str, float], imbalance: float) -> ClusterLoads:
    return ClusterLoads(cpu=cpu, memory={h: v / 2 for h, v in cpu.items()},
                        vms={h: int(v * 10) for h, v in cpu.items()}, stale=(),
                        maintenance=(), capacity={h: (2.0, 4096.0) for h in cpu},
                        imbalance_cpu=imbalance, imbalance_memory=imbalance / 2,
                        imbalance=imbalance, target=0.115, eligible_hosts=len(cpu),
                        host_cpu_wait_cores={h: 0.0 for h in cpu},
                        host_vm_cpu_wait_max={h: 0.0 for h in cpu},
                        cpu_served=None)


def test_report_has_before_after_rounds_and_migrations(tmp_path: Path) -> None:
    before = _loads({"h1": 0.9, "h2": 0.0, "h3": 0.0}, 0.42)
    after = _loads({"h1": 0.3, "h2": 0.3, "h3": 0.3}, 0.02)
    rounds = [Round(1, 0.0, 0.42, 0.2, 0.115, 2, {"succeeded": 2}, before),
              Round(2, 10.0, 0.2, 0.05, 0.115, 2, {"succeeded": 1, "failed": 1}),
              Round(3, 20.0, 0.05, 0.05, 0.115, 0)]
    migrations = [MigrationRow("vm1", "h1", "h2", "succeeded", 700.0, 39.0, None),
                  MigrationRow("<script>", "h1", "h3", "failed", None, None, "a & b")]
    path = write_report(tmp_path / "r" / "demo.html", ReportData(
        "demo <lab>", 0.0, rounds, 3, before, after, migrations, 1.2, 42.0))
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<td><script>" not in text
    assert "&lt;script&gt;" in text and "a &amp; b" in text and "demo &lt;lab&gt;" in text
    assert "0.4200 &rarr; 0.0200" in text and "converged: round 3" in text
    assert "2 migration(s), 1 succeeded" in text and "longest heartbeat gap 1.2 s" in text
    block = text.split('<script type="application/json" id="drs-charts">')[1].split("</script>")[0]
    [chart] = json.loads(block)
    assert chart["kind"] == "imbalance" and chart["values"] == [0.42, 0.2, 0.05]
    assert chart["labels"] == ["1", "2", "3"] and chart["target"] == 0.115


def test_report_embeds_the_balancer_plan_report_of_the_run(tmp_path: Path) -> None:
    snap = ClusterSnapshot(
        hosts=(HostState("h1", 1.0, 2048), HostState("h2", 1.0, 2048)),
        vms=(VmState("vm1", "h1", 0.4, 256), VmState("vm2", "h1", 0.4, 256)))
    move = Move("vm1", "h1", "h2", "balancing", "h1 hot", 0.4, 0.0, 1.0)
    failed = Move("vm2", "h1", "h2", "balancing", "h1 hot", 0.4, 0.2, 1.0)
    plan = Plan((move, failed), 0.4, 0.0, 0.14)
    rnd = Round(1, 0.0, 0.4, 0.0, 0.14, 2, {"succeeded": 1, "failed": 1}, None, snap, plan,
                {"vm1": "succeeded", "vm2": "failed"})
    after = _loads({"h1": 0.4, "h2": 0.4}, 0.0)
    assert run_as_plan([rnd], after).moves == (move,)
    text = write_report(tmp_path / "demo.html", ReportData(
        "demo", 0.0, [rnd], None, _loads({"h1": 0.8, "h2": 0.0}, 0.4), after, [], None, 5.0,
        snapshot=snap)).read_text()
    assert text.count("<body>") == 1 and text.count("</html>") == 1
    assert "The run as one plan" in text and "CPU load per host, before and after" in text
    assert "<td>vm1</td><td>h1</td><td>h2</td>" in text and "<td>vm2</td><td>h1</td>" not in text
    assert "not converged" in text
