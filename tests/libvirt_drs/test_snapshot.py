"""The balancer's snapshot from the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from libvirt_drs import config
from libvirt_drs.db.models import Host, HostStateRow, MigrationJob, Vm, VmSample
from libvirt_drs.db.snapshot import cpu_features, load_snapshot

NOW_S = 1_000_000.0
CFG = config.parse(
    '[[hosts]]\nname = "h1"\nuri = "qemu:///system"\ncpu_cores = 4\n'
    '[[hosts]]\nname = "h2"\nuri = "qemu:///system"\ngroup = "b"\nstorage_group = "s2"\n'
    '[[hosts]]\nname = "h3"\nuri = "qemu:///system"\n'
    '[balancer]\nwindow_s = 600\n[collector]\ninterval_s = 20\n'
    '[rules]\npinned = ["v2"]\n',
    "t.toml",
)
CPU_XML = ("<cpu><arch>x86_64</arch><model>Skylake</model><feature policy='require' name='vmx'/>"
           "<feature name='avx2'/><feature policy='disable' name='hle'/></cpu>")


def _fill(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        h1 = Host(name="h1", uri="u", cpu_cores=16.0, mem_mib=8192, stale=False, cpu_model="Skylake",
                  cpu_xml=CPU_XML, last_seen_s=NOW_S)
        h2 = Host(name="h2", uri="u", cpu_cores=8.0, mem_mib=4096, stale=False, last_seen_s=NOW_S)
        h3 = Host(name="h3", uri="u", cpu_cores=8.0, mem_mib=4096, stale=True, last_error="refused")
        s.add_all([h1, h2, h3])
        s.flush()
        v1 = Vm(uuid="u1", name="v1", host_id=h1.id, vcpus=2, mem_mib=1024, first_seen_s=0)
        v2 = Vm(uuid="u2", name="v2", host_id=h2.id, vcpus=1, mem_mib=512, first_seen_s=0)
        gone = Vm(uuid="u3", name="old", host_id=None, mem_mib=512, first_seen_s=0,
                  gone_s=10.0)
        s.add_all([v1, v2, gone])
        s.flush()
        for k in range(30):  # 30 samples, 20 s apart, the last at NOW_S
            ts = NOW_S - 20 * (29 - k)
            s.add(VmSample(vm_id=v1.id, host_id=h1.id, ts_s=ts, cpu_cores=1.0, mem_used_mib=300))
            s.add(VmSample(vm_id=v2.id, host_id=h2.id, ts_s=ts, cpu_cores=0.5 if k < 29 else 3.0,
                           mem_used_mib=100))
        s.add(HostStateRow(host_name="h2", state="maintenance", changed_s=NOW_S))
        s.add(MigrationJob(vm_name="v1", source="h2", destination="h1", state="succeeded",
                           queued_s=NOW_S - 120, finished_s=NOW_S - 100))
        s.add(MigrationJob(vm_name="v1", source="h3", destination="h2", state="succeeded",
                           queued_s=NOW_S - 900, finished_s=NOW_S - 800))
        s.add(MigrationJob(vm_name="v2", source="h1", destination="h3", state="failed",
                           queued_s=NOW_S - 50, finished_s=NOW_S - 40))


def test_snapshot_from_database(db_engine: Engine) -> None:
    _fill(db_engine)
    snap = load_snapshot(db_engine, CFG, now_s=NOW_S)
    hosts = {h.name: h for h in snap.hosts}
    assert hosts["h1"].cpu_cores == 4.0  # the config override wins over libvirt's 16
    assert hosts["h1"].mem_mib == 8192.0
    assert hosts["h1"].cpu_features == frozenset({"vmx", "avx2"})
    assert hosts["h2"].state == "maintenance" and not hosts["h2"].eligible
    assert hosts["h2"].group == "b" and hosts["h2"].storage_group == "s2"
    assert hosts["h1"].eligible
    assert hosts["h3"].stale and not hosts["h3"].eligible
    vms = {v.name: v for v in snap.vms}
    assert set(vms) == {"v1", "v2"}  # the gone VM is not in the snapshot
    assert vms["v1"].host == "h1" and vms["v1"].vcpus == 2 and vms["v1"].mem_mib == 1024
    assert vms["v1"].cpu_cores == pytest.approx(1.0)
    assert vms["v1"].mem_demand_mib == pytest.approx(300)
    # one spike in the last sample does not make the demand: smoothed over the window
    assert 0.5 <= vms["v2"].cpu_cores < 1.5
    assert vms["v1"].last_migrated_s == NOW_S - 100 and vms["v1"].last_source == "h2"
    assert vms["v2"].last_migrated_s is None  # a failed job is not a migration
    assert snap.rules.pinned == ("v2",)
    assert snap.now_s == NOW_S


def test_cpu_demand_counts_the_wait_of_a_contended_vm(db_engine: Engine) -> None:
    """Usage 0.6 plus 0.3 cores waited for a CPU: demand 0.9, of which 0.3 is the wait;
    samples without a wait figure (NULL: unreported) count as no wait."""
    with Session(db_engine) as s, s.begin():
        h1 = Host(name="h1", uri="u", cpu_cores=4.0, mem_mib=8192, stale=False, last_seen_s=NOW_S)
        s.add(h1)
        s.flush()
        v1 = Vm(uuid="u1", name="v1", host_id=h1.id, vcpus=1, mem_mib=1024, first_seen_s=0)
        v2 = Vm(uuid="u2", name="v2", host_id=h1.id, vcpus=1, mem_mib=1024, first_seen_s=0)
        s.add_all([v1, v2])
        s.flush()
        for k in range(30):
            ts = NOW_S - 20 * (29 - k)
            s.add(VmSample(vm_id=v1.id, host_id=h1.id, ts_s=ts, cpu_cores=0.6, mem_used_mib=300,
                           cpu_wait_cores=0.3))
            s.add(VmSample(vm_id=v2.id, host_id=h1.id, ts_s=ts, cpu_cores=0.5, mem_used_mib=300))
    vms = {v.name: v for v in load_snapshot(db_engine, CFG, now_s=NOW_S).vms}
    assert vms["v1"].cpu_cores == pytest.approx(0.9)
    assert vms["v1"].cpu_wait_cores == pytest.approx(0.3)
    assert vms["v2"].cpu_cores == pytest.approx(0.5) and vms["v2"].cpu_wait_cores == 0.0


def test_snapshot_of_empty_database(db_engine: Engine) -> None:
    snap = load_snapshot(db_engine, CFG, now_s=NOW_S)
    assert snap.vms == ()
    assert all(h.stale for h in snap.hosts)  # never sampled: not eligible


def test_cpu_features_of_bad_xml() -> None:
    assert cpu_features("<cpu><feature") == frozenset()
    assert cpu_features(None) == frozenset()


def test_a_host_not_polled_recently_is_stale(db_engine: Engine) -> None:
    """The collector may have stopped: a row that still says fresh is not trusted forever."""
    _fill(db_engine)
    later = NOW_S + 2 * CFG.collector.interval_s + CFG.collector.timeout_s + 1
    hosts = {h.name: h for h in load_snapshot(db_engine, CFG, now_s=later).hosts}
    assert hosts["h1"].stale and not hosts["h1"].eligible
