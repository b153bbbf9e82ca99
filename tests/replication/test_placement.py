"""Where recovery points go: the recovery host with the most memory left for a failover."""

from __future__ import annotations

import pytest

from libvirt_drs.replication.placement import choose_host, memory_mib


@pytest.mark.parametrize(("xml", "mib"), [
    ("<domain><memory unit='KiB'>262144</memory></domain>", 256.0),
    ("<domain><memory>524288</memory></domain>", 512.0),  # KiB is libvirt's default
    ("<domain><memory unit='GiB'>2</memory></domain>", 2048.0),
    ("<domain><memory unit='bytes'>1073741824</memory></domain>", 1024.0),
    ("<domain/>", 0.0),
])
def test_memory_reads_every_unit(xml: str, mib: float) -> None:
    assert memory_mib(xml) == pytest.approx(mib)


def test_the_host_with_most_room_left_wins_and_ties_go_in_order() -> None:
    capacity = {"b1": 8192.0, "b2": 8192.0, "b3": 4096.0}
    assert choose_host(capacity, {}, 1024) == "b1"
    assert choose_host(capacity, {"b1": 2048}, 1024) == "b2"
    assert choose_host(capacity, {"b1": 6000, "b2": 6000}, 1024) == "b3"


def test_a_host_where_the_vm_fits_is_preferred_else_the_one_with_most_room() -> None:
    assert choose_host({"b1": 4096.0, "b2": 2048.0}, {"b1": 3500}, 1024) == "b2"
    assert choose_host({"b1": 1024.0, "b2": 512.0}, {}, 4096) == "b1"
    with pytest.raises(ValueError):
        choose_host({}, {}, 1)
