"""The `drs` command: explicit registration of every subcommand group."""

from __future__ import annotations

import logging
import sys

import click

from libvirt_drs import __version__
from libvirt_drs.cli.common import AppContext, err_console
from libvirt_drs.errors import UserError
from libvirt_drs.secrets import redact


class DrsGroup(click.Group):
    """Turns UserError into one line on stderr and exit code 2; never a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except UserError as exc:
            err_console.print(f"drs: error: {redact(str(exc))}", markup=False, highlight=False,
                              soft_wrap=True)
            ctx.exit(exc.exit_code)


@click.group(cls=DrsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drs")
@click.option("--config", "config_path", metavar="PATH", envvar="DRS_CONFIG",
              help="Config file (default ./drs.toml; env DRS_CONFIG).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """libvirt-drs: keep a libvirt/KVM cluster balanced by live-migrating VMs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = AppContext(config_path)


def _register() -> None:
    from libvirt_drs.cli import (  # noqa: PLC0415 - the group exists before its commands import it
        balance_cmd,
        bench_collect,
        bench_soak,
        collect_cmd,
        config_cmd,
        db_cmd,
        hosts_cmd,
        lab_cmd,
        migrate_cmd,
        plans_cmd,
        recommend_cmd,
        serve_cmd,
    )

    commands = (config_cmd.config, db_cmd.db, lab_cmd.lab, collect_cmd.collect,
                collect_cmd.status, *migrate_cmd.COMMANDS, *hosts_cmd.COMMANDS,
                *plans_cmd.COMMANDS, *serve_cmd.COMMANDS,
                balance_cmd.simulate_cmd, balance_cmd.bench, recommend_cmd.recommend)
    for command in commands:
        cli.add_command(command)
    balance_cmd.bench.add_command(bench_collect.collect)
    balance_cmd.bench.add_command(bench_soak.migrate_soak)


_register()


def main() -> None:
    try:
        cli.main(prog_name="drs", standalone_mode=True)
    except KeyboardInterrupt:
        err_console.print("drs: interrupted")
        sys.exit(130)
