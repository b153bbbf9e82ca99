"""Demand estimation: a VM's recent samples -> the demand the planner balances on.

The latest sample is a poor guide: acting on it is undone by the next one. What pays
is the demand that persists. On the PlanetLab days an exponentially weighted mean with
a one-hour half-life over a four-hour window predicts the next hour's mean demand best
of the estimators tried (window means, medians, trimmed means, quantiles, AR(1) on the
deviation; see docs/balancer.md), so that is the default. Pure numpy; the store feeds
samples over BalancerConfig.window_s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libvirt_drs.balancer.arrays import F64

METHODS = ("mean", "ewma", "quantile", "last", "blend")


@dataclass(frozen=True)
class DemandEstimator:
    method: str = "blend"
    half_life_s: float = 3600.0  # ewma / blend: weight of a sample halves every half_life_s
    quantile: float = 0.9  # quantile / blend: of the samples in the window
    quantile_weight: float = 0.07  # blend: share of the quantile, the rest is the ewma
    # The default is the VM's level (1-hour EWMA) plus a little of its sustained peaks
    # (7 % of the 90th percentile of the window): on the PlanetLab days it cuts host-steps
    # over 100 % by 7-11 % for +0.0006..0.0015 imbalance against the plain EWMA
    # (docs/balancer.md).

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"demand method {self.method!r}: expected one of {METHODS}")


def _ewma(samples: F64, interval_s: float, half_life_s: float) -> F64:
    n = samples.shape[1]
    age_s = (n - 1 - np.arange(n)) * interval_s
    weights = 0.5 ** (age_s / max(half_life_s, 1e-9))
    valid = ~np.isnan(samples)
    w = np.where(valid, weights[None, :], 0.0)
    total = w.sum(axis=1)
    num = np.where(valid, samples, 0.0) @ weights
    return np.asarray(np.where(total > 0, num / np.maximum(total, 1e-300), 0.0))


def _quantile(samples: F64, q: float) -> F64:
    if not np.isnan(samples).any():
        return np.asarray(np.quantile(samples, q, axis=1))
    out = np.zeros(samples.shape[0])
    some = ~np.isnan(samples).all(axis=1)
    if some.any():
        out[some] = np.nanquantile(samples[some], q, axis=1)
    return out


def _last(samples: F64) -> F64:
    valid = ~np.isnan(samples)
    idx = samples.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
    val = samples[np.arange(samples.shape[0]), idx]
    return np.asarray(np.where(valid.any(axis=1), val, 0.0))


def estimate_demand(samples: F64, interval_s: float, estimator: DemandEstimator) -> F64:
    """samples: (vms, n) oldest first, NaN = missing; returns the demand per VM (0 if none)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2:
        raise ValueError("samples must be a (vms, samples) array")
    if samples.shape[1] == 0:
        return np.zeros(samples.shape[0])
    m = estimator.method
    if m == "last":
        return _last(samples)
    if m == "quantile":
        return _quantile(samples, estimator.quantile)
    if m == "mean":
        valid = ~np.isnan(samples)
        total = np.where(valid, samples, 0.0).sum(axis=1)
        return np.asarray(total / np.maximum(valid.sum(axis=1), 1))
    level = _ewma(samples, interval_s, estimator.half_life_s)
    if m == "ewma" or estimator.quantile_weight <= 0:
        return level
    qw = estimator.quantile_weight
    return np.asarray((1 - qw) * level + qw * _quantile(samples, estimator.quantile))


def estimate_spread(samples: F64) -> F64:
    """Standard deviation of each VM's samples (NaN ignored): its overload risk."""
    samples = np.asarray(samples, dtype=np.float64)
    valid = ~np.isnan(samples)
    count = np.maximum(valid.sum(axis=1), 1)
    filled = np.where(valid, samples, 0.0)
    mean = filled.sum(axis=1) / count
    var = (np.where(valid, samples - mean[:, None], 0.0) ** 2).sum(axis=1) / count
    return np.asarray(np.sqrt(var))
