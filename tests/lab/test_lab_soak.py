"""The short version of the migration soak (`drs bench migrate-soak`, docs/lab.md): a few
consecutive live migrations, half of them bandwidth-capped, of a burning guest that checks
its own memory, with two busy processes on the machine. Every migration must leave the
guest beating, with no reboot, no oops, no memory mismatch and no pause of 1 s or more."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from libvirt_drs.lab import heartbeat, soak


def test_guests_survive_consecutive_migrations_under_load(make_lab: Callable[..., Any]) -> None:
    spec = soak.SoakSpec(migrations=4, guests=1, capped_every=2, bandwidth_mib_s=48, busy=2)
    lab = make_lab(n_hosts=2, n_vms=1, placement_text="even", burn=str(spec.burn_pct),
                   mem=str(spec.mem_mib), touch=str(spec.touch_mib),
                   dirty_mib_s=spec.dirty_mib_s, heartbeat_ms=spec.heartbeat_ms)
    try:
        result = soak.run(lab, spec)
        beats = heartbeat.read(lab.serial_log("vm1"))
    finally:
        lab.down()
    summary = result.summary()
    assert result.clean, json.dumps(summary, indent=1)
    assert summary["migrations"] == 4 and summary["capped"] == 2
    assert beats and beats[-1].mem_errors == 0  # the self-check ran and found nothing


def test_soak_command_is_registered_and_checks_its_options() -> None:
    from click.testing import CliRunner

    from libvirt_drs.cli import cli

    help_text = CliRunner().invoke(cli, ["bench", "migrate-soak", "--help"]).output
    for option in ("--migrations", "--bandwidth-mib-s", "--capped-every", "--busy", "--json", "--output"):
        assert option in help_text
    bad = CliRunner().invoke(cli, ["bench", "migrate-soak", "--migrations", "0"])
    assert bad.exit_code == 2
