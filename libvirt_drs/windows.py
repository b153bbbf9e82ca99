"""Balancing windows: when automatic mode may carry out balancing moves.

A window is `DAYS HH:MM-HH:MM` in the configured time zone, such as `Mon-Fri 22:00-06:00`
(a window whose end is not after its start runs past midnight into the next day),
`Sat,Sun 00:00-24:00` or `daily 01:00-05:00`. No window configured: always open.
Outside every window the service records its plan as a recommendation and carries out
only the mandatory moves (maintenance, rule violations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(r"^\s*(?P<days>[A-Za-z*,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*"
                   r"(?P<end>\d{1,2}:\d{2})\s*$")
WINDOW_EXPECTED = ("a window such as \"Mon-Fri 22:00-06:00\", \"Sat,Sun 00:00-24:00\" or "
                   "\"daily 01:00-05:00\" (days Mon..Sun, ranges, lists, daily or *)")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start_min: int  # minutes after midnight
    end_min: int  # 1..1440; <= start_min: ends the next day
    text: str

    def spans(self, day0: datetime) -> list[tuple[datetime, datetime]]:
        """The intervals this window opens on the day starting at `day0` (local midnight)."""
        if day0.weekday() not in self.days:
            return []
        start = day0 + timedelta(minutes=self.start_min)
        end_day = day0 if self.end_min > self.start_min else day0 + timedelta(days=1)
        return [(start, end_day + timedelta(minutes=self.end_min))]


def _minutes(text: str, allow_24: bool) -> int | None:
    hours, minutes = (int(x) for x in text.split(":"))
    value = hours * 60 + minutes
    if minutes > 59 or value > (1440 if allow_24 else 1439):
        return None
    return value


def _days(text: str) -> frozenset[int] | None:
    text = text.lower()
    if text in ("daily", "*"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first[:3] not in DAYS or (last and last[:3] not in DAYS):
            return None
        a = DAYS.index(first[:3])
        b = DAYS.index(last[:3]) if last else a
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


def parse_window(text: str) -> Window | None:
    """The window `text` describes, or None if it is not one (see WINDOW_EXPECTED)."""
    m = _SPEC.match(text)
    if m is None:
        return None
    days = _days(m["days"])
    start = _minutes(m["start"], allow_24=False)
    end = _minutes(m["end"], allow_24=True)
    if days is None or start is None or end is None or end == 0:
        return None
    return Window(days, start, end, text.strip())


def zone(name: str) -> tzinfo | None:
    """The time zone `name` ("" = this machine's local zone), or None if unknown."""
    if not name:
        return datetime.now().astimezone().tzinfo
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class WindowState:
    open: bool
    next_change_s: float | None  # when it opens or closes next (None: never, no windows)
    window: str | None  # the window that is open now, if any


def window_state(windows: tuple[Window, ...], tz: tzinfo, now_s: float) -> WindowState:
    if not windows:
        return WindowState(True, None, None)
    now = datetime.fromtimestamp(now_s, tz)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    spans: list[tuple[datetime, datetime, str]] = []
    for offset in range(-1, 9):  # yesterday's overnight window may still be open
        day0 = (midnight + timedelta(days=offset)).replace(hour=0, minute=0)
        for w in windows:
            spans += [(a, b, w.text) for a, b in w.spans(day0)]
    current = [(a, b, t) for a, b, t in spans if a <= now < b]
    if current:
        end = max(b for _a, b, _t in current)
        # adjoining windows keep it open: follow the chain of overlapping spans
        changed = True
        while changed:
            changed = False
            for a, b, _t in spans:
                if a <= end < b:
                    end, changed = b, True
        return WindowState(True, end.timestamp(), current[0][2])
    upcoming = [a for a, _b, _t in spans if a > now]
    return WindowState(False, min(upcoming).timestamp() if upcoming else None, None)
