"""Sample retention: roll raw samples up to 5-minute averages, then prune, in bounded batches.

1. Roll up every completed 5-minute bucket after the newest bucket already rolled up
   (a per-table watermark, so a bucket is aggregated exactly once), at most
   `buckets_per_txn` buckets per transaction.
2. Delete raw samples older than the raw retention (never newer than the watermark:
   nothing is deleted before it was rolled up), `batch_rows` rows per transaction.
3. Delete rollups older than the rollup retention, and VMs gone for that long.
Each step commits per batch, so a large backlog never holds one long transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, text

from libvirt_drs.db.models import HostSample, HostSampleRollup, VmSample, VmSampleRollup

BUCKET_S = 300.0
SETTLE_S = 60.0  # a bucket is rolled up once it ended this long ago

_ROLLUP_VM = text(
    "INSERT INTO vm_sample_rollups (vm_id, host_id, bucket_s, cpu_cores, mem_used_mib, samples) "
    "SELECT vm_id, MAX(host_id), :bucket, AVG(cpu_cores), AVG(mem_used_mib), COUNT(*) "
    "FROM vm_samples WHERE ts_s >= :lo AND ts_s < :hi GROUP BY vm_id")
_ROLLUP_HOST = text(
    "INSERT INTO host_sample_rollups (host_id, bucket_s, cpu_load, mem_load, samples) "
    "SELECT host_id, :bucket, AVG(cpu_load), AVG(mem_load), COUNT(*) "
    "FROM host_samples WHERE ts_s >= :lo AND ts_s < :hi GROUP BY host_id")


@dataclass(frozen=True)
class RetentionStats:
    buckets_rolled: int
    raw_deleted: int
    rollups_deleted: int
    vms_deleted: int


def apply_retention(engine: Engine, now_s: float, raw_retention_s: float,
                    rollup_retention_s: float, batch_rows: int = 10_000,
                    buckets_per_txn: int = 12) -> RetentionStats:
    buckets = 0
    watermarks = []
    for raw, rollup, stmt in ((VmSample, VmSampleRollup, _ROLLUP_VM),
                              (HostSample, HostSampleRollup, _ROLLUP_HOST)):
        n, end = _roll_up(engine, raw, rollup, stmt, now_s, buckets_per_txn)
        buckets += n
        watermarks.append(end)
    raw_cutoff = min([now_s - raw_retention_s, *watermarks])
    raw_deleted = sum(_prune(engine, table, "ts_s", raw_cutoff, batch_rows)
                      for table in ("vm_samples", "host_samples"))
    rollup_cutoff = now_s - rollup_retention_s
    rollups_deleted = sum(_prune(engine, table, "bucket_s", rollup_cutoff, batch_rows)
                          for table in ("vm_sample_rollups", "host_sample_rollups"))
    vms_deleted = _prune(engine, "vms", "gone_s", rollup_cutoff, batch_rows)
    return RetentionStats(buckets, raw_deleted, rollups_deleted, vms_deleted)


def _roll_up(engine: Engine, raw: type, rollup: type, stmt: object, now_s: float,
             buckets_per_txn: int) -> tuple[int, float]:
    """Returns (buckets rolled, end of the rolled-up range)."""
    last_complete = math.floor((now_s - SETTLE_S) / BUCKET_S) * BUCKET_S  # exclusive end
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(rollup.bucket_s))).scalar()  # type: ignore[attr-defined]
        if newest is not None:
            start = float(newest) + BUCKET_S
        else:
            oldest = conn.execute(select(func.min(raw.ts_s))).scalar()  # type: ignore[attr-defined]
            if oldest is None:
                return 0, last_complete
            start = math.floor(float(oldest) / BUCKET_S) * BUCKET_S
    done = 0
    bucket = start
    while bucket < last_complete:
        with engine.begin() as conn:
            # Skip empty stretches (collector down for a while) in one step.
            nxt = conn.execute(select(func.min(raw.ts_s)).where(  # type: ignore[attr-defined]
                raw.ts_s >= bucket)).scalar()  # type: ignore[attr-defined]
            if nxt is None:
                break
            bucket = max(bucket, math.floor(float(nxt) / BUCKET_S) * BUCKET_S)
            for _ in range(buckets_per_txn):
                if bucket >= last_complete:
                    break
                conn.execute(stmt, {"bucket": bucket, "lo": bucket, "hi": bucket + BUCKET_S})  # type: ignore[call-overload]
                bucket += BUCKET_S
                done += 1
    return done, max(start, last_complete)


def _prune(engine: Engine, table: str, column: str, cutoff: float, batch_rows: int) -> int:
    """DELETE ... WHERE column < cutoff, batch_rows rows per transaction."""
    key = "id"
    stmt = text(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} "
                f"WHERE {column} < :cutoff LIMIT :n)")
    total = 0
    while True:
        with engine.begin() as conn:
            deleted = conn.execute(stmt, {"cutoff": cutoff, "n": batch_rows}).rowcount
        total += max(deleted, 0)
        if deleted < batch_rows:
            return total
