"""The `drs` command: explicit registration of every subcommand group."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from libvirt_drs import __version__
from libvirt_drs.cli.common import AppContext, err_console
from libvirt_drs.errors import UserError
from libvirt_drs.secrets import redact


def _one_line(text: str) -> None:
    err_console.print(f"drs: error: {redact(' '.join(text.split()))}", markup=False,
                      highlight=False, soft_wrap=True)


class DrsGroup(click.Group):
    """Every error is one line on stderr, never a traceback: a UserError exits 2, and so
    does a usage error (click's own three-line form is replaced)."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _one_line(str(exc))
            ctx.exit(exc.exit_code)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        run: Any = super().main
        if not standalone_mode:
            return run(*args, standalone_mode=False, **kwargs)
        try:
            code = run(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "drs"
            _one_line(f"{exc.format_message()} (see `{where} --help`)")
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _one_line(exc.format_message())
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                err_console.print("drs: interrupted")
                sys.exit(130)
            err_console.print("drs: aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=DrsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drs")
@click.option("--config", "config_path", metavar="PATH", envvar="DRS_CONFIG",
              help="Config file (default /etc/drs/drs.toml; env DRS_CONFIG).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """libvirt-drs: keep a libvirt/KVM cluster balanced by live-migrating VMs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:  # Alembic's INFO lines (context impl, DDL mode) are noise at -v
        logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = AppContext(config_path)


def _register() -> None:
    from libvirt_drs.cli import (  # noqa: PLC0415 - the group exists before its commands import it
        balance_cmd,
        bench_cmd,
        collect_cmd,
        config_cmd,
        db_cmd,
        files_cmd,
        ha_cmd,
        hosts_cmd,
        lab_cmd,
        migrate_cmd,
        plans_cmd,
        recommend_cmd,
        replication_cmd,
        serve_cmd,
        tokens_cmd,
    )

    commands = (config_cmd.config, db_cmd.db, lab_cmd.lab, collect_cmd.collect,
                collect_cmd.status, *migrate_cmd.COMMANDS, *hosts_cmd.COMMANDS,
                *plans_cmd.COMMANDS, *serve_cmd.COMMANDS,
                balance_cmd.simulate_cmd, bench_cmd.bench, recommend_cmd.recommend,
                files_cmd.files, tokens_cmd.tokens, ha_cmd.ha, replication_cmd.replicate,
                replication_cmd.replication, replication_cmd.failover,
                replication_cmd.failback)
    for command in commands:
        cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="drs", standalone_mode=True)
    except KeyboardInterrupt:
        err_console.print("drs: interrupted")
        sys.exit(130)
