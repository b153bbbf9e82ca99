"""The contention figures of balancer.contention."""

from __future__ import annotations

import pytest

from libvirt_drs.balancer.contention import host_wait_cores, host_worst_wait, served_ratio, wait_ratio


def test_wait_ratio_is_per_vcpu_and_bounded() -> None:
    assert wait_ratio(0.3, 2) == pytest.approx(0.15)
    assert wait_ratio(0.0, 1) == 0.0
    assert wait_ratio(-0.01, 1) == 0.0  # float noise never reads as negative wait
    assert wait_ratio(3.0, 2) == 1.0
    assert wait_ratio(0.5, 0) == 0.5  # a VM reported with no vCPU counts as one


def test_served_ratio_over_used_and_waited() -> None:
    assert served_ratio([(0.6, 0.3), (0.5, 0.1), (0.4, 0.0)]) == pytest.approx(1.5 / 1.9)
    assert served_ratio([(1.0, 0.0)]) == 1.0
    assert served_ratio([]) is None and served_ratio([(0.0, 0.0)]) is None


def test_per_host_sum_and_worst() -> None:
    vms = [("a", 0.3, 2), ("a", 0.1, 1), ("b", 0.0, 1)]
    assert host_wait_cores((h, w) for h, w, _ in vms) == pytest.approx({"a": 0.4, "b": 0.0})
    assert host_worst_wait(vms) == pytest.approx({"a": 0.15, "b": 0.0})
