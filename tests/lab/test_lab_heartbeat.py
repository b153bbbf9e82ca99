from __future__ import annotations

import threading
import time
from pathlib import Path

from libvirt_drs.lab import heartbeat
from libvirt_drs.lab.heartbeat import Beat
from libvirt_drs.lab.lab import Lab
from libvirt_drs.lab.state import LabState, LabVm

LOG = """[    0.812345] some kernel warning
DRS-READY burn=20 touch=64 dirty=4 clocksource=tsc
DRS-HB 1 1700000000.000100
DRS-HB 2 1700000001.000100
[    3.1] torn DRS-HB 3 1700000002.000200
DRS-HB 4 1700000003.400000
"""


def test_parse_skips_noise_and_keeps_order() -> None:
    beats = heartbeat.parse(LOG)
    assert [b.counter for b in beats] == [1, 2, 3, 4]
    assert beats[0] == Beat(1, 1700000000.0001)


def test_gap_and_missing_counters() -> None:
    beats = heartbeat.parse(LOG)
    assert abs(heartbeat.max_gap_s(beats) - 1.3998) < 1e-6
    assert heartbeat.missing_counters(beats) == []
    assert heartbeat.missing_counters([Beat(1, 0.0), Beat(4, 3.0)]) == [2, 3]
    assert heartbeat.missing_counters([Beat(7, 0.0), Beat(1, 1.0)]) == [-1]  # rebooted
    assert heartbeat.max_gap_s(beats[:1]) == 0.0


def test_read_and_since(tmp_path: Path) -> None:
    log = tmp_path / "vm.log"
    assert heartbeat.read(log) == [] and heartbeat.last(log) is None
    log.write_text(LOG)
    assert heartbeat.last(log) == Beat(4, 1700000003.4)
    assert [b.counter for b in heartbeat.since(heartbeat.read(log), 1700000001.5)] == [3, 4]


def test_last_oops_tells_a_crashed_guest_from_a_beating_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "serial.log"
    log.write_text("DRS-HB 1 1.0\nDRS-HB 2 2.0\n")
    assert heartbeat.last_oops(log) is None
    log.write_text("DRS-HB 1 1.0\n[ 21.7] RIP: 0010:0xffff8d18\n"
                   "[ 21.8] Kernel panic - not syncing: Fatal exception in interrupt\n")
    assert "Kernel panic" in (heartbeat.last_oops(log) or "")
    log.write_text("[ 1.0] BUG: soft lockup\nDRS-HB 1 1.0\n")  # beating again afterwards
    assert heartbeat.last_oops(log) is None
    assert heartbeat.last_oops(tmp_path / "missing.log") is None


def _append_later(path: Path, lines: str, delay_s: float = 0.3) -> threading.Thread:
    def write() -> None:
        time.sleep(delay_s)
        with path.open("a") as f:
            f.write(lines)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_wait_alive_counts_new_lines_and_tells_a_reboot(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("DRS-HB 41 1700000000.0 0\nDRS-HB 42 1700000001.0 0\n")
    _append_later(log, "DRS-HB 43 1700000002.0 0\nDRS-HB 44 1700000003.0 0\n").join(0)
    health = heartbeat.wait_alive(log, timeout_s=5)
    assert health.resumed and not health.rebooted and health.problem is None
    # the guest crashed and rebooted: its counter starts again at 1
    _append_later(log, "[ 0.1] Linux version\nDRS-HB 1 1700000090.0\nDRS-HB 2 1700000091.0\n")
    health = heartbeat.wait_alive(log, timeout_s=5)
    assert health.resumed and health.rebooted
    assert health.problem == "guest rebooted (heartbeat counter restarted)"
    silent = heartbeat.wait_alive(log, timeout_s=0.5)
    assert not silent.resumed and silent.problem == "stopped beating"


def test_wait_alive_names_a_memory_mismatch_since_the_mark(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("DRS-HB 1 1700000000.0 0\n"
                   "DRS-MEMERR page=3 word=0 want=01 got=02 gen=4\n"  # before the mark
                   "DRS-HB 2 1700000001.0 1\n")
    before = heartbeat.mark(log)
    assert before == heartbeat.Mark(beats=2, mem_errors=1)
    _append_later(log, "DRS-HB 3 1700000002.0 1\nDRS-HB 4 1700000003.0 1\n").join(0)
    assert heartbeat.wait_alive(log, timeout_s=5, since=before).problem is None
    after = heartbeat.mark(log)
    _append_later(log, "DRS-MEMERR page=1024 word=7 want=841c got=841d gen=1\n"
                       "DRS-HB 5 1700000004.0 2\nDRS-HB 6 1700000005.0 2\n").join(0)
    health = heartbeat.wait_alive(log, timeout_s=5, since=after)
    assert health.resumed and not health.rebooted
    assert health.problem == ("memory mismatch (1 report(s)): "
                              "DRS-MEMERR page=1024 word=7 want=841c got=841d gen=1")
    assert heartbeat.read(log)[-1] == heartbeat.Beat(6, 1700000005.0, 2)


def test_a_guest_stuck_after_an_oops_counts_as_dead(tmp_path: Path) -> None:
    """reset_placement() restarts such a guest even though soft-lockup reports keep its
    serial log growing (seen in CI after a TCG live migration)."""
    log = tmp_path / "vm1.log"
    vm = LabVm(name="vm1", host="h1", burn_pct=10, mem_mib=256, touch_mib=32, dirty_mib_s=4,
                 disk_mib=0, uuid="u", serial_log=str(log))
    lab = Lab(LabState(name="t", dir=str(tmp_path), storage="shared", host_cpu_cores=1.0,
                       host_mem_mib=1024, kernel="", initrd="", vms=[vm]))
    log.write_text("DRS-HB 7 1700000007.0\n")
    assert not lab.dead(vm)
    log.write_text("DRS-HB 7 1700000007.0\n[ 18.3] Kernel panic - not syncing: Attempted to "
                   "kill the idle task!\n[ 36.6] watchdog: BUG: soft lockup - CPU#0 stuck\n")
    assert lab.dead(vm)
    log.write_text(log.read_text() + "DRS-HB 1 1700000090.0\n")  # restarted, beating again
    assert not lab.dead(vm)


def test_arrival_watch_times_new_beats_by_the_host_clock(tmp_path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("DRS-HB 1 1.000 0\n")  # already there when watching starts: not an arrival
    with heartbeat.ArrivalWatch({"vm": str(log)}, poll_s=0.01) as watch:
        start = time.monotonic()
        with log.open("a") as f:
            f.write("DRS-HB 2 2.000 0\nnoise\nDRS-HB 3 ")  # the third line is not complete yet
            f.flush()
            time.sleep(0.3)
            f.write("3.000 0\n")
            f.flush()
            time.sleep(0.3)
        end = time.monotonic()
    assert len(watch.arrivals["vm"]) == 2
    assert 0.25 <= watch.max_gap_s("vm", start, end) <= end - start


def test_last_before_boot_is_the_last_beat_before_the_newest_disk_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "vm.log"
    log.write_text("DRS-DISK-START 0\nDRS-HB 1 10.0 0 1\nDRS-HB 2 11.0 0 2\n"
                   "DRS-DISK-START 2\nDRS-HB 1 20.0 0 3\nDRS-HB 2 21.0 0 4\n")
    before = heartbeat.last_before_boot(log)
    assert before is not None and (before.counter, before.disk_writes) == (2, 2)
    log.write_text("DRS-HB 1 10.0 0 1\n")
    assert heartbeat.last_before_boot(log) is None  # no boot seen
    assert heartbeat.last_before_boot(tmp_path / "missing.log") is None


def test_beats_since_boot_are_the_beats_after_the_newest_disk_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "vm.log"
    log.write_text("DRS-DISK-START 0\nDRS-HB 1 10.0 0 1\nDRS-HB 2 11.0 0 2\nDRS-DISK-START 2\n")
    assert heartbeat.beats_since_boot(log) == []  # the new boot has not beaten yet
    with log.open("a") as f:
        f.write("DRS-HB 1 20.0 0 3\n")
    assert [b.counter for b in heartbeat.beats_since_boot(log)] == [1]
    log.write_text("DRS-HB 1 10.0 0 0\nDRS-HB 2 11.0 0 0\n")  # no disk: every beat counts
    assert len(heartbeat.beats_since_boot(log)) == 2
    assert heartbeat.beats_since_boot(tmp_path / "missing.log") == []
