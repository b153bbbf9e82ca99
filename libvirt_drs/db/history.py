"""The cluster's own recorded history as a simulation input (`drs simulate --from-db`).

VM CPU demand per 5-minute step comes from the 5-minute rollups where raw samples have
been pruned and from the raw samples elsewhere; each VM starts where its first sample
in the range was taken; hosts are the configured ones with their recorded capacity.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, Integer, cast, func, select
from sqlalchemy.orm import Session

from libvirt_drs.balancer.model import HostState
from libvirt_drs.config import Config
from libvirt_drs.db.models import Host, Vm, VmSample, VmSampleRollup
from libvirt_drs.db.snapshot import configured_hosts
from libvirt_drs.errors import UserError

STEP_S = 300.0
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(text: str, option: str, now_s: float | None = None) -> float:
    """ISO 8601 (`2026-11-27T10:00`, UTC unless it names a zone), `now`, a duration ago
    (`90m`, `2h`, `7d`) or epoch seconds."""
    now_s = time.time() if now_s is None else now_s
    text = text.strip()
    if text == "now":
        return now_s
    match = _RELATIVE.match(text)
    if match:
        return now_s - float(match[1]) * _UNIT_S[match[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option} {text!r}: expected an ISO time (2026-11-27T10:00), a "
                        "duration ago (90m, 2h, 7d), `now` or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class History:
    names: list[str]
    cpu_cores: np.ndarray  # (vms, steps), NaN where the VM has no sample
    mem_mib: np.ndarray  # (vms,)
    hosts: tuple[HostState, ...]
    initial_host: np.ndarray  # (vms,) index into hosts


def _buckets(session: Session, model: type[VmSample] | type[VmSampleRollup], ts_col, since_s: float,  # type: ignore[no-untyped-def]
             until_s: float) -> list[tuple[int, int, float]]:
    slot = cast(func.floor((ts_col - since_s) / STEP_S), Integer).label("slot")
    return [tuple(r) for r in session.execute(  # type: ignore[misc]
        select(model.vm_id, slot, func.avg(model.cpu_cores))
        .where(ts_col >= since_s, ts_col < until_s)
        .group_by(model.vm_id, slot))]


def _first_hosts(session: Session, since_s: float, until_s: float) -> dict[int, int]:
    """VM id -> host id of its first raw sample in the range (rollups as a fallback)."""
    found: dict[int, int] = {}
    for model, ts_col in ((VmSample, VmSample.ts_s), (VmSampleRollup, VmSampleRollup.bucket_s)):
        first = (select(model.vm_id, func.min(ts_col).label("t"))
                 .where(ts_col >= since_s, ts_col < until_s).group_by(model.vm_id).subquery())
        rows = session.execute(select(model.vm_id, model.host_id, ts_col)
                               .join(first, (model.vm_id == first.c.vm_id) & (ts_col == first.c.t)))
        for vm_id, host_id, _ts in sorted(rows, key=lambda r: r[2]):
            found.setdefault(vm_id, host_id)
    return found


def load_history(engine: Engine, cfg: Config, since_s: float, until_s: float) -> History:
    if until_s <= since_s:
        raise UserError("--until must be later than --since")
    steps = int(np.ceil((until_s - since_s) / STEP_S))
    with Session(engine) as session:
        hosts = tuple(replace(h, stale=False, state="active") for h in configured_hosts(session, cfg))
        missing = [h.name for h in hosts if h.cpu_cores <= 0 or h.mem_mib <= 0]
        if missing:
            raise UserError(f"host {missing[0]}: capacity unknown (never sampled; set cpu_cores "
                            "and mem_mib in the config)")
        host_ids = {row.id: row.name for row in session.scalars(select(Host))}
        rollups = _buckets(session, VmSampleRollup, VmSampleRollup.bucket_s, since_s, until_s)
        raw = _buckets(session, VmSample, VmSample.ts_s, since_s, until_s)
        first_host = _first_hosts(session, since_s, until_s)
        vms = {v.id: v for v in session.scalars(select(Vm).where(Vm.id.in_(list(first_host))))}
    index = {h.name: i for i, h in enumerate(hosts)}
    vm_ids = sorted((i for i in first_host if host_ids.get(first_host[i]) in index),
                    key=lambda i: vms[i].name)
    if not vm_ids:
        raise UserError("no VM samples on configured hosts between --since and --until")
    row = {vm_id: k for k, vm_id in enumerate(vm_ids)}
    cpu = np.full((len(vm_ids), steps), np.nan)
    for vm_id, slot, cores in rollups + raw:  # raw samples overwrite rollups of the same step
        if vm_id in row and 0 <= slot < steps:
            cpu[row[vm_id], slot] = cores
    return History(
        names=[vms[i].name for i in vm_ids],
        cpu_cores=cpu,
        mem_mib=np.array([float(vms[i].mem_mib) for i in vm_ids]),
        hosts=hosts,
        initial_host=np.array([index[host_ids[first_host[i]]] for i in vm_ids], dtype=np.int64),
    )
