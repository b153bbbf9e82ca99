from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from libvirt_drs.errors import UserError
from libvirt_drs.lab import guest, heartbeat, image, prereqs
from libvirt_drs.lab.state import LabVm


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_newc_archive_lists_with_cpio(tmp_path: Path) -> None:
    data = image.newc(["bin", "dev"], [("init", 0o100755, b"#!/bin/sh\n"),
                                       ("bin/sh", 0o120777, b"busybox")],
                      devices=[("dev/console", 5, 1)])
    out = subprocess.run(["cpio", "-t"], input=data, capture_output=True, check=True).stdout
    assert out.decode().split() == ["bin", "dev", "init", "bin/sh", "dev/console"]


def test_missing_prerequisites_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 0)
    monkeypatch.setattr(prereqs.shutil, "which", lambda name: None)
    with pytest.raises(UserError) as err:
        prereqs.check(create_accounts=False)
    text = str(err.value)
    assert "apt-get install -y" in text
    for package in ("libvirt-daemon", "qemu-system-x86", "qemu-utils", "busybox-static"):
        assert package in text


def test_domain_xml_is_tcg_with_appending_serial_log() -> None:
    vm = LabVm(name="vm1", host="h1", burn_pct=20, mem_mib=256, touch_mib=64, dirty_mib_s=4,
                 disk_mib=64, uuid="3f0a7f38-5b7c-4cbe-9e4c-0e9d7a1d2f11",
                 serial_log="/var/tmp/drs-lab/x/serial/vm1.log",
                 disk_path="/var/lib/libvirt/images/vm1.qcow2")
    xml = guest.domain_xml(vm, "/cache/vmlinuz", "/cache/initrd")
    assert "<domain type='qemu'>" in xml
    assert "drs.burn=20 drs.touch=64 drs.dirty=4" in xml
    assert "append='on'" in xml and "type='qcow2'" in xml


# `apt-cache depends linux-image-amd64` on Debian 12: the first line is the metapackage's
# own name, which also starts with linux-image- and ends with -amd64.
APT_CACHE_DEPENDS = """linux-image-amd64
  Depends: linux-image-6.1.0-57-amd64
"""


def test_kernel_package_skips_the_metapackage_line() -> None:
    assert image.kernel_package(APT_CACHE_DEPENDS) == "linux-image-6.1.0-57-amd64"


def test_kernel_package_survives_a_version_bump_and_alternatives() -> None:
    text = ("linux-image-amd64\n"
            " |Depends: linux-image-6.1.0-9-amd64\n"
            "  Depends: linux-image-6.1.0-41-amd64\n"
            "  Breaks: linux-image-7.0.0-1-amd64\n"
            "  Depends: <linux-image-virtual>\n")
    assert image.kernel_package(text) == "linux-image-6.1.0-41-amd64"
    assert image.kernel_package("linux-image-amd64\n  Depends: linux-image-6.12.9+bpo-amd64\n") \
        == "linux-image-6.12.9+bpo-amd64"


def test_kernel_package_none_without_a_versioned_dependency() -> None:
    assert image.kernel_package("linux-image-amd64\n") is None
    assert image.kernel_package("") is None
    assert image.kernel_package("  Depends: linux-image-amd64\n") is None


@pytest.mark.lab
def test_guest_image_builds_from_an_empty_cache(tmp_path: Path) -> None:
    """The fresh-machine path: kernel package resolved and downloaded, vmlinuz extracted,
    initramfs compiled and packed, from an empty cache. Under CI the whole session's cache
    started empty (tests/conftest.py), so this is the build every lab then reuses."""
    from tests.conftest import fresh_image_cache, fresh_image_wanted  # noqa: PLC0415

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("needs root and apt-get")
    if fresh_image_wanted():
        cache = fresh_image_cache()
        assert cache is not None and os.environ[image.CACHE_ENV] == cache
        cache_path = Path(cache)
    else:
        cache_path = tmp_path / "cache"  # a developer's run: an empty cache of its own
    built = image.ensure(cache_path)
    debs = [p.name for p in (cache_path / "debs").glob("*.deb")]
    assert len(debs) == 1 and image.kernel_package(f"  Depends: {debs[0].split('_')[0]}") \
        is not None, debs
    kernel = built.kernel.read_bytes()
    assert kernel[0x202:0x206] == b"HdrS", "not a bzImage"
    listing = subprocess.run(["cpio", "-t"], input=built.initrd.read_bytes(),
                             capture_output=True, check=True).stdout.decode().split()
    assert {"init", "bin/busybox", "bin/drs-burn"} <= set(listing)
    # the virtio disk driver of the same kernel, for guests with a data disk
    assert {f"lib/modules/{m}.ko" for m in image.DISK_MODULES} <= set(listing)


@pytest.fixture(scope="module")
def burner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    out = tmp_path_factory.mktemp("burner") / "drs-burn"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(image.GUEST_ASSETS / "drs-burn.c")],
                   check=True)
    return out


def _run_burner(burner: Path, cmdline: str, seconds: float) -> str:
    """The guest workload run on this host for `seconds` (argv[1] stands for /proc/cmdline)."""
    proc = subprocess.Popen([str(burner), cmdline], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def test_guest_memory_self_check_is_clean_while_rewriting(burner: Path, tmp_path: Path) -> None:
    out = _run_burner(burner, "drs.burn=5 drs.touch=4 drs.dirty=16 drs.hb_ms=100", 1.5)
    log = tmp_path / "serial.log"
    log.write_text(out)
    beats = heartbeat.read(log)
    assert len(beats) >= 5 and "verify=on" in out
    assert heartbeat.memory_errors(log) == [] and beats[-1].mem_errors == 0


def test_guest_memory_self_check_names_a_flipped_word(burner: Path, tmp_path: Path) -> None:
    out = _run_burner(burner, "drs.burn=5 drs.touch=4 drs.dirty=16 drs.hb_ms=100 "
                              "drs.corrupt_at_s=0", 1.5)
    log = tmp_path / "serial.log"
    log.write_text(out)
    [report] = heartbeat.memory_errors(log)
    assert report.startswith("DRS-MEMERR page=512 word=7 ")  # the middle page of 4 MiB
    assert heartbeat.read(log)[-1].mem_errors == 1


def test_guest_disk_counter_continues_across_restarts(burner: Path) -> None:
    """The data disk holds the write counter: a second boot from the same disk starts
    where the first stopped (what HA and disaster-recovery tests read from the disk)."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:  # O_DIRECT: not on tmpfs
        disk = Path(tmp) / "disk.img"
        disk.write_bytes(b"\0" * 65536)
        first = _run_burner(burner, f"drs.burn=1 drs.hb_ms=100 drs.disk={disk}", 1.2)
        second = _run_burner(burner, f"drs.burn=1 drs.hb_ms=100 drs.disk={disk}", 1.2)
    log1, log2 = Path(tmp + ".1"), Path(tmp + ".2")
    try:
        log1.write_text(first)
        log2.write_text(second)
        assert heartbeat.disk_starts(log1) == [0]
        written = heartbeat.read(log1)[-1].disk_writes
        assert written >= 5
        [start] = heartbeat.disk_starts(log2)
        # every write the first run printed is on the disk (and maybe the one it was
        # killed before printing)
        assert written <= start <= written + 1
        assert heartbeat.read(log2)[0].disk_writes == start + 1
    finally:
        log1.unlink(missing_ok=True)
        log2.unlink(missing_ok=True)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                    reason="needs root and useradd")
def test_lab_accounts_are_created_on_a_machine_without_them(tmp_path: Path) -> None:
    """A fresh machine has no libvirt-qemu user nor kvm group until the lab makes them (this
    machine got them from an earlier run, so the creation is proven in an empty root)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o600)
    prereqs.ensure_accounts(root=tmp_path)
    passwd = (etc / "passwd").read_text()
    group = (etc / "group").read_text()
    assert any(line.startswith("libvirt-qemu:") for line in passwd.splitlines())
    kvm = next(line for line in group.splitlines() if line.startswith("kvm:"))
    assert kvm.endswith(":libvirt-qemu")  # the user is a member of kvm
    assert any(line.startswith("libvirt-qemu:") for line in group.splitlines())
    prereqs.ensure_accounts(root=tmp_path)  # idempotent: nothing created twice
    assert (etc / "passwd").read_text() == passwd
