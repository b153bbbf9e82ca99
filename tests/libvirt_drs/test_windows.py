"""Balancing windows: parsing, open/closed at a given time, the next change."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from libvirt_drs.windows import parse_window, window_state, zone

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


@pytest.mark.parametrize("text", ["Mon-Fri 22:00-06:00", "Sat,Sun 00:00-24:00",
                                  "daily 01:00-05:00", "* 9:30-10:00", "Fri-Mon 20:00-23:00"])
def test_valid_windows_parse(text: str) -> None:
    assert parse_window(text) is not None


@pytest.mark.parametrize("text", ["", "Mon", "Mon-Fry 22:00-06:00", "Mon 25:00-06:00",
                                  "Mon 10:61-11:00", "Mon 10:00-00:00", "Mon 10:00 11:00"])
def test_invalid_windows_are_refused(text: str) -> None:
    assert parse_window(text) is None


def test_overnight_window_is_open_after_midnight_and_closed_by_day() -> None:
    w = (parse_window("Mon-Fri 22:00-06:00"),)
    assert w[0] is not None
    windows = tuple(x for x in w if x is not None)
    # Tuesday 03:00 belongs to Monday's window; Tuesday 12:00 does not
    open_ = window_state(windows, BERLIN, at("2026-12-01T03:00"))
    assert open_.open and open_.next_change_s == at("2026-12-01T06:00")
    closed = window_state(windows, BERLIN, at("2026-12-01T12:00"))
    assert not closed.open and closed.next_change_s == at("2026-12-01T22:00")
    # Saturday 03:00 still belongs to Friday's window, Sunday 03:00 to none
    assert window_state(windows, BERLIN, at("2026-12-05T03:00")).open
    sunday = window_state(windows, BERLIN, at("2026-12-06T03:00"))
    assert not sunday.open and sunday.next_change_s == at("2026-12-07T22:00")


def test_adjoining_windows_stay_open_across_the_join() -> None:
    windows = tuple(x for x in (parse_window("Sat 00:00-24:00"), parse_window("Sun 00:00-12:00"))
                    if x is not None)
    state = window_state(windows, BERLIN, at("2026-12-05T23:00"))
    assert state.open and state.next_change_s == at("2026-12-06T12:00")


def test_no_window_means_always_open() -> None:
    state = window_state((), BERLIN, at("2026-12-01T12:00"))
    assert state.open and state.next_change_s is None


def test_zones() -> None:
    assert zone("") is not None and zone("UTC") is not None
    assert zone("Mars/Olympus") is None
