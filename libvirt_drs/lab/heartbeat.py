"""Heartbeats of lab guests: "DRS-HB <counter> <unix time> <memory errors>" lines in the
serial log, and the guest's own memory self-check ("DRS-MEMERR ..." lines, drs-burn.c)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

_LINE = re.compile(r"DRS-HB (\d+) (\d+\.\d+)(?: (\d+))?(?: (\d+))?")
_DISK_START = re.compile(r"DRS-DISK-START (\d+)")
_MEMERR = re.compile(r"DRS-MEMERR [^\r\n]*")


class Beat(NamedTuple):
    counter: int
    timestamp: float  # guest wall clock, unix seconds
    mem_errors: int = 0  # pages the guest found not holding what it wrote, since boot
    disk_writes: int = 0  # the write counter stored on its data disk (0: no disk)


def parse(text: str) -> list[Beat]:
    """Every heartbeat in `text`, in order; kernel messages and torn lines are skipped."""
    return [Beat(int(m.group(1)), float(m.group(2)), int(m.group(3) or 0), int(m.group(4) or 0))
            for m in _LINE.finditer(text)]


def disk_starts(path: str | Path) -> list[int]:
    """The disk write counter each boot found on the guest's data disk, in boot order: a
    guest restarted from the same disk starts where its writes stopped, not at 0."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return [int(m.group(1)) for m in _DISK_START.finditer(text)]


def last_before_boot(path: str | Path) -> Beat | None:
    """The last heartbeat before the newest boot's DRS-DISK-START line: what the guest had
    written when it stopped, to compare with what its next boot found on its disk."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    starts = list(_DISK_START.finditer(text))
    beats = parse(text[:starts[-1].start()]) if starts else []
    return beats[-1] if beats else None


def beats_since_boot(path: str | Path) -> list[Beat]:
    """The heartbeats after the newest boot's DRS-DISK-START line (all if there is none)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    starts = list(_DISK_START.finditer(text))
    return parse(text[starts[-1].end():] if starts else text)


def memory_errors(path: str | Path) -> list[str]:
    """The guest's memory mismatch reports ("DRS-MEMERR page=... want=... got=...")."""
    try:
        return _MEMERR.findall(Path(path).read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return []


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


@dataclass(frozen=True)
class Health:
    """What a guest's serial log says after an event (a migration, a fault)."""

    resumed: bool  # new heartbeats arrived
    rebooted: bool  # the counter restarted: the guest crashed and came back (panic=-1)
    oops: str | None  # its last words are a kernel oops
    mem_errors: tuple[str, ...]  # memory mismatch reports new since the event

    @property
    def problem(self) -> str | None:
        """One line naming what is wrong, or None for a guest that kept running intact."""
        if self.mem_errors:
            return (f"memory mismatch ({len(self.mem_errors)} report(s)): "
                    f"{self.mem_errors[0]}")
        if self.oops is not None:
            return f"guest kernel oops: {self.oops}"
        if self.rebooted:
            return "guest rebooted (heartbeat counter restarted)"
        if not self.resumed:
            return "stopped beating"
        return None


@dataclass(frozen=True)
class Mark:
    """Where a guest's serial log stood before an event."""

    beats: int
    mem_errors: int


def mark(path: str | Path) -> Mark:
    return Mark(len(read(path)), len(memory_errors(path)))


def wait_alive(path: str | Path, timeout_s: float, since: Mark | None = None,
               beats: int = 2) -> Health:
    """Wait up to `timeout_s` (host clock) for `beats` heartbeat lines newer than `since`
    (default: now) and judge the guest: reboot, oops, memory mismatch since the mark.

    Lines are counted, not counter values, so a guest that rebooted still shows as beating
    (and is reported as rebooted).
    """
    start = since or mark(path)
    deadline = time.monotonic() + timeout_s
    while True:
        now = read(path)
        resumed = len(now) >= start.beats + beats
        if resumed or time.monotonic() >= deadline:
            rebooted = -1 in missing_counters(now[max(0, start.beats - 1):])
            errors = tuple(memory_errors(path)[start.mem_errors:])
            return Health(resumed=resumed, rebooted=rebooted, oops=last_oops(path),
                          mem_errors=errors)
        time.sleep(0.2)


OOPS_MARKERS = ("Kernel panic", "BUG:", "Oops:", "general protection fault")


def last_oops(path: str | Path) -> str | None:
    """If the guest's last words are a kernel oops (not a heartbeat), its last oops lines.

    A guest that oopses after a live migration lost memory in it (under QEMU 7.2's TCG this
    happened now and then; docs/lab.md, "QEMU version"): tests fail on it, and the lab
    restarts such a guest before the next test (Lab.dead).
    """
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return None
    if max(text.rfind(m) for m in OOPS_MARKERS) <= text.rfind("DRS-HB"):
        return None
    lines = [ln for ln in text.splitlines() if any(m in ln for m in OOPS_MARKERS) or "RIP:" in ln]
    return " | ".join(lines[-3:]) or "kernel oops"


class ArrivalWatch:
    """Timestamps (host monotonic clock) each heartbeat line as it reaches the serial logs."""

    def __init__(self, paths: dict[str, str], poll_s: float = 0.02) -> None:
        self._paths = paths
        self._poll_s = poll_s
        self._offsets = {vm: _size(p) for vm, p in paths.items()}
        self._partial = {vm: "" for vm in paths}
        self.arrivals: dict[str, list[float]] = {vm: [] for vm in paths}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat-arrivals", daemon=True)

    def __enter__(self) -> ArrivalWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            now = time.monotonic()
            for vm, path in self._paths.items():
                try:
                    with open(path, "rb") as f:
                        f.seek(self._offsets[vm])
                        chunk = f.read()
                except FileNotFoundError:
                    continue
                if not chunk:
                    continue
                self._offsets[vm] += len(chunk)
                text = self._partial[vm] + chunk.decode("utf-8", errors="replace")
                lines = text.split("\n")
                self._partial[vm] = lines.pop()
                beats = sum(1 for line in lines if _LINE.search(line))
                if beats:
                    with self._lock:
                        self.arrivals[vm].extend([now] * beats)

    def max_gap_s(self, vm: str, start: float, end: float | None = None) -> float:
        """The longest time without a heartbeat line within [start, end] (host clock;
        end defaults to now). The guest's own timestamps cannot show a pause: its clock
        stops with it."""
        end = time.monotonic() if end is None else end
        with self._lock:
            times = [t for t in self.arrivals[vm] if start <= t <= end]
        points = [start, *times, end]
        return max((b - a for a, b in zip(points, points[1:], strict=False)), default=0.0)


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except FileNotFoundError:
        return 0
