"""Host loads over time at the database edge: one mean CPU and memory load per host and
bucket, from the raw samples where they are kept and the 5-minute rollups before that
(the console's charts, `GET /api/v1/history`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Engine, Integer, cast, func, select

from libvirt_drs.db.models import Host, HostSample, HostSampleRollup


@dataclass(frozen=True)
class Timeline:
    start_s: float  # the first bucket starts here
    step_s: float
    hosts: tuple[str, ...]
    cpu: tuple[tuple[float | None, ...], ...]  # [host][bucket], None: no sample
    mem: tuple[tuple[float | None, ...], ...]

    @property
    def buckets(self) -> int:
        return len(self.cpu[0]) if self.cpu else 0


def load_timeline(engine: Engine, since_s: float, until_s: float, step_s: float) -> Timeline:
    n = max(1, math.ceil((until_s - since_s) / step_s))
    with engine.connect() as conn:
        names = dict(conn.execute(select(Host.id, Host.name)).all())
        cells: dict[tuple[int, int], tuple[float, float]] = {}
        for model, ts in ((HostSampleRollup, HostSampleRollup.bucket_s),
                          (HostSample, HostSample.ts_s)):
            slot = cast(func.floor((ts - since_s) / step_s), Integer)
            rows = conn.execute(
                select(model.host_id, slot, func.avg(model.cpu_load), func.avg(model.mem_load))
                .where(ts >= since_s, ts < until_s).group_by(model.host_id, slot)).all()
            for host_id, k, cpu, mem in rows:  # raw samples (second) win over rollups
                if 0 <= int(k) < n:
                    cells[(int(host_id), int(k))] = (float(cpu), float(mem))
    ids = sorted(names, key=lambda i: names[i])
    cpu = tuple(tuple(cells[(i, k)][0] if (i, k) in cells else None for k in range(n)) for i in ids)
    mem = tuple(tuple(cells[(i, k)][1] if (i, k) in cells else None for k in range(n)) for i in ids)
    return Timeline(since_s, step_s, tuple(names[i] for i in ids), cpu, mem)
