"""`drs config check`: validate a config file."""

from __future__ import annotations

import click

from libvirt_drs.cli.common import AppContext, console, json_option, pass_app, print_json
from libvirt_drs.config import as_dict
from libvirt_drs.errors import UserError
from libvirt_drs.secrets import redact


@click.group()
def config() -> None:
    """Inspect and validate the configuration file."""


@config.command("check")
@json_option
@pass_app
def check(app: AppContext, as_json: bool) -> None:
    """Validate the config file; print a summary or the first error (exit 2)."""
    cfg = app.config
    if not cfg.hosts:
        raise UserError(f"{cfg.path}: hosts: no [[hosts]] configured: there is nothing to "
                        "balance (see deploy/drs.example.toml)")
    if as_json:
        data = as_dict(cfg)
        data["database_url"] = redact(cfg.database_url)
        print_json(data)
        return
    console.print(f"{cfg.path}: OK", highlight=False)
    console.print(f"  database: {redact(cfg.database_url)}", highlight=False, markup=False)
    console.print(f"  hosts: {len(cfg.hosts)}; balancer: {cfg.balancer.mode}, "
                  f"aggressiveness {cfg.balancer.policy.aggressiveness}; rules: "
                  f"{len(cfg.rules.affinity)} affinity, {len(cfg.rules.anti_affinity)} anti-affinity, "
                  f"{len(cfg.rules.vm_host)} vm-host", highlight=False)
    policies = cfg.replication.policies
    if policies:
        console.print(f"  replication: {len(policies)} polic{'y' if len(policies) == 1 else 'ies'}"
                      f", {sum(len(p.vms) for p in policies)} protected VM(s)", highlight=False)
