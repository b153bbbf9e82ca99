"""Shared CLI plumbing: loading the config once, JSON output, one-line errors."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from libvirt_drs import config as config_mod
from libvirt_drs.config import Config
from libvirt_drs.errors import UserError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class AppContext:
    """What every command gets: the --config path and the lazily loaded Config."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    def use_config_path(self, path: str) -> None:
        self.config_path = path
        self._config = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config

    def cluster(self) -> Any:
        """The operations' view of the cluster for this command (operations.context.Cluster),
        acting as the local user (operations.caller.cli_caller)."""
        from libvirt_drs.operations.context import Cluster  # noqa: PLC0415 - fast --help

        return Cluster.open(self.config, actor=self.caller().name)

    def caller(self) -> Any:
        from libvirt_drs.operations.caller import cli_caller  # noqa: PLC0415

        return cli_caller()


F = TypeVar("F", bound=Callable[..., Any])


def pass_app(f: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the AppContext as first argument and accept `--config PATH` on the command too.

    `drs --config X cmd` and `drs cmd --config X` both work; the latter wins.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, command_config: str | None = None, **kwargs: Any) -> Any:
        app = click.get_current_context().find_object(AppContext)
        assert app is not None
        if command_config:
            app.use_config_path(command_config)
        return f(app, *args, **kwargs)

    return click.option("--config", "command_config", metavar="PATH",
                        help="Config file (default /etc/drs/drs.toml; env DRS_CONFIG).")(wrapper)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
yes_option = click.option("--yes", "-y", is_flag=True,
                          help="Do not ask for confirmation (for scripts).")


def confirm(question: str, yes: bool) -> None:
    """Ask before changing the cluster; `--yes` skips it. No answer (stdin closed, as in a
    script without --yes) refuses, changing nothing."""
    if yes:
        return
    try:
        answer = click.confirm(question, default=False, err=True)
    except click.Abort:
        click.echo(err=True)  # end the unanswered question's line
        raise UserError("not confirmed (no answer on stdin): nothing changed; pass --yes "
                        "to run without asking") from None
    if not answer:
        raise UserError("cancelled: nothing changed")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
