"""`drs bench migrate-soak`: consecutive live migrations on a lab of its own, guests judged
after each one (a benchmark, not a test; libvirt_drs/lab/soak.py). Standalone click command;
attached to the `bench` group by the CLI wiring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from libvirt_drs.cli.common import console, err_console, print_json
from libvirt_drs.errors import UserError
from libvirt_drs.files import write_private


@click.command("migrate-soak")
@click.option("--migrations", type=click.IntRange(min=1), default=200, show_default=True,
              help="Consecutive live migrations.")
@click.option("--guests", type=click.IntRange(1, 8), default=2, show_default=True,
              help="Guests migrated in turn between the lab's two hosts.")
@click.option("--mem-mib", type=click.IntRange(min=128), default=256, show_default=True,
              help="Guest RAM, MiB.")
@click.option("--touch-mib", type=click.IntRange(min=0), default=128, show_default=True,
              help="Guest memory filled with a checked pattern, MiB.")
@click.option("--dirty-mib-s", type=click.IntRange(min=0), default=8, show_default=True,
              help="MiB/s each guest rewrites (and verifies) in that memory.")
@click.option("--burn", type=click.IntRange(0, 100), default=20, show_default=True,
              help="CPU burn of each guest, percent of one core.")
@click.option("--capped-every", type=click.IntRange(min=0), default=2, show_default=True,
              help="Cap every Nth migration's bandwidth (2 = half of them; 0 = none).")
@click.option("--bandwidth-mib-s", type=click.IntRange(min=1), default=28, show_default=True,
              help="Bandwidth cap of the capped migrations, MiB/s.")
@click.option("--busy", type=click.IntRange(min=0), default=2, show_default=True,
              help="Extra busy processes loading the machine during the soak.")
@click.option("--heartbeat-ms", type=click.IntRange(50, 1000), default=200, show_default=True,
              help="Guest heartbeat period, ms (pauses are measured between heartbeats).")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Also write the JSON figures to this file (mode 0600).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def migrate_soak(migrations: int, guests: int, mem_mib: int, touch_mib: int, dirty_mib_s: int,
                 burn: int, capped_every: int, bandwidth_mib_s: int, busy: int,
                 heartbeat_ms: int, output: str | None, as_json: bool) -> None:
    """Live-migrate burning, memory-checking lab guests back and forth under load.

    Starts its own 2-host lab (root, the lab's Debian packages), runs the migrations with
    BUSY extra processes on the machine, and judges every guest after every migration: it
    must keep beating, with no reboot, no kernel oops, no memory mismatch reported by the
    guest's own check, and no pause of 1 s or more. Exit 0 when all of that holds, 1 when
    not (the figures say which), 2 on a usage or lab error.
    """
    from libvirt_drs.lab import soak  # noqa: PLC0415 - keeps `drs --help` light

    if os.geteuid() != 0:
        raise UserError("drs bench migrate-soak needs root (it starts a lab)")
    spec = soak.SoakSpec(migrations=migrations, guests=guests, mem_mib=mem_mib,
                         touch_mib=touch_mib, dirty_mib_s=dirty_mib_s, burn_pct=burn,
                         capped_every=capped_every, bandwidth_mib_s=bandwidth_mib_s, busy=busy,
                         heartbeat_ms=heartbeat_ms)
    lab = soak.start_lab(spec)
    try:
        with Progress(TextColumn("migrations"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                      console=err_console, transient=as_json) as progress:
            task = progress.add_task("soak", total=migrations, status="")
            lost = 0

            def step(figure: soak.MigrationFigure) -> None:
                nonlocal lost
                lost += figure.problem is not None
                progress.update(task, advance=1, status=(
                    f"{figure.vm} {figure.source}->{figure.destination} "
                    f"{figure.total_s:.1f} s, problems {lost}"))

            result = soak.run(lab, spec, on_migration=step)
    finally:
        lab.down()
    summary = result.summary()
    if output:
        write_private(Path(output), json.dumps(summary, indent=2) + "\n")
    if as_json:
        print_json(summary)
    else:
        _print_table(summary)
    if not result.clean:
        raise SystemExit(1)


def _print_table(summary: dict[str, object]) -> None:
    table = Table(title="migration soak")
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    for key in ("qemu", "libvirt", "migrations", "failed_migrations", "capped", "uncapped",
                "capped_total_s", "uncapped_total_s", "downtime_ms", "heartbeat_gap_s_max",
                "heartbeat_gaps_over_1s", "crashes", "memory_mismatches", "stopped", "wall_s",
                "load_avg_1m"):
        value = summary.get(key)
        if isinstance(value, dict):
            value = "  ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)
    for problem in summary.get("problems") or []:  # type: ignore[attr-defined]
        console.print(f"problem: {problem}", markup=False, highlight=False)
