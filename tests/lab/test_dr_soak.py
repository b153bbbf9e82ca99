"""The short version of the disaster recovery soak (`drs bench dr-soak`, docs/replication.md):
4 guests writing their disks on site A (h1, h2), replicated to site B (h3) for a minute at an
RPO of 10 s; the recovery-point age stays under the RPO at p95; then site A is killed and
failed over: every guest beats again on h3 with at most the RPO of writes lost, read from
its own disk. Then site A comes back: replication runs in reverse, all 4 fail back to site A
with no write lost, and protection to site B runs again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from libvirt_drs.cli import cli
from libvirt_drs.lab import dr_soak


def test_the_rpo_holds_a_killed_site_fails_over_within_it_and_all_fail_back(
        make_lab: Callable[..., Any], tmp_path: Path) -> None:
    spec = dr_soak.DrSoakSpec(duration_s=60, rpo_s=10, guests=4)
    lab = make_lab(n_hosts=3, n_vms=4, placement_text="h1,h2,h1,h2", storage="per-host",
                   disk_mib=spec.disk_mib, burn=str(spec.burn_pct))
    try:
        result = dr_soak.run(lab, spec, workdir=tmp_path)
        summary = result.summary()
        assert result.clean, json.dumps(summary, indent=1)
        assert summary["age_samples"] >= 4 * 50 and result.points >= 4 * 8
        assert [g["resumed"] for g in summary["guests"]] == [True] * 4
        assert all(g["lost_s"] <= 10 for g in summary["guests"])
        _fail_back_all(lab, tmp_path)
    finally:
        lab.down()


def _fail_back_all(lab: Any, workdir: Path) -> None:
    import libvirt  # noqa: PLC0415

    from libvirt_drs import config as config_mod  # noqa: PLC0415
    from libvirt_drs.db.engine import make_engine  # noqa: PLC0415
    from libvirt_drs.lab import heartbeat  # noqa: PLC0415
    from libvirt_drs.operations import replication as ops  # noqa: PLC0415
    from libvirt_drs.operations.caller import cli_caller  # noqa: PLC0415
    from libvirt_drs.operations.context import Cluster  # noqa: PLC0415

    for name in ("h1", "h2"):
        lab.start_host(name)  # the site is back (its old guests stay off)
    cfg = config_mod.load(str(workdir / "drs.toml"))
    cl = Cluster(cfg, make_engine(cfg.database_url), actor="test")
    try:
        reverse = ops.replicate(cl, cli_caller())  # in reverse: from h3 onto site A
        assert [o.error for o in reverse] == [""] * 4
        assert {o.point.source_host for o in reverse if o.point} == {"h3"}
        assert {o.point.recovery_host for o in reverse if o.point} == {"h1", "h2"}  # by room
        logs = {vm.name: vm.serial_log for vm in lab.vms}
        boots = {vm: len(heartbeat.disk_starts(log)) for vm, log in logs.items()}
        back = ops.failback(cl, cli_caller(), "site-a")
        assert back.failed == () and len(back.started) == 4, back
        for vm, log in logs.items():
            health = heartbeat.wait_alive(log, 120, beats=3)  # a planned move boots it anew
            assert health.resumed and health.oops is None and not health.mem_errors, (vm, health)
            start = heartbeat.disk_starts(log)[boots[vm]]
            before = heartbeat.last_before_boot(log)
            assert before is not None
            # no write lost: it boots on the counter it last printed (+1: written, not printed)
            assert before.disk_writes <= start <= before.disk_writes + 1, (vm, before, start)
        on_b = libvirt.open(lab.hosts[2].uri).listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        assert on_b == []  # each runs once: on site A
        protected = ops.replicate(cl, cli_caller())  # protection to site B runs again
        assert [(o.error, o.point.recovery_host if o.point else "") for o in protected] == \
            [("", "h3")] * 4
    finally:
        cl.close()


def test_dr_soak_command_is_registered_and_checks_its_options() -> None:
    help_text = CliRunner().invoke(cli, ["bench", "dr-soak", "--help"]).output
    for option in ("--minutes", "--rpo-s", "--guests", "--json", "--output"):
        assert option in help_text
    assert CliRunner().invoke(cli, ["bench", "dr-soak", "--guests", "0"]).exit_code == 2
