"""`drs simulate` on a small slice of a real PlanetLab day, and `drs bench plan`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from libvirt_drs.balancer.simulate import SimConfig, memory_sizes_mib, simulate
from libvirt_drs.cli import cli

# shared/ lies beside the repository (a clone in CI gets a copy there too)
DAY = Path(__file__).resolve().parents[3] / "shared" / "data" / "planetlab" / "20110303"
KEYS = ["imbalance_mean", "imbalance_p95", "overload_fraction", "hot_fraction", "max_util_p95",
        "migrations", "migrations_per_vm_day", "plan_ms_p50", "plan_ms_max", "memory_violations"]


def test_memory_sizes_follow_the_design() -> None:
    assert memory_sizes_mib(9, 2).tolist() == [512, 512, 1024, 1024, 2048, 2048, 4096, 4096, 512]


def test_simulate_balances_a_synthetic_trace() -> None:
    rng = np.random.default_rng(0)
    level = np.where(np.arange(40) % 4 == 0, 0.9, 0.1)  # heavy VMs all start on host 0
    trace = np.clip(level[:, None] + rng.normal(0, 0.02, (40, 48)), 0, 1)
    none = simulate(trace, memory_sizes_mib(40, 4), SimConfig(hosts=4, window_s=0.0,
                    policy=SimConfig(hosts=4).policy.__class__(aggressiveness=1)))
    drs = simulate(trace, memory_sizes_mib(40, 4), SimConfig(hosts=4))
    assert list(drs) == KEYS
    assert none["migrations"] == 0 and drs["migrations"] > 0
    assert drs["imbalance_mean"] < none["imbalance_mean"] / 2
    assert drs["memory_violations"] == 0


@pytest.mark.skipif(not DAY.is_dir(), reason="PlanetLab traces not available")
def test_cli_simulate_on_a_slice_of_a_day(tmp_path: Path) -> None:
    for src in sorted(DAY.iterdir())[:60]:
        (tmp_path / src.name).write_text("\n".join(src.read_text().splitlines()[:48]) + "\n")
    result = CliRunner().invoke(cli, ["simulate", "--trace", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == KEYS and data["memory_violations"] == 0
    table = CliRunner().invoke(cli, ["simulate", "--trace", str(tmp_path), "--hosts", "8"])
    assert table.exit_code == 0 and "mean imbalance" in table.output


def test_cli_bench_plan() -> None:
    result = CliRunner().invoke(cli, ["bench", "plan", "--hosts", "8", "--vms", "200", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == ["hosts", "vms", "plan_ms", "plan_cpu_ms", "moves", "imbalance_before",
                          "imbalance_after", "peak_rss_mib"]
    assert data["moves"] > 0 and data["imbalance_after"] < data["imbalance_before"]
