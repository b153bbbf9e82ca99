"""SampleStore, retention and the status reads, on SQLite and PostgreSQL (db_engine)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, insert, select

from libvirt_drs.collectors.cycle import CycleResult, HostReading, VmReading
from libvirt_drs.config import HostConfig
from libvirt_drs.db.models import (
    Host,
    HostSample,
    HostSampleRollup,
    HostStateRow,
    Vm,
    VmSample,
    VmSampleRollup,
)
from libvirt_drs.db.retention import apply_retention
from libvirt_drs.db.samples import SampleStore
from libvirt_drs.db.status import (
    cluster_imbalance,
    cpu_features,
    load_hosts,
    load_vms,
    target_imbalance,
)

T0 = 1_800_000_000.0
HOSTS = (HostConfig("h1", "qemu+tcp://127.0.0.11/system"),
         HostConfig("h2", "qemu+tcp://127.0.0.12/system", group="rack2"))


def _vm(uuid: str, host: str, cpu: float | None = 0.5, mem: float = 100.0) -> VmReading:
    return VmReading(uuid, f"vm-{uuid}", host, "running", 1, 256, cpu, cpu, mem, "rss")


def _host(name: str, ts: float, vms: list[VmReading], ok: bool = True) -> HostReading:
    if not ok:
        return HostReading(name, False, "Connection refused", ts)
    used = sum(v.cpu_demand or 0 for v in vms)
    mem = sum(v.mem_used_mib for v in vms)
    return HostReading(name, True, None, ts, 1.0, 4.0, 1000, "Model",
                       "<cpu><model>Model</model><feature name='vmx'/>"
                       "<feature policy='disable' name='x'/></cpu>",
                       len(vms), used, used / 4, mem, mem / 1000)


def _cycle(ts: float, placement: dict[str, list[VmReading]],
           down: tuple[str, ...] = ()) -> CycleResult:
    hosts = tuple(_host(h, ts, placement.get(h, []), ok=h not in down) for h in ("h1", "h2"))
    vms = tuple(v for h, vs in placement.items() if h not in down for v in vs)
    return CycleResult(ts, hosts, vms, 1.0)


def _vm_hosts(engine: Engine) -> dict[str, tuple[str | None, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Vm.uuid, Host.name, Vm.gone_s).join(
            Host, Vm.host_id == Host.id, isouter=True)).all()
    return {u: (h, g is not None) for u, h, g in rows}


def test_inventory_new_moved_gone_and_stale_host(db_engine: Engine) -> None:
    store = SampleStore(db_engine)
    store.sync_hosts(HOSTS)
    w = store.write_cycle(_cycle(T0, {"h1": [_vm("a", "h1"), _vm("b", "h1")],
                                      "h2": [_vm("c", "h2")]}))
    assert (w.new_vms, w.vm_samples, w.host_samples) == (3, 3, 2)
    # b moves to h2, c vanishes.
    w = store.write_cycle(_cycle(T0 + 20, {"h1": [_vm("a", "h1")], "h2": [_vm("b", "h2")]}))
    assert (w.new_vms, w.moved_vms, w.gone_vms) == (0, 1, 1)
    assert _vm_hosts(db_engine) == {"a": ("h1", False), "b": ("h2", False), "c": (None, True)}
    # h1 down: its VM a is kept where it was; h1 is stale with the error.
    w = store.write_cycle(_cycle(T0 + 40, {"h2": [_vm("b", "h2")]}, down=("h1",)))
    assert w.gone_vms == 0 and _vm_hosts(db_engine)["a"] == ("h1", False)
    with db_engine.connect() as conn:
        h1 = conn.execute(select(Host.__table__).where(Host.name == "h1")).one()
        assert h1.stale and h1.last_error == "Connection refused" and h1.last_seen_s == T0 + 20
        assert h1.cpu_cores == 4.0 and h1.cpu_model == "Model"
        b = conn.execute(select(Vm.__table__).where(Vm.uuid == "b")).one()
        assert b.last_migrated_s == T0 + 20 and b.gone_s is None
    # c comes back on h1 once h1 recovers.
    w = store.write_cycle(_cycle(T0 + 60, {"h1": [_vm("a", "h1"), _vm("c", "h1")],
                                           "h2": [_vm("b", "h2")]}))
    assert _vm_hosts(db_engine)["c"] == ("h1", False) and w.new_vms == 0
    with db_engine.connect() as conn:
        assert not conn.execute(select(Host.stale).where(Host.name == "h1")).scalar_one()


def test_vms_without_a_rate_get_no_sample_and_hosts_without_load_neither(db_engine: Engine) -> None:
    store = SampleStore(db_engine)
    store.sync_hosts(HOSTS)
    result = _cycle(T0, {"h1": [_vm("a", "h1", cpu=None)]})
    hosts = (HostReading("h1", True, None, T0, 1, 4.0, 1000, None, None, 1, None, None, 100.0, 0.1),
             result.hosts[1])
    w = store.write_cycle(CycleResult(T0, hosts, result.vms, 1.0))
    assert (w.vm_samples, w.host_samples, w.new_vms) == (0, 1, 1)


def test_bulk_insert_many_samples_in_one_transaction(db_engine: Engine) -> None:
    store = SampleStore(db_engine)
    store.sync_hosts(HOSTS)
    vms = [_vm(f"v{i}", "h1", cpu=i / 1000) for i in range(500)]
    store.write_cycle(_cycle(T0, {"h1": vms}))
    store.write_cycle(_cycle(T0 + 20, {"h1": vms}))
    with db_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(VmSample)).scalar_one() == 1000
        total = conn.execute(select(func.sum(VmSample.cpu_cores))).scalar_one()
    assert total == pytest.approx(2 * sum(i / 1000 for i in range(500)))


def test_status_reads_and_imbalance(db_engine: Engine) -> None:
    store = SampleStore(db_engine)
    store.sync_hosts(HOSTS)
    placement = {"h1": [_vm("a", "h1", 1.0, 300), _vm("b", "h1", 1.0, 100)],
                 "h2": [_vm("c", "h2", 0.5, 200)]}
    for i in range(3):
        store.write_cycle(_cycle(T0 + 20 * i, placement))
    with db_engine.begin() as conn:
        conn.execute(insert(HostStateRow).values(host_name="h2", state="maintenance", changed_s=T0))
    hosts = load_hosts(db_engine, T0 + 45, window_s=60, stale_after_s=50)
    h1, h2 = hosts
    assert (h1.name, h1.cpu_load, h1.vms, h1.stale) == ("h1", 0.5, 2, False)
    assert h1.mem_load == pytest.approx(0.4)
    assert h1.cpu_features == frozenset({"vmx"}) and h2.group == "rack2"
    assert h2.state == "maintenance" and not h2.eligible
    assert cluster_imbalance(hosts, 1, 1) == 0.0  # one eligible host
    late = load_hosts(db_engine, T0 + 500, window_s=60, stale_after_s=50)
    assert all(h.stale for h in late)  # the collector stopped: nothing is fresh,
    assert late[0].cpu_load == 0.5  # but the last known load is still shown
    vms = {v.name: v for v in load_vms(db_engine, T0 + 45, 60)}
    assert vms["vm-a"].host == "h1" and vms["vm-a"].cpu_cores == pytest.approx(1.0)


def test_now_s_bounds_the_status_window(db_engine: Engine) -> None:
    """Samples after now_s do not count: the window ends at the host's last poll or at
    now_s, whichever is earlier."""
    store = SampleStore(db_engine)
    store.sync_hosts(HOSTS)
    for i in range(3):  # the VM burns 0, 1, 2 cores at T0, T0 + 20, T0 + 40
        store.write_cycle(_cycle(T0 + 20 * i, {"h1": [_vm("a", "h1", cpu=float(i))]}))
    then = load_hosts(db_engine, T0 + 25, window_s=30, stale_after_s=50)[0]
    assert then.cpu_load == pytest.approx((0 + 1) / 2 / 4)  # T0 and T0 + 20 of 4 cores
    now = load_hosts(db_engine, T0 + 45, window_s=30, stale_after_s=50)[0]
    assert now.cpu_load == pytest.approx((1 + 2) / 2 / 4)  # T0 + 20 and T0 + 40
    assert load_vms(db_engine, T0 + 25, 30)[0].cpu_cores == pytest.approx(0.5)
    assert load_vms(db_engine, T0 + 45, 30)[0].cpu_cores == pytest.approx(1.5)


def test_cluster_imbalance_formula() -> None:
    from libvirt_drs.db.status import HostView

    def hv(cpu: float, mem: float) -> HostView:
        return HostView("h", "", 1, 1, None, frozenset(), "g", "g", "active", False, None, 0.0,
                        cpu, mem, None, None, 0)

    hosts = [hv(0.2, 0.5), hv(0.6, 0.5)]
    assert cluster_imbalance(hosts, 1, 0) == pytest.approx(0.2)
    assert cluster_imbalance(hosts, 1, 1) == pytest.approx((0.04 / 2) ** 0.5)
    assert target_imbalance(3, 4) == pytest.approx(0.1)
    assert target_imbalance(1, 4) is None
    assert cpu_features(None) == frozenset()


def _seed_raw(engine: Engine, start: float, n: int, step: float) -> None:
    store = SampleStore(engine)
    store.sync_hosts(HOSTS)
    for i in range(n):
        store.write_cycle(_cycle(start + i * step, {"h1": [_vm("a", "h1", cpu=(i % 2) * 1.0)]}))


def test_retention_rolls_up_then_prunes_in_batches(db_engine: Engine) -> None:
    day = 86400.0
    start = 1_799_999_700.0  # a 5-minute boundary
    _seed_raw(db_engine, start, 60, 60.0)  # one hour, one sample a minute
    now = start + 9 * day
    stats = apply_retention(db_engine, now, raw_retention_s=7 * day,
                            rollup_retention_s=90 * day, batch_rows=7)
    # 60 VM samples + 60 per host (h2 has no VMs but is sampled); 12 buckets per table.
    assert stats.buckets_rolled == 24 and stats.raw_deleted == 180
    with db_engine.connect() as conn:
        rows = conn.execute(select(VmSampleRollup.bucket_s, VmSampleRollup.cpu_cores,
                                   VmSampleRollup.samples).order_by(VmSampleRollup.bucket_s)).all()
        assert len(rows) == 12 and rows[0] == (start, pytest.approx(0.4), 5)
        assert conn.execute(select(func.count()).select_from(HostSampleRollup)).scalar_one() == 24
        assert conn.execute(select(func.count()).select_from(HostSample)).scalar_one() == 0
    # Idempotent: a second run rolls nothing twice.
    again = apply_retention(db_engine, now, 7 * day, 90 * day)
    assert again.buckets_rolled == 0
    gone = apply_retention(db_engine, start + 100 * day, 7 * day, 90 * day, batch_rows=5)
    assert gone.rollups_deleted == 12 + 24


def test_retention_never_prunes_what_is_not_rolled_up(db_engine: Engine) -> None:
    start = 1_799_999_700.0
    _seed_raw(db_engine, start, 10, 60.0)
    # Raw retention shorter than the settle time: the newest bucket is not rolled up yet,
    # so its samples stay.
    stats = apply_retention(db_engine, start + 560, raw_retention_s=1, rollup_retention_s=10)
    with db_engine.connect() as conn:
        left = conn.execute(select(func.min(VmSample.ts_s))).scalar_one()
    assert stats.buckets_rolled == 2 and left == start + 300  # one VM and one host bucket
