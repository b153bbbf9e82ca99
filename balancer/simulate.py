"""What-if replay of a CPU trace (`drs simulate`; semantics and metrics: docs/balancer.md).

Input is an in-memory trace matrix (vms x steps, CPU demand in vCPUs) plus memory
sizes, so a trace file and a database window can feed it alike. Each step: record the
metrics of the placement in effect, let the balancer see the samples up to now, apply
its moves before the next step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from libvirt_drs.balancer.arrays import F64, I64
from libvirt_drs.balancer.demand import DemandEstimator, estimate_demand, estimate_spread
from libvirt_drs.balancer.model import ClusterSnapshot, HostState, Policy, VmState
from libvirt_drs.balancer.planner import plan
from libvirt_drs.balancer.scoring import load_imbalance, overload_probability

MEMORY_SIZES_MIB = (512, 1024, 2048, 4096)
# Calibration bins of the predicted probability that a host runs over capacity next step.
P_BINS = (0.0, 0.001, 0.01, 0.1, 0.5, 1.0)


@dataclass(frozen=True)
class SimConfig:
    hosts: int  # H
    host_cpu_cores: float = 2.0
    host_mem_mib: float = 32768.0
    step_s: float = 300.0
    window_s: float = 3600.0  # samples the estimator sees (BalancerConfig.window_s)
    policy: Policy = field(default_factory=Policy)
    estimator: DemandEstimator = field(default_factory=DemandEstimator)


def default_hosts(n_vms: int) -> int:
    return max(1, math.ceil(n_vms / 10))


def memory_sizes_mib(n_vms: int, n_hosts: int) -> F64:
    """VM i: [512, 1024, 2048, 4096][(i // H) % 4], so the round-robin placement fits."""
    sizes = np.array(MEMORY_SIZES_MIB, dtype=np.float64)
    return sizes[(np.arange(n_vms) // n_hosts) % 4]


def sim_policy(policy: Policy) -> Policy:
    """The trace has no vCPU overcommit limit and no memory demand: memory is only the
    hard fit, CPU the only balanced resource."""
    return replace(policy, mem_weight=0.0, cpu_weight=1.0, cpu_overcommit_ratio=math.inf)


@dataclass
class _Run:
    vm_host: I64
    last_migrated_s: list[float | None]
    last_source: list[str | None]
    std: list[float] = field(default_factory=list)
    max_util: list[float] = field(default_factory=list)
    overloaded: int = 0
    hot: int = 0
    mem_violations: int = 0
    migrations: int = 0
    plan_ms: list[float] = field(default_factory=list)
    # the model's P(host over capacity at the next step), set after each plan, and per
    # calibration bin: host-steps, summed prediction, realised overloads
    predicted: F64 | None = None
    bin_steps: F64 = field(default_factory=lambda: np.zeros(len(P_BINS) - 1))
    bin_p: F64 = field(default_factory=lambda: np.zeros(len(P_BINS) - 1))
    bin_over: F64 = field(default_factory=lambda: np.zeros(len(P_BINS) - 1))


def _predict(run: _Run, forecast: F64, spread: F64, cpu_cap: F64) -> None:
    """What the demand model expects of the placement now in effect: per host the forecast
    level and the VMs' spreads summed as independent variances."""
    n_hosts = len(cpu_cap)
    load = np.bincount(run.vm_host, forecast, minlength=n_hosts) / cpu_cap
    var = np.bincount(run.vm_host, spread**2, minlength=n_hosts) / cpu_cap**2
    run.predicted = overload_probability(load, var)


def _score_prediction(run: _Run, load: F64) -> None:
    if run.predicted is None:
        return
    k = np.clip(np.searchsorted(P_BINS, run.predicted, side="right") - 1, 0, len(P_BINS) - 2)
    run.bin_steps += np.bincount(k, minlength=len(P_BINS) - 1)
    run.bin_p += np.bincount(k, run.predicted, minlength=len(P_BINS) - 1)
    run.bin_over += np.bincount(k, (load > 1.0).astype(np.float64), minlength=len(P_BINS) - 1)


def _calibration(run: _Run) -> list[dict[str, float | int]]:
    return [{"p_from": P_BINS[i], "p_to": P_BINS[i + 1], "host_steps": int(run.bin_steps[i]),
             "p_mean": round(float(run.bin_p[i] / run.bin_steps[i]), 4),
             "overload_fraction": round(float(run.bin_over[i] / run.bin_steps[i]), 4)}
            for i in range(len(P_BINS) - 1) if run.bin_steps[i]]


def _record(run: _Run, demand: F64, mem_mib: F64, cpu_cap: F64, mem_cap: F64) -> None:
    n_hosts = len(cpu_cap)
    load = np.bincount(run.vm_host, np.nan_to_num(demand), minlength=n_hosts) / cpu_cap
    _score_prediction(run, load)
    mem = np.bincount(run.vm_host, mem_mib, minlength=n_hosts)
    run.std.append(float(load_imbalance(load, load, np.ones(n_hosts, dtype=bool), 1.0, 0.0)))
    run.max_util.append(float(load.max()))
    run.overloaded += int((load > 1.0).sum())
    run.hot += int((load > 0.9).sum())
    run.mem_violations += int((mem > mem_cap).sum())


def _snapshot(run: _Run, names: list[str], host_names: list[str], forecast: F64, spread_cores: F64,
              mem_mib: F64, hosts: tuple[HostState, ...], now_s: float) -> ClusterSnapshot:
    demand, spread = forecast.tolist(), spread_cores.tolist()
    vms = tuple(VmState(name=names[i], host=host_names[int(run.vm_host[i])],
                        cpu_cores=demand[i], mem_mib=float(mem_mib[i]), cpu_spread_cores=spread[i],
                        last_migrated_s=run.last_migrated_s[i], last_source=run.last_source[i])
                for i in range(len(names)))
    return ClusterSnapshot(hosts=hosts, vms=vms, now_s=now_s)


def _metrics(run: _Run, n_vms: int, n_hosts: int, steps: int, cfg: SimConfig
             ) -> dict[str, Any]:
    host_steps = max(n_hosts * steps, 1)
    days = steps * cfg.step_s / 86400.0
    plan_ms = run.plan_ms or [0.0]
    scored = max(float(run.bin_steps.sum()), 1.0)
    return {
        "imbalance_mean": round(float(np.mean(run.std)), 4),
        "imbalance_p95": round(float(np.percentile(run.std, 95)), 4),
        "overload_fraction": round(run.overloaded / host_steps, 4),
        "hot_fraction": round(run.hot / host_steps, 4),
        "max_util_p95": round(float(np.percentile(run.max_util, 95)), 4),
        "migrations": run.migrations,
        "migrations_per_vm_day": round(run.migrations / max(n_vms * days, 1e-9), 4),
        "plan_ms_p50": round(float(np.percentile(plan_ms, 50)), 2),
        "plan_ms_max": round(float(np.max(plan_ms)), 2),
        "memory_violations": run.mem_violations,
        "p_overload_mean": round(float(run.bin_p.sum()) / scored, 4),
        "overload_fraction_predicted_steps": round(float(run.bin_over.sum()) / scored, 4),
        "p_overload_calibration": _calibration(run),
    }


def simulate(trace: F64, mem_mib: F64, cfg: SimConfig, names: list[str] | None = None,
             progress: Callable[[int], None] | None = None,
             hosts: tuple[HostState, ...] | None = None,
             initial_host: I64 | None = None) -> dict[str, Any]:
    """Replay `trace` (vms x steps, cores; NaN = VM absent); returns the metrics of docs/balancer.md
    (`drs simulate`).

    By default the hosts are cfg.hosts identical ones and VM i starts on host i mod H
    (the PlanetLab semantics); a recorded history passes its own hosts and placement.
    """
    n_vms, steps = trace.shape
    names = names or [f"vm{i}" for i in range(n_vms)]
    if hosts is None:
        hosts = tuple(HostState(name=f"host{h}", cpu_cores=cfg.host_cpu_cores,
                                mem_mib=cfg.host_mem_mib) for h in range(cfg.hosts))
    host_names = [h.name for h in hosts]
    host_index = {n: i for i, n in enumerate(host_names)}
    cpu_cap = np.array([h.cpu_cores for h in hosts], dtype=np.float64)
    mem_cap = np.array([h.mem_mib for h in hosts], dtype=np.float64)
    policy = sim_policy(cfg.policy)
    window = max(1, int(round(cfg.window_s / cfg.step_s)))
    start = (np.arange(n_vms, dtype=np.int64) % len(hosts) if initial_host is None
             else np.asarray(initial_host, dtype=np.int64).copy())
    run = _Run(vm_host=start, last_migrated_s=[None] * n_vms, last_source=[None] * n_vms)
    index = {n: i for i, n in enumerate(names)}
    for t in range(steps):
        _record(run, trace[:, t], mem_mib, cpu_cap, mem_cap)
        if progress is not None:
            progress(t + 1)
        if t == steps - 1:
            break
        now_s = t * cfg.step_s
        seen = trace[:, max(0, t + 1 - window): t + 1]
        forecast, spread = estimate_demand(seen, cfg.step_s, cfg.estimator), estimate_spread(seen)
        snapshot = _snapshot(run, names, host_names, forecast, spread, mem_mib, hosts, now_s)
        started = time.perf_counter()
        result = plan(snapshot, policy)
        run.plan_ms.append((time.perf_counter() - started) * 1000.0)
        for move in result.moves:
            i = index[move.vm]
            run.vm_host[i] = host_index[move.destination]
            run.last_migrated_s[i] = now_s
            run.last_source[i] = move.source
        run.migrations += len(result.moves)
        _predict(run, forecast, spread, cpu_cap)
    return _metrics(run, n_vms, len(hosts), steps, cfg)
