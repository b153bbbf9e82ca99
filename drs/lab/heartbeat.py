"""Heartbeats of lab guests: "DRS-HB <counter> <unix time>" lines in the serial log."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

_LINE = re.compile(r"DRS-HB (\d+) (\d+\.\d+)")


class Beat(NamedTuple):
    counter: int
    timestamp: float  # guest wall clock, unix seconds


def parse(text: str) -> list[Beat]:
    """Every heartbeat in `text`, in order; kernel messages and torn lines are skipped."""
    return [Beat(int(m.group(1)), float(m.group(2))) for m in _LINE.finditer(text)]


def read(path: str | Path) -> list[Beat]:
    try:
        return parse(Path(path).read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return []


def last(path: str | Path) -> Beat | None:
    beats = read(path)
    return beats[-1] if beats else None


def since(beats: Sequence[Beat], t: float) -> list[Beat]:
    return [b for b in beats if b.timestamp >= t]


def max_gap_s(beats: Sequence[Beat]) -> float:
    """The longest time between consecutive heartbeats (nominally 1.0 s); 0 if < 2 beats."""
    pairs = zip(beats, beats[1:], strict=False)
    return max((b.timestamp - a.timestamp for a, b in pairs), default=0.0)


def missing_counters(beats: Sequence[Beat]) -> list[int]:
    """Counters absent from an otherwise consecutive run (a reboot restarts at 1: reported)."""
    gone: list[int] = []
    for a, b in zip(beats, beats[1:], strict=False):
        if b.counter != a.counter + 1:
            gone.extend(range(a.counter + 1, b.counter) if b.counter > a.counter else [-1])
    return gone


def wait_resumed(path: str | Path, timeout_s: float, beats: int = 2) -> tuple[bool, bool]:
    """Wait up to `timeout_s` (host clock) for `beats` new heartbeat lines in `path`.

    Returns (resumed, rebooted); rebooted: the counter restarted among the new lines (the
    guest rebooted, e.g. after the TCG crash below). Lines are counted, not counter values,
    so a guest that rebooted still shows as beating.
    """
    start = len(read(path))
    deadline = time.monotonic() + timeout_s
    while True:
        now = read(path)
        if len(now) >= start + beats:
            return True, -1 in missing_counters(now[max(0, start - 1):])
        if time.monotonic() >= deadline:
            return False, False
        time.sleep(0.2)


OOPS_MARKERS = ("Kernel panic", "BUG:", "Oops:", "general protection fault")


def last_oops(path: str | Path) -> str | None:
    """If the guest's last words are a kernel oops (not a heartbeat), its last oops lines.

    Lab guests run under TCG (QEMU 7.2), which now and then corrupts a guest's memory in a
    long live migration: the guest kernel oopses on the destination while libvirt reports
    it running there (docs/migrator.md, "Known lab issue"). Tests use this to tell that
    from a product failure.
    """
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return None
    if max(text.rfind(m) for m in OOPS_MARKERS) <= text.rfind("DRS-HB"):
        return None
    lines = [ln for ln in text.splitlines() if any(m in ln for m in OOPS_MARKERS) or "RIP:" in ln]
    return " | ".join(lines[-3:]) or "kernel oops"
