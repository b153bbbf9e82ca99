from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from drs.errors import UserError
from drs.lab import guest, image, prereqs
from drs.lab.state import VmState


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
    vm = VmState(name="vm1", host="h1", burn_pct=20, mem_mib=256, touch_mib=64, dirty_mib_s=4,
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
