"""The collectors' database edge: inventory upkeep and batched sample writes.

`SampleStore.write_cycle()` writes one collect cycle in one transaction:
host rows (capacity, CPU model, staleness), the VM inventory (new VMs appear, a VM
that moved gets its new host, VMs missing from a host that answered are marked
gone; VMs of a stale host are left as they were) and the samples, inserted in bulk
(SQLite: one executemany; PostgreSQL: COPY). Retention lives in libvirt_drs.db.retention.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Float, bindparam, func, insert, select, update

from libvirt_drs.collectors.cycle import CycleResult, HostReading, VmReading
from libvirt_drs.config import HostConfig
from libvirt_drs.db.models import Host, Vm

log = logging.getLogger(__name__)

VM_SAMPLE_COLUMNS = ("vm_id", "host_id", "ts_s", "cpu_cores", "mem_used_mib", "cpu_wait_cores",
                     "swap_in_kib_s")
HOST_SAMPLE_COLUMNS = ("host_id", "ts_s", "cpu_cores_used", "cpu_load", "mem_used_mib",
                       "mem_load", "vm_count")


@dataclass(frozen=True)
class WriteStats:
    vm_samples: int
    host_samples: int
    new_vms: int
    moved_vms: int
    gone_vms: int


@dataclass(slots=True)
class _VmRow:
    id: int
    host_id: int | None
    name: str
    state: str
    vcpus: int
    mem_mib: int
    gone: bool


class SampleStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._host_ids: dict[str, int] = {}
        self._host_written: dict[str, tuple[Any, ...]] = {}

    def sync_hosts(self, hosts: Sequence[HostConfig]) -> dict[str, int]:
        """Create or update the configured hosts' rows; returns name -> id."""
        with self.engine.begin() as conn:
            existing = {name: hid for hid, name in conn.execute(select(Host.id, Host.name))}
            for cfg in hosts:
                values = {"uri": cfg.uri, "host_group": cfg.group,
                          "storage_group": cfg.storage_group}
                if cfg.name in existing:
                    conn.execute(update(Host).where(Host.id == existing[cfg.name]).values(values))
                else:
                    existing[cfg.name] = conn.execute(
                        insert(Host).values(name=cfg.name, stale=True, **values)
                        .returning(Host.id)).scalar_one()
        self._host_ids = existing
        return dict(existing)

    def write_cycle(self, result: CycleResult) -> WriteStats:
        try:
            return self._write_cycle(result)
        except Exception:
            self._host_ids, self._host_written = {}, {}  # the rollback undid what they cache
            raise

    def _write_cycle(self, result: CycleResult) -> WriteStats:
        with self.engine.begin() as conn:
            host_ids = self._ensure_host_ids(conn, result.hosts)
            self._write_hosts(conn, result.hosts, host_ids)
            ts_by_host = {h.name: h.wall_s for h in result.hosts if h.ok}
            vm_ids, new, moved, gone = self._write_inventory(conn, result, host_ids)
            vm_rows = [(vm_ids[v.uuid], host_ids[v.host], ts_by_host[v.host], v.cpu_cores,
                        v.mem_used_mib, v.cpu_wait_cores, v.swap_in_kib_s)
                       for v in result.vms if v.cpu_cores is not None]
            host_rows = [(host_ids[h.name], h.wall_s, h.cpu_cores_used, h.cpu_load, h.mem_used_mib,
                          h.mem_load, h.vm_count) for h in result.hosts
                         if h.ok and h.cpu_load is not None and h.mem_load is not None]
            self.insert_samples(conn, "vm_samples", VM_SAMPLE_COLUMNS, vm_rows)
            self.insert_samples(conn, "host_samples", HOST_SAMPLE_COLUMNS, host_rows)
        return WriteStats(len(vm_rows), len(host_rows), new, moved, gone)

    def insert_samples(self, conn: Connection, table: str, columns: Sequence[str],
                       rows: Sequence[tuple[Any, ...]]) -> None:
        """Bulk insert in the caller's transaction: COPY on PostgreSQL, else executemany."""
        if not rows:
            return
        if self.is_postgres:
            dbapi_conn = conn.connection.driver_connection
            assert dbapi_conn is not None
            with dbapi_conn.cursor() as cur, cur.copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in columns)
        conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                             list(rows))

    def _ensure_host_ids(self, conn: Connection, hosts: Iterable[HostReading]) -> dict[str, int]:
        missing = [h.name for h in hosts if h.name not in self._host_ids]
        if missing:
            self._host_ids = {n: i for i, n in conn.execute(select(Host.id, Host.name))}
            for name in missing:
                if name not in self._host_ids:  # polled but never synced: no URI known
                    self._host_ids[name] = conn.execute(
                        insert(Host).values(name=name, uri="", stale=True).returning(Host.id)
                    ).scalar_one()
        return self._host_ids

    def _write_hosts(self, conn: Connection, hosts: Sequence[HostReading],
                     host_ids: dict[str, int]) -> None:
        ok = [{"b_id": host_ids[h.name], "b_ts": h.wall_s} for h in hosts if h.ok]
        if ok:
            conn.execute(update(Host).where(Host.id == bindparam("b_id")).values(
                stale=False, last_error=None, last_seen_s=bindparam("b_ts")), ok)
        bad = [{"b_id": host_ids[h.name], "b_err": h.error} for h in hosts if not h.ok]
        if bad:
            conn.execute(update(Host).where(Host.id == bindparam("b_id")).values(
                stale=True, last_error=bindparam("b_err")), bad)
        changed = []
        for h in hosts:
            facts = (h.cpu_cores, h.mem_mib, h.cpu_model, h.cpu_xml)
            if h.ok and self._host_written.get(h.name) != facts:
                changed.append({"b_id": host_ids[h.name], "b_cpu": h.cpu_cores,
                                "b_mem": h.mem_mib, "b_model": h.cpu_model, "b_xml": h.cpu_xml})
                self._host_written[h.name] = facts
        if changed:
            conn.execute(update(Host).where(Host.id == bindparam("b_id")).values(
                cpu_cores=bindparam("b_cpu"), mem_mib=bindparam("b_mem"),
                cpu_model=bindparam("b_model"), cpu_xml=bindparam("b_xml")), changed)

    def _write_inventory(self, conn: Connection, result: CycleResult,
                         host_ids: dict[str, int]) -> tuple[dict[str, int], int, int, int]:
        ts = result.wall_s
        rows = {uuid: _VmRow(i, h, n, s, c, m, g is not None) for i, uuid, h, n, s, c, m, g in
                conn.execute(select(Vm.id, Vm.uuid, Vm.host_id, Vm.name, Vm.state, Vm.vcpus,
                                    Vm.mem_mib, Vm.gone_s))}
        new: list[VmReading] = []
        changes: list[dict[str, Any]] = []
        moved = 0
        for v in result.vms:
            row = rows.get(v.uuid)
            if row is None:
                new.append(v)
                continue
            hid = host_ids[v.host]
            if (row.host_id, row.name, row.state, row.vcpus, row.mem_mib, row.gone) == (
                    hid, v.name, v.state, v.vcpus, v.mem_max_mib, False):
                continue
            is_move = row.host_id is not None and row.host_id != hid and not row.gone
            moved += is_move
            changes.append({"b_id": row.id, "b_host": hid, "b_name": v.name, "b_state": v.state,
                            "b_vcpus": v.vcpus, "b_mem": v.mem_max_mib,
                            "b_migrated": ts if is_move else None})
        if changes:
            conn.execute(update(Vm).where(Vm.id == bindparam("b_id")).values(
                host_id=bindparam("b_host"), name=bindparam("b_name"), state=bindparam("b_state"),
                vcpus=bindparam("b_vcpus"), mem_mib=bindparam("b_mem"), gone_s=None,
                last_migrated_s=_coalesce_migrated()), changes)
        ids = {uuid: row.id for uuid, row in rows.items()}
        if new:
            inserted = conn.execute(insert(Vm).returning(Vm.id, Vm.uuid), [
                {"uuid": v.uuid, "name": v.name, "host_id": host_ids[v.host], "vcpus": v.vcpus,
                 "mem_mib": v.mem_max_mib, "state": v.state, "first_seen_s": ts} for v in new])
            ids.update({uuid: vid for vid, uuid in inserted})
        gone = self._mark_gone(conn, rows, result, host_ids)
        return ids, len(new), moved, gone

    def _mark_gone(self, conn: Connection, rows: dict[str, _VmRow], result: CycleResult,
                   host_ids: dict[str, int]) -> int:
        """VMs last on a host that answered this cycle but found on no host now."""
        fresh = {host_ids[h.name] for h in result.hosts if h.ok}
        seen = {v.uuid for v in result.vms}
        gone = [{"b_id": row.id} for uuid, row in rows.items()
                if not row.gone and row.host_id in fresh and uuid not in seen]
        if gone:
            conn.execute(update(Vm).where(Vm.id == bindparam("b_id")).values(
                host_id=None, state="gone", gone_s=result.wall_s), gone)
        return len(gone)


def _coalesce_migrated() -> Any:
    """Keep last_migrated_s unless this change is a move (then the cycle's timestamp)."""
    return func.coalesce(bindparam("b_migrated", type_=Float), Vm.last_migrated_s)
