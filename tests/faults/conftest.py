"""Fixtures of the fault-injection suite (marker `fault`): one small lab shared by every
case, the run count, a seeded RNG, iptables rules that always come off, figures.

    pytest -m fault tests/faults                 # CI: 3 random-point runs per random case
    pytest -m fault tests/faults --fault-runs 10 # the full count
    pytest -m fault tests/faults --fault-seed 42 # replay a seed (printed at the start)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# Where the figures go. Default: the session's pytest tmp dir, removed after a green session
# (tmp_path_retention_policy = "failed"); set it to keep them.
RESULTS_ENV = "DRS_FAULT_RESULTS"
MIGRATION_PORTS = "49152:49215"  # libvirt's default QEMU migration port range


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fault injection")
    group.addoption("--fault-runs", type=int, default=3,
                    help="runs per random-point fault case (default 3; the issue's 10 by option)")
    group.addoption("--fault-seed", type=int, default=None,
                    help="seed of the random kill points (default: from the clock, printed)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fault)


@pytest.fixture(scope="session")
def fault_runs(request: pytest.FixtureRequest) -> int:
    return max(1, int(request.config.getoption("--fault-runs")))


@pytest.fixture(scope="session")
def fault_seed(request: pytest.FixtureRequest) -> int:
    seed = request.config.getoption("--fault-seed")
    if seed is None:
        seed = int(time.time()) % 100000
    print(f"\nfault-injection seed: {seed} (replay with --fault-seed {seed})")
    return int(seed)


@pytest.fixture
def rng(fault_seed: int, request: pytest.FixtureRequest) -> random.Random:
    """A per-test RNG derived from the session seed and the test name (order-independent)."""
    return random.Random(f"{fault_seed}:{request.node.name}")


class Figures:
    """Per-case figures: runs, invariant violations, notes; written to `path` as JSON."""

    def __init__(self, seed: int, runs: int, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"seed": seed, "fault_runs": runs, "cases": {}}

    def record(self, case: str, violations: list[str], notes: list[str] | None = None,
               failures: list[str] | None = None, **extra: Any) -> None:
        entry = self.data["cases"].setdefault(case, {"runs": 0, "violations": 0,
                                                     "runs_with_violations": 0, "failures": [],
                                                     "details": [], "notes": []})
        entry["runs"] += 1
        entry["violations"] += len(violations)
        entry["runs_with_violations"] += bool(violations)
        entry["details"] += violations
        entry["failures"] += failures or []
        entry["notes"] += notes or []
        for k, v in extra.items():
            entry.setdefault(k, []).append(v)
        self.path.write_text(json.dumps(self.data, indent=2))


@pytest.fixture(scope="session")
def figures(fault_seed: int, fault_runs: int,
            tmp_path_factory: pytest.TempPathFactory) -> Figures:
    env = os.environ.get(RESULTS_ENV)
    path = Path(env) if env else tmp_path_factory.getbasetemp() / "drs-fault-results.json"
    return Figures(fault_seed, fault_runs, path)


@pytest.fixture(scope="module")
def fault_lab(make_lab: Callable[..., Any]) -> Iterator[Any]:
    """2 hosts, 2 guests, both on h1 (the rebalance cases need a skew), shared storage;
    taken down after the module so the rest of a full run does not pay for it."""
    from libvirt_drs.lab import state  # noqa: PLC0415

    lab = make_lab(n_hosts=2, n_vms=2, placement_text="1,1", burn="10", touch="48",
                   dirty_mib_s=2)
    yield lab
    if state.load(lab.name) is not None:
        lab.down()


@contextmanager
def dropped_migration_traffic(address: str, ports: str = MIGRATION_PORTS) -> Iterator[str]:
    """DROP TCP to `address`'s `ports` on loopback (the migration ports by default; 16509
    for libvirtd itself: a network partition); removed exactly afterwards (the rule
    carries a unique comment, deleted by its full spec)."""
    tag = f"drs-fault-{uuid.uuid4().hex[:8]}"
    rule = ["INPUT", "-i", "lo", "-d", address, "-p", "tcp", "--dport", ports,
            "-m", "comment", "--comment", tag, "-j", "DROP"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        yield tag
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)
        left = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True,
                              check=True).stdout
        assert tag not in left, f"iptables rule {tag} still present"
