"""When each protected VM's next recovery point is due (pure: no I/O).

A point taken every half RPO keeps the recovery point younger than the RPO as long as a
transfer takes less than half of it; a VM whose last attempt failed waits retry_s before
the next one, so a lost recovery site is not hammered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RETRY_S = 10.0


@dataclass(frozen=True)
class Replica:
    vm: str
    rpo_s: float
    point_taken_s: float | None  # None: no recovery point yet
    last_failure_s: float | None  # the last attempt's failure, if it failed


def due(replicas: Sequence[Replica], now_s: float, retry_s: float = RETRY_S) -> list[str]:
    """The VMs to replicate now, the one furthest behind its RPO first."""
    def behind(r: Replica) -> float:
        if r.point_taken_s is None:
            return float("inf")
        return (now_s - r.point_taken_s) / r.rpo_s

    ready = [r for r in replicas
             if (r.last_failure_s is None or now_s - r.last_failure_s >= retry_s)
             and (r.point_taken_s is None or now_s - r.point_taken_s >= r.rpo_s / 2)]
    return [r.vm for r in sorted(ready, key=behind, reverse=True)]
