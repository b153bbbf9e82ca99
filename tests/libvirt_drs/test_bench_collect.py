"""`drs bench collect` measures the real pipeline: its parts must do the work they time.

No timing is asserted here (figures go to docs/benchmarks.md); these tests check that
the fake stats call feeds the real adapter, rates and store, so a benchmark never
reports the speed of a pipeline that failed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from libvirt_drs.cli import cli
from libvirt_drs.cli.bench_collect import bench_cycle, bench_ingest, bench_sample_cost


def test_cycle_bench_rates_every_vm_and_writes_them() -> None:
    result = bench_cycle(n_hosts=3, n_vms=4, cycles=1, pg_url=None)
    assert result["vms_with_rate"] == 12
    assert result["write_sqlite"]["cpu_s"] > 0


@pytest.mark.postgres
def test_cycle_bench_writes_to_postgres(fresh_postgres_url: str) -> None:
    result = bench_cycle(n_hosts=2, n_vms=3, cycles=1, pg_url=fresh_postgres_url)
    assert result["vms_with_rate"] == 6
    assert set(result) >= {"write_sqlite", "write_postgresql"}


def test_ingest_bench_counts_rows_it_inserted() -> None:
    (sqlite,) = bench_ingest(rows=2_500, batch=1_000, pg_url=None)
    assert sqlite["backend"] == "sqlite"
    assert sqlite["rows"] == 2_500
    assert sqlite["rows_per_s"] > 0


def test_cli_runs_the_parts_asked_for() -> None:
    result = CliRunner().invoke(cli, ["bench", "collect", "--parts", "c", "--hosts", "2",
                                      "--vms", "2", "--cycles", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) == {"cycle"}
    assert report["cycle"]["vms_with_rate"] == 4


@pytest.mark.parametrize("args, message", [
    (["--parts", "ingest"], "unknown part ingest"),
    (["--parts", "a"], "give --lab-config"),
])
def test_cli_refuses_parts_it_cannot_run(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["bench", "collect", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_sample_cost_polls_every_configured_host(tmp_path: Path) -> None:
    config = tmp_path / "drs.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "drs.sqlite"}"\n\n'
                      '[[hosts]]\nname = "t1"\nuri = "test:///default"\n')
    [row] = bench_sample_cost(str(config), polls=3)
    assert row["host"] == "t1" and row["vms"] == 1  # the test driver runs one domain
    assert 0 < row["p50_ms"] <= row["max_ms"]
    assert row["bulk_call_p50_ms"] > 0 and row["bulk_call_no_balloon_p50_ms"] > 0
    assert row["libvirtd_cpu_ms"] is None  # no lab name: no daemon pid to read
