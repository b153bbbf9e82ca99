"""`drs bench dr-soak`: replication at an RPO for minutes on a lab of its own, then the
loss of the primary site and its failover, with the data lost measured per guest (a
benchmark, not a test; libvirt_drs/lab/dr_soak.py). Attached to the `bench` group by the
CLI wiring."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from libvirt_drs.cli.common import console, err_console, print_json
from libvirt_drs.errors import UserError
from libvirt_drs.files import write_private


@click.command("dr-soak")
@click.option("--minutes", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="How long to replicate before the primary site is killed.")
@click.option("--rpo-s", type=click.FloatRange(min=2.0), default=30.0, show_default=True,
              help="The protection policy's recovery point objective (a point every half).")
@click.option("--guests", type=click.IntRange(1, 8), default=4, show_default=True,
              help="Protected guests on site A (h1 and h2 alternately); site B is h3.")
@click.option("--disk-mib", type=click.IntRange(min=8), default=32, show_default=True,
              help="Each guest's data disk, written every heartbeat.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Also write the figures as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def dr_soak(minutes: float, rpo_s: float, guests: int, disk_mib: int, output: str | None,
            as_json: bool) -> None:
    """Replicate disk-writing lab guests from site A (2 hosts) to site B (1 host) for
    MINUTES at RPO_S, sampling every guest's recovery-point age each second; then kill
    site A without warning, fail it over and read each guest's lost writes from its disk.

    Starts its own 3-host lab (root, the lab's Debian packages) and takes it down after.
    Exit 0 when the age stayed under the RPO at p95 and every guest came back beating with
    at most RPO_S of writes lost, 1 when not (the figures say which), 2 on a usage or lab
    error."""
    from libvirt_drs.lab import dr_soak as soak  # noqa: PLC0415 - keeps `drs --help` light

    if os.geteuid() != 0:
        raise UserError("drs bench dr-soak needs root (it starts a lab)")
    spec = soak.DrSoakSpec(duration_s=minutes * 60, rpo_s=rpo_s, guests=guests,
                           disk_mib=disk_mib)
    lab = soak.start_lab(spec)
    try:
        with Progress(TextColumn("replicating"), BarColumn(), TextColumn("{task.fields[status]}"),
                      TimeElapsedColumn(), console=err_console, transient=as_json) as progress:
            task = progress.add_task("soak", total=spec.duration_s, status="")

            def step(left_s: float, status: str) -> None:
                progress.update(task, completed=spec.duration_s - left_s, status=status)

            result = soak.run(lab, spec, on_progress=step)
    finally:
        lab.down()
    summary = result.summary()
    if output:
        write_private(Path(output), json.dumps(summary, indent=2) + "\n")
    if as_json:
        print_json(summary)
    else:
        _print(summary)
    if not result.clean:
        raise SystemExit(1)


def _print(summary: dict[str, object]) -> None:
    table = Table(title="disaster recovery soak")
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    for key in ("recovery_point_age_s", "age_samples", "points", "failed_points",
                "bytes_sent", "failover_s", "all_beating_s", "wall_s", "clean"):
        value = summary.get(key)
        if isinstance(value, dict):
            value = "  ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)
    guests = Table(title="per guest after the failover")
    for col in ("vm", "last write on A", "found on B", "writes lost", "s lost", "point age s",
                "beating"):
        guests.add_column(col)
    for g in summary["guests"]:  # type: ignore[attr-defined]
        guests.add_row(g["vm"], str(g["last_written"]), str(g["found_at_boot"]),
                       str(g["lost_writes"]), str(g["lost_s"]), str(g["point_age_s"]),
                       "yes" if g["resumed"] else "NO")
    console.print(guests)
    for error in summary.get("errors") or []:  # type: ignore[attr-defined]
        console.print(f"error: {error}", markup=False, highlight=False)
