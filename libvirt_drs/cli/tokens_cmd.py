"""`drs tokens create|list|revoke`: credentials of the REST API and the web console.

A thin adapter over libvirt_drs.operations.tokens."""

from __future__ import annotations

import click
from rich.table import Table

from libvirt_drs.cli.common import AppContext, console, err_console, json_option, pass_app, print_json


@click.group("tokens")
def tokens() -> None:
    """API tokens: each has a name (the audit log's actor) and a role (viewer reads;
    operator also migrates, applies plans, changes maintenance; admin also manages tokens)."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), default="viewer",
              show_default=True, help="What the token may do.")
@json_option
@pass_app
def create(app: AppContext, name: str, role: str, as_json: bool) -> None:
    """Create token NAME and print its secret: shown this once, only its hash is stored."""
    from libvirt_drs.operations import tokens as ops  # noqa: PLC0415

    record, secret = ops.create(app.cluster(), app.caller(), name, role)
    if as_json:
        print_json({"name": record.name, "role": record.role, "token": secret})
        return
    err_console.print(f"token {record.name} ({record.role}) created; store it now, it is not "
                      "shown again:", highlight=False, markup=False)
    click.echo(secret)


@tokens.command("list")
@json_option
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """Every token: name, role, created by and when, last use, revoked (never the secret)."""
    from libvirt_drs.operations import tokens as ops  # noqa: PLC0415
    from libvirt_drs.operations.views import iso  # noqa: PLC0415

    rows = ops.list_tokens(app.cluster(), app.caller())
    if as_json:
        print_json([{"name": t.name, "role": t.role, "created_at": iso(t.created_s),
                     "created_by": t.created_by, "last_used_at": iso(t.last_used_s),
                     "revoked_at": iso(t.revoked_s)} for t in rows])
        return
    table = Table()
    for col in ("name", "role", "created", "by", "last used", "revoked"):
        table.add_column(col, overflow="fold")
    for t in rows:
        table.add_row(t.name, t.role, (iso(t.created_s) or "")[:16], t.created_by,
                      (iso(t.last_used_s) or "never")[:16], (iso(t.revoked_s) or "")[:16])
    console.print(table)


@tokens.command("revoke")
@click.argument("name")
@json_option
@pass_app
def revoke(app: AppContext, name: str, as_json: bool) -> None:
    """Revoke token NAME: requests with it are refused from now on (401)."""
    from libvirt_drs.operations import tokens as ops  # noqa: PLC0415

    ops.revoke(app.cluster(), app.caller(), name)
    if as_json:
        print_json({"name": name, "revoked": True})
    else:
        console.print(f"token {name} revoked", highlight=False, markup=False)
