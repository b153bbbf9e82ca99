"""`drs simulate` on PlanetLab-format trace files, the demand model's calibration, and
`drs bench plan`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from libvirt_drs.balancer.scoring import overload_probability
from libvirt_drs.balancer.simulate import SimConfig, memory_sizes_mib, simulate
from libvirt_drs.cli import cli

KEYS = ["imbalance_mean", "imbalance_p95", "overload_fraction", "hot_fraction", "max_util_p95",
        "migrations", "migrations_per_vm_day", "plan_ms_p50", "plan_ms_max", "memory_violations",
        "p_overload_mean", "overload_fraction_predicted_steps", "p_overload_calibration"]


def write_trace(directory: Path, n_vms: int = 60, steps: int = 48, seed: int = 3) -> Path:
    """A trace directory in PlanetLab's format (one file per VM, one CPU percent per line):
    a few heavy VMs among light ones, all noisy."""
    rng = np.random.default_rng(seed)
    level = np.where(np.arange(n_vms) % 7 == 0, 70.0, 12.0)
    values = np.clip(level[:, None] + rng.normal(0, 8, (n_vms, steps)), 0, 100).round()
    for i, row in enumerate(values.astype(int)):
        (directory / f"vm{i:03d}").write_text("\n".join(map(str, row)) + "\n")
    return directory


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


def test_overload_probability_is_a_normal_tail() -> None:
    p = overload_probability(np.array([1.0, 0.5, 0.5, 1.5, 0.9, 1.1]),
                             np.array([0.01, 0.01, 0.0, 0.0, 0.04, 0.04]))
    assert p[0] == pytest.approx(0.5)
    assert p[1] == pytest.approx(2.87e-7, rel=0.01)  # 5 standard deviations below capacity
    assert p[2] == 0.0 and p[3] == 1.0  # no spread: a step at capacity
    assert p[4] == pytest.approx(1 - p[5]) and 0.0 < p[4] < 0.5


def test_simulate_scores_its_overload_predictions() -> None:
    rng = np.random.default_rng(1)
    # 4 hosts of 2 cores, ~1.9 cores of noisy demand each: every host near capacity
    trace = np.clip(0.19 + rng.normal(0, 0.05, (40, 60)), 0, 1)
    result = simulate(trace, memory_sizes_mib(40, 4), SimConfig(hosts=4))
    rows = result["p_overload_calibration"]
    assert sum(r["host_steps"] for r in rows) == 4 * 59  # every step but the first is predicted
    assert all(r["p_from"] <= r["p_mean"] <= r["p_to"] for r in rows)
    assert 0.05 < result["p_overload_mean"] < 0.95
    realised = sum(r["overload_fraction"] * r["host_steps"] for r in rows) / (4 * 59)
    assert result["overload_fraction_predicted_steps"] == pytest.approx(realised, abs=1e-3)


def test_cli_simulate_on_trace_files(tmp_path: Path) -> None:
    trace = write_trace(tmp_path)
    result = CliRunner().invoke(cli, ["simulate", "--trace", str(trace), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == KEYS and data["memory_violations"] == 0 and data["migrations"] > 0
    table = CliRunner().invoke(cli, ["simulate", "--trace", str(trace), "--hosts", "8"])
    assert table.exit_code == 0, table.output
    assert "mean imbalance" in table.output and "calibration" in table.output
    assert "60 VMs on 8 hosts (2 cores, 32768 MiB)" in table.output


def test_cli_simulate_host_size(tmp_path: Path) -> None:
    trace = write_trace(tmp_path)
    small = json.loads(CliRunner().invoke(cli, ["simulate", "--trace", str(trace), "--json"]).output)
    big = CliRunner().invoke(cli, ["simulate", "--trace", str(trace), "--host-cpus", "8",
                                   "--host-mem-mib", "65536", "--json"])
    assert big.exit_code == 0, big.output
    # the same demand on hosts four times the size: far below capacity, never over it
    assert json.loads(big.output)["overload_fraction"] == 0.0 < small["overload_fraction"]
    tight = CliRunner().invoke(cli, ["simulate", "--trace", str(trace), "--host-mem-mib", "1024"])
    assert tight.exit_code == 2 and "--host-mem-mib" in tight.output
    assert len(tight.output.strip().splitlines()) == 1
    wrong = CliRunner().invoke(cli, ["simulate", "--from-db", "--host-cpus", "4"])
    assert wrong.exit_code == 2 and "--host-cpus applies to --trace only" in wrong.output


def test_cli_bench_plan() -> None:
    result = CliRunner().invoke(cli, ["bench", "plan", "--hosts", "8", "--vms", "200", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data) == ["hosts", "vms", "plan_ms", "plan_cpu_ms", "moves", "imbalance_before",
                          "imbalance_after", "peak_rss_mib"]
    assert data["moves"] > 0 and data["imbalance_after"] < data["imbalance_before"]
