"""What `lab up` needs from the machine; every missing piece is named with its fix."""

from __future__ import annotations

import grp
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from libvirt_drs.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Need:
    what: str  # an executable name or a file path
    package: str  # the Debian package providing it


NEEDS = (
    Need("libvirtd", "libvirt-daemon"),
    Need("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so",
         "libvirt-daemon-driver-qemu"),
    Need("qemu-system-x86_64", "qemu-system-x86"),
    Need("qemu-img", "qemu-utils"),
    Need("busybox", "busybox-static"),
    Need("unshare", "util-linux"),
    Need("mount", "mount"),
    Need("dpkg-deb", "dpkg"),
    Need("apt-get", "apt"),
    Need("gcc", "gcc"),
    Need("/usr/lib/x86_64-linux-gnu/libc.a", "libc6-dev"),
)


def missing(needs: tuple[Need, ...] = NEEDS) -> list[Need]:
    gone = []
    for need in needs:
        found = Path(need.what).exists() if need.what.startswith("/") else shutil.which(need.what)
        if not found:
            gone.append(need)
    busybox = shutil.which("busybox")
    if busybox and not _is_static(Path(busybox)):
        gone.append(Need("a statically linked busybox", "busybox-static"))
    return gone


def _is_static(path: Path) -> bool:
    """An ELF file without a PT_INTERP program header needs no dynamic loader."""
    try:
        out = subprocess.run(["readelf", "-l", str(path)], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return b"/lib64/ld-linux" not in path.read_bytes()[:65536]
    return "INTERP" not in out


def check(create_accounts: bool = True) -> None:
    """Raise UserError naming every missing package and the command that installs it."""
    if os.geteuid() != 0:
        raise UserError("the lab needs root (it mounts and runs libvirtd): run as root")
    gone = missing()
    if importlib.util.find_spec("libvirt") is None:
        gone.append(Need("python module libvirt", "libvirt-python (pip)"))
    apt = sorted({n.package for n in gone if "(pip)" not in n.package})
    if gone:
        parts = [f"missing: {', '.join(n.what for n in gone)}"]
        if apt:
            parts.append(f"install with: apt-get update && apt-get install -y {' '.join(apt)}")
        if any("(pip)" in n.package for n in gone):
            parts.append("and: apt-get install -y libvirt-dev pkg-config && "
                         "pip install libvirt-python")
        raise UserError("; ".join(parts))
    if create_accounts:
        ensure_accounts()


def ensure_accounts(root: Path | None = None) -> None:
    """The QEMU driver refuses to load without user/group libvirt-qemu and group kvm.

    `root`: create them in the system rooted there (useradd/groupadd --root) instead of
    this one; the test of the fresh-machine path uses it.
    """
    at = ["--root", str(root)] if root is not None else []
    for group in ("kvm", "libvirt-qemu"):
        if not _has_account(root, "group", group):
            log.warning("creating system group %s (needed by libvirt's QEMU driver)", group)
            _run(["groupadd", *at, "-r", group])
    if not _has_account(root, "passwd", "libvirt-qemu"):
        log.warning("creating system user libvirt-qemu (needed by libvirt's QEMU driver)")
        _run(["useradd", *at, "-r", "-g", "libvirt-qemu", "-G", "kvm", "-d", "/var/lib/libvirt",
              "-s", "/usr/sbin/nologin", "libvirt-qemu"])


def _has_account(root: Path | None, database: str, name: str) -> bool:
    if root is None:
        try:
            (grp.getgrnam if database == "group" else pwd.getpwnam)(name)
        except KeyError:
            return False
        return True
    lines = (root / "etc" / database).read_text().splitlines()
    return any(line.split(":", 1)[0] == name for line in lines)


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
