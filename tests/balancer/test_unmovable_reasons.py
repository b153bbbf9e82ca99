"""A VM that cannot move says, per host, which hard constraint excluded it (and why)."""

from __future__ import annotations

from libvirt_drs.balancer.model import (
    Exclusion,
    GroupRule,
    HostState,
    Plan,
    Policy,
    Rules,
    VmHostRule,
    VmState,
)
from libvirt_drs.balancer.planner import plan
from libvirt_drs.balancer.reasons import MAX_HOSTS, MAX_REASONS, NO_HOST, describe
from libvirt_drs.balancer.report import plan_dict
from tests.balancer.builders import snapshot

AVX2 = frozenset({"avx2"})


def _evacuate(*others: HostState, vm: VmState | None = None, rules: Rules | None = None,
              policy: Policy | None = None, extra: tuple[VmState, ...] = ()) -> Plan:
    big = vm or VmState("big", "a", 1.0, 2048, vcpus=8)
    hs = (HostState("a", 8, 8192, state="maintenance"), *others)
    return plan(snapshot(hs, (big, *extra), rules), policy or Policy())


def test_each_host_names_the_first_constraint_that_excluded_it() -> None:
    result = _evacuate(
        HostState("b", 8, 1024), HostState("c", 1, 8192), HostState("d", 8, 8192, stale=True),
        HostState("e", 8, 8192, storage_group="s2", cpu_features=AVX2),
        HostState("f", 8, 8192, cpu_features=AVX2), HostState("g", 8, 8192, cpu_features=AVX2),
        HostState("h", 8, 8192, state="maintenance"),
        HostState("i", 8, 8192, cpu_features=frozenset({"sse"})),
        vm=VmState("big", "a", 1.0, 2048, vcpus=8, cpu_features=AVX2),
        rules=Rules(anti_affinity=(GroupRule("web", ("big", "w1")),),
                    vm_host=(VmHostRule("not-g", "must_not", ("big",), ("g",)),)),
        extra=(VmState("w1", "f", 0.1, 128),))
    [u] = result.unmovable
    assert (u.vm, u.rule) == ("big", "maintenance")
    by_host = {e.host: e for e in u.excluded}
    assert {h: e.constraint for h, e in by_host.items()} == {
        "b": "memory_fits", "c": "cpu_overcommit", "d": "eligible_destination",
        "e": "storage_reachable", "f": "anti_affinity", "g": "vm_host_rules",
        "h": "eligible_destination", "i": "cpu_compatible"}
    assert by_host["b"].detail == "memory (needs 2048 MiB, 1024 free)"
    assert by_host["c"].detail == "cpu (needs 8 vCPU, 4 of 4 free at overcommit 4)"
    assert by_host["d"].detail == "stale (no fresh samples)"
    assert by_host["e"].detail == "storage group 's2' (disks in 'default', copy_storage off)"
    assert by_host["f"].detail == "anti-affinity 'web' (with w1)"
    assert by_host["g"].detail == "rule 'not-g' (must not run on g)"
    assert by_host["h"].detail == "maintenance"
    assert by_host["i"].detail == "cpu features (lacks avx2)"
    assert u.reason.startswith(f"host a entering maintenance; {NO_HOST}: b memory (needs 2048 "
                               "MiB, 1024 free); c cpu")
    assert "f anti-affinity 'web' (with w1)" in u.reason


def test_the_first_constraint_in_registration_order_wins() -> None:
    # b is both too small and named by a must-not rule: memory comes first
    result = _evacuate(HostState("b", 8, 1024), HostState("c", 1, 8192),
                       rules=Rules(vm_host=(VmHostRule("r", "must_not", ("big",), ("b",)),)))
    [u] = result.unmovable
    assert [(e.host, e.constraint) for e in u.excluded] == [("b", "memory_fits"),
                                                            ("c", "cpu_overcommit")]


def test_memory_reserve_and_must_rule_are_spelled_out() -> None:
    result = _evacuate(HostState("b", 8, 4096), HostState("c", 8, 8192),
                       rules=Rules(vm_host=(VmHostRule("only-b", "must", ("big",), ("b",)),)),
                       policy=Policy(mem_reserve_mib=3000))
    u = result.unmovable[0]  # (it is listed again for its rule, with the same hosts)
    assert [(e.host, e.detail) for e in u.excluded] == [
        ("b", "memory (needs 2048 MiB, 1096 free after the 3000 MiB reserve)"),
        ("c", "rule 'only-b' (must run on b)")]


def test_affinity_names_the_gathering_host_and_what_blocks_it() -> None:
    hs = (HostState("a", 8, 8192), HostState("b", 8, 2048), HostState("c", 8, 8192))
    vs = (VmState("d1", "b", 0.5, 512), VmState("d2", "b", 0.5, 512),
          VmState("d3", "a", 0.5, 2048))
    result = plan(snapshot(hs, vs, Rules(affinity=(GroupRule("db", ("d1", "d2", "d3")),))),
                  Policy(max_moves_per_pass=0))
    [u] = result.unmovable
    assert (u.vm, u.rule) == ("d3", "db")
    assert [(e.host, e.constraint) for e in u.excluded] == [("b", "memory_fits"),
                                                            ("c", "affinity")]
    assert "c affinity 'db' (the group gathers on b)" in u.reason


def test_unsatisfiable_must_rule_lists_every_host() -> None:
    hs = (HostState("h0", 8, 16384), HostState("h1", 8, 16384, state="maintenance"))
    rules = Rules(vm_host=(VmHostRule("db-on-h1", "must", ("x",), ("h1",)),))
    result = plan(snapshot(hs, (VmState("x", "h0", 1, 1024),), rules), Policy())
    [u] = result.unmovable
    assert u.reason == ("rule 'db-on-h1' unsatisfiable: no eligible host allowed by the VM's "
                        "rules: h0 rule 'db-on-h1' (must run on h1); h1 maintenance")
    assert [e.constraint for e in u.excluded] == ["vm_host_rules", "eligible_destination"]


def test_json_carries_the_exclusions() -> None:
    [entry] = plan_dict(_evacuate(HostState("b", 8, 1024)))["unmovable"]
    assert entry["excluded"] == [{"host": "b", "constraint": "memory_fits",
                                  "detail": "memory (needs 2048 MiB, 1024 free)"}]


def test_describe_groups_hosts_and_counts_beyond_the_limit() -> None:
    same = [Exclusion(f"m{i}", "eligible_destination", "maintenance") for i in range(9)]
    assert describe(same) == (", ".join(f"m{i}" for i in range(MAX_HOSTS))
                              + f" and {9 - MAX_HOSTS} more maintenance")
    many = [Exclusion(f"h{i}", "memory_fits", f"memory (needs 1 MiB, {i} free)")
            for i in range(MAX_REASONS + 3)]
    text = describe(many)
    assert text.count("memory (") == MAX_REASONS and text.endswith("3 more host(s): 3 memory_fits")
    assert describe([]) == "no other host"


def test_a_large_cluster_names_a_few_hosts_per_reason() -> None:
    hosts = 96
    hs = (HostState("a", 8, 8192, state="maintenance"),
          *(HostState(f"h{i}", 8, 1024) for i in range(hosts)))
    vs = tuple(VmState(f"v{i}", "a", 0.1, 2048) for i in range(20))
    result = plan(snapshot(hs, vs), Policy())
    assert len(result.unmovable) == 20
    assert all(len(u.excluded) == hosts for u in result.unmovable)
    assert "h0, h1, h2, h3, h4, h5 and 90 more memory (needs 2048 MiB, 1024 free)" in (
        result.unmovable[0].reason)
