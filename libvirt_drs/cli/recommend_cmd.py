"""`drs recommend`: what the balancer would do now (dry run, never migrates).

A thin adapter over libvirt_drs.operations.moves.recommend; the renderers are the
balancer's (balancer/report.py)."""

from __future__ import annotations

from pathlib import Path

import click

from libvirt_drs.cli.common import AppContext, console, pass_app
from libvirt_drs.errors import UserError

FORMATS = ("table", "json", "markdown", "html")


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format; html is one self-contained file with the console's load "
                   "charts (works offline).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file (mode 0600, atomically; an existing symlink "
                   "or device is refused) instead of stdout.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@pass_app
def recommend(app: AppContext, fmt: str, output: Path | None, as_json: bool) -> None:
    """Plan from the latest samples and print the moves with their reasons (never migrates)."""
    from libvirt_drs.balancer import report  # noqa: PLC0415
    from libvirt_drs.files import write_private  # noqa: PLC0415
    from libvirt_drs.operations import moves  # noqa: PLC0415

    fmt = "json" if as_json else fmt
    if fmt == "html" and output is None:
        raise UserError("--format html needs --output FILE")
    planned = moves.recommend(app.cluster(), app.caller())
    plan, snapshot = planned.plan, planned.snapshot
    if fmt == "json":
        text = report.render_json(plan)
    elif fmt == "markdown":
        text = report.render_markdown(plan, snapshot)
    elif fmt == "html":
        from libvirt_drs.web.reports import plan_html  # noqa: PLC0415

        text = plan_html(plan, snapshot)
    else:
        text = report.render_text(plan)
    if output is not None:
        write_private(output, text)
        console.print(f"report written to {output}", highlight=False)
    else:
        click.echo(text, nl=False)
