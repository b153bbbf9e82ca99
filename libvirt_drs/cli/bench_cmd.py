"""`drs bench`: benchmarks (planner, collector, live-migration soak, disaster recovery soak).

The group loads a benchmark's module only when that benchmark runs or shows its help:
they import libvirt, numpy and the database, which `drs --help` must not wait for."""

from __future__ import annotations

import importlib

import click

# explicit registration: subcommand -> "module:attribute"
BENCHMARKS = {
    "plan": "libvirt_drs.cli.balance_cmd:bench_plan",
    "collect": "libvirt_drs.cli.bench_collect:collect",
    "migrate-soak": "libvirt_drs.cli.bench_soak:migrate_soak",
    "dr-soak": "libvirt_drs.cli.bench_dr:dr_soak",
    "web": "libvirt_drs.cli.bench_web:web",
}


class LazyGroup(click.Group):
    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group("bench", cls=LazyGroup, lazy=BENCHMARKS)
def bench() -> None:
    """Benchmarks: the planner (plan), the collector (collect), live migrations on a lab
    (migrate-soak), the console and API (web). Figures, not tests: docs/benchmarks.md."""
