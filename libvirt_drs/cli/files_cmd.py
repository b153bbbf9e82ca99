"""`drs files`: where the installed package keeps its deploy files, and a copy of them."""

from __future__ import annotations

from pathlib import Path

import click

from libvirt_drs.cli.common import console, json_option, print_json


@click.command("files")
@click.option("--copy-to", "copy_to", type=click.Path(file_okay=False, path_type=Path),
              metavar="DIR", help="Copy them into DIR (created if missing; nothing is "
                                  "overwritten).")
@json_option
def files(copy_to: Path | None, as_json: bool) -> None:
    """The deploy files this installation ships: example config, systemd unit, Prometheus
    config and alert rules, Grafana dashboards and provisioning (docs/production.md)."""
    from libvirt_drs import deploy_files  # noqa: PLC0415

    if copy_to is not None:
        copied = deploy_files.copy_to(copy_to)
        if as_json:
            print_json({"copied": [str(p) for p in copied]})
        else:
            console.print(f"{len(copied)} file(s) copied to {copy_to}", highlight=False)
        return
    found = deploy_files.deploy_files()
    if as_json:
        print_json({f.key: str(f.path) for f in found})
        return
    for f in found:
        console.print(f"{f.key:22} {f.path}{'' if f.present else '  (missing)'}",
                      highlight=False, markup=False)
