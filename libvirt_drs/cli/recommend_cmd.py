"""`drs recommend`: what the balancer would do now (dry run, never migrates)."""

from __future__ import annotations

from pathlib import Path

import click

from libvirt_drs.balancer import report
from libvirt_drs.balancer.planner import plan as make_plan
from libvirt_drs.cli.common import AppContext, console, pass_app
from libvirt_drs.db import schema
from libvirt_drs.db.engine import make_engine
from libvirt_drs.db.snapshot import load_snapshot
from libvirt_drs.errors import UserError
from libvirt_drs.files import write_private
from libvirt_drs.policy import policy_from_config

FORMATS = ("table", "json", "markdown", "html")


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format; html is one self-contained file with a load chart.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file (mode 0600) instead of stdout.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@pass_app
def recommend(app: AppContext, fmt: str, output: Path | None, as_json: bool) -> None:
    """Plan from the latest samples and print the moves with their reasons (never migrates)."""
    cfg = app.config
    if not cfg.hosts:
        raise UserError(f"{cfg.path}: hosts: no hosts configured, nothing to plan")
    engine = make_engine(cfg.database_url)
    schema.require_current(engine)
    snapshot = load_snapshot(engine, cfg)
    if not any(h.eligible for h in snapshot.hosts):
        raise UserError("no host has fresh samples: run `drs collect --once` first")
    plan = make_plan(snapshot, policy_from_config(cfg))
    fmt = "json" if as_json else fmt
    if fmt == "json":
        text = report.render_json(plan)
    elif fmt == "markdown":
        text = report.render_markdown(plan, snapshot)
    elif fmt == "html":
        text = report.render_html(plan, snapshot)
    else:
        text = report.render_text(plan)
    if output is not None:
        write_private(output, text)
        console.print(f"report written to {output}", highlight=False)
    elif fmt == "html":
        raise UserError("--format html needs --output FILE")
    else:
        click.echo(text, nl=False)
