from __future__ import annotations

import pytest

from libvirt_drs.errors import UserError
from libvirt_drs.lab import spec


def test_skewed_puts_every_vm_on_the_first_host() -> None:
    assert spec.placement("skewed", ("h1", "h2", "h3"), 4) == ("h1",) * 4


def test_even_is_round_robin() -> None:
    assert spec.placement("even", ("h1", "h2", "h3"), 4) == ("h1", "h2", "h3", "h1")


def test_explicit_placement_takes_names_or_numbers() -> None:
    assert spec.placement("h2, 1,3", ("h1", "h2", "h3"), 3) == ("h2", "h1", "h3")


@pytest.mark.parametrize("text", ["h1,h2", "h1,h9,h2", "0,1,2", "x,y,z"])
def test_bad_placement_names_the_option(text: str) -> None:
    with pytest.raises(UserError, match="--placement"):
        spec.placement(text, ("h1", "h2", "h3"), 3)


def test_per_vm_values_repeat_and_default() -> None:
    assert spec.per_vm("--burn", "30,10", 5, 0, 0, 100) == (30, 10, 30, 10, 30)
    assert spec.per_vm("--burn", None, 3, (20, 10), 0, 100) == (20, 10, 20)
    with pytest.raises(UserError, match="--burn"):
        spec.per_vm("--burn", "120", 2, 0, 0, 100)
    with pytest.raises(UserError, match="--burn"):
        spec.per_vm("--burn", "a,b", 2, 0, 0, 100)


def test_addresses_are_consecutive_loopback() -> None:
    assert spec.addresses("127.0.0.21", 3) == ("127.0.0.21", "127.0.0.22", "127.0.0.23")
    for bad in ("10.0.0.1", "127.0.0.254", "nonsense"):
        with pytest.raises(UserError, match="--base-address"):
            spec.addresses(bad, 3)


def test_default_build_is_a_clear_imbalance() -> None:
    s = spec.build()
    assert s.hosts == ("h1", "h2", "h3")
    assert s.uri("h1") == "qemu+tcp://127.0.0.11/system"
    assert {v.host for v in s.vms} == {"h1"} and len(s.vms) == 6
    cpu_load = sum(v.burn_pct for v in s.vms) / 100 / s.host_cpu_cores
    mem_load = sum(v.mem_mib for v in s.vms) / s.host_mem_mib
    assert cpu_load >= 0.8 and 0.5 <= mem_load < 1.0
    assert sum(v.burn_pct for v in s.vms) <= 100  # the machine has 2 cores


def test_build_rejects_bad_options() -> None:
    with pytest.raises(UserError, match="--storage"):
        spec.build(storage="nfs")
    with pytest.raises(UserError, match="lab name"):
        spec.build(name="Bad Name")
    with pytest.raises(UserError, match="--touch-mib"):
        spec.build(mem="128", touch="100")
