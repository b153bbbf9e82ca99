"""Demand estimators on small hand-computed sample windows."""

from __future__ import annotations

import numpy as np
import pytest

from libvirt_drs.balancer.demand import DemandEstimator, estimate_demand, estimate_spread

ROWS = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 4.0], [np.nan, 2.0, np.nan, 2.0]])


def test_mean_last_quantile() -> None:
    assert estimate_demand(ROWS, 300, DemandEstimator("mean")).tolist() == [1.0, 1.0, 2.0]
    assert estimate_demand(ROWS, 300, DemandEstimator("last")).tolist() == [1.0, 4.0, 2.0]
    q = estimate_demand(ROWS, 300, DemandEstimator("quantile", quantile=0.5))
    assert q.tolist() == [1.0, 0.0, 2.0]


def test_ewma_weights_recent_samples_more() -> None:
    est = estimate_demand(ROWS, 300, DemandEstimator("ewma", half_life_s=300))
    assert est[0] == pytest.approx(1.0) and est[2] == pytest.approx(2.0)
    # weights 1/8, 1/4, 1/2, 1 -> 4 / (15/8)
    assert est[1] == pytest.approx(4 / (15 / 8))


def test_no_samples_is_zero_demand() -> None:
    empty = np.full((2, 3), np.nan)
    for method in ("mean", "ewma", "quantile", "last", "blend"):
        assert estimate_demand(empty, 300, DemandEstimator(method)).tolist() == [0.0, 0.0]
    assert estimate_demand(np.zeros((2, 0)), 300, DemandEstimator()).tolist() == [0.0, 0.0]


def test_spread_and_bad_method() -> None:
    assert estimate_spread(ROWS).tolist() == pytest.approx([0.0, np.sqrt(3.0), 0.0])
    with pytest.raises(ValueError, match="demand method"):
        DemandEstimator("median")
