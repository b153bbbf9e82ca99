"""The short version of the disaster recovery soak (`drs bench dr-soak`, docs/replication.md):
4 guests writing their disks on site A (h1, h2), replicated to site B (h3) for a minute at an
RPO of 10 s; the recovery-point age stays under the RPO at p95; then site A is killed and
failed over: every guest beats again on h3 with at most the RPO of writes lost, read from
its own disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from libvirt_drs.cli import cli
from libvirt_drs.lab import dr_soak


def test_the_rpo_holds_and_a_killed_site_fails_over_within_it(
        make_lab: Callable[..., Any]) -> None:
    spec = dr_soak.DrSoakSpec(duration_s=60, rpo_s=10, guests=4)
    lab = make_lab(n_hosts=3, n_vms=4, placement_text="h1,h2,h1,h2", storage="per-host",
                   disk_mib=spec.disk_mib, burn=str(spec.burn_pct))
    try:
        result = dr_soak.run(lab, spec)
    finally:
        lab.down()
    summary = result.summary()
    assert result.clean, json.dumps(summary, indent=1)
    assert summary["age_samples"] >= 4 * 50 and result.points >= 4 * 8
    assert [g["resumed"] for g in summary["guests"]] == [True] * 4
    assert all(g["lost_s"] <= 10 for g in summary["guests"])


def test_dr_soak_command_is_registered_and_checks_its_options() -> None:
    help_text = CliRunner().invoke(cli, ["bench", "dr-soak", "--help"]).output
    for option in ("--minutes", "--rpo-s", "--guests", "--json", "--output"):
        assert option in help_text
    assert CliRunner().invoke(cli, ["bench", "dr-soak", "--guests", "0"]).exit_code == 2
