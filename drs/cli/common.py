"""Shared CLI plumbing: loading the config once, JSON output, one-line errors."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from drs import config as config_mod
from drs.config import Config

console = Console()
err_console = Console(stderr=True)


class AppContext:
    """What every command gets: the --config path and the lazily loaded Config."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config


pass_app = click.make_pass_decorator(AppContext)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
