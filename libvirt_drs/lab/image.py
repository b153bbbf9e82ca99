"""The guest image: a Debian kernel and a busybox initramfs with the burner, cached by content.

Kernel: vmlinuz out of the linux-image-*-amd64 package (`apt-get download`).
Initramfs: an uncompressed newc cpio of busybox-static, deploy/lab/guest/init and
deploy/lab/guest/drs-burn.c compiled with `gcc -static`. The cache key of the initramfs
is a hash of those inputs, so editing the guest sources rebuilds it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from libvirt_drs.errors import UserError

log = logging.getLogger(__name__)

CACHE_ENV = "DRS_LAB_CACHE"
DEFAULT_CACHE = "/var/cache/drs-lab"
# libvirt_drs/deploy is the repository's deploy/ (a symlink), installed with the package
GUEST_ASSETS = Path(__file__).resolve().parents[1] / "deploy" / "lab" / "guest"
KERNEL_META_PACKAGE = "linux-image-amd64"


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def ensure(cache: Path | None = None) -> GuestImage:
    """Kernel and initramfs paths in the cache, building whatever is missing."""
    cache = cache or cache_dir()
    (cache / "images").mkdir(parents=True, exist_ok=True)
    kernel = ensure_kernel(cache)
    return GuestImage(kernel=kernel, initrd=ensure_initrd(cache, ensure_modules(cache, kernel)))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _store(cache: Path, prefix: str, data: bytes) -> Path:
    """Write `data` under images/<prefix>-<hash> atomically; the name is the content key."""
    path = cache / "images" / f"{prefix}-{_sha(data)}"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return path


# --- kernel -----------------------------------------------------------------

def ensure_kernel(cache: Path) -> Path:
    index = cache / "images" / "kernel.current"
    if index.is_file():
        current = cache / "images" / index.read_text().strip()
        if current.is_file() and current.name.startswith("vmlinuz-"):
            return current
    deb = _kernel_deb(cache)
    kernel = _store(cache, "vmlinuz", _extract_vmlinuz(deb))
    index.write_text(kernel.name + "\n")
    return kernel


def _kernel_deb(cache: Path) -> Path:
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob("linux-image-*-amd64_*.deb"))
    if found:
        return found[-1]
    error = ""
    # Stale or missing package lists (a fresh machine, a kernel update since the last
    # `apt-get update`): refresh them once and try again.
    for attempt in ("cached lists", "after apt-get update"):
        if attempt != "cached lists":
            _apt(["apt-get", "update", "-q"])
        package = kernel_package(_apt(["apt-cache", "depends", KERNEL_META_PACKAGE]).stdout)
        if package is None:
            error = f"cannot resolve {KERNEL_META_PACKAGE} to a kernel package ({attempt})"
            continue
        log.warning("downloading the guest kernel package %s (about 70 MB)", package)
        res = _apt(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if res.returncode == 0 and found:
            return found[-1]
        error = f"apt-get download {package} failed ({_last_line(res.stderr)})"
    raise UserError(f"{error}; put a linux-image-*-amd64 .deb in {debs}")


def _apt(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if not line.startswith("W: ")]
    return (lines[-1] if lines else "no message")[-200:]


_VERSIONED_KERNEL = re.compile(r"linux-image-(\d[\w.+~-]*?)-amd64")


def kernel_package(depends_output: str) -> str | None:
    """The versioned kernel package named by `apt-cache depends linux-image-amd64`.

    The output starts with the metapackage's own name (which also looks like
    linux-image-*-amd64), then lines such as `  Depends: linux-image-6.1.0-41-amd64`;
    only Depends lines naming a versioned kernel count, and with several the newest wins.
    """
    found: list[tuple[tuple[str, ...], str]] = []
    for line in depends_output.splitlines():
        text = line.strip().lstrip("|")
        if not text.startswith("Depends:"):
            continue
        dep = text.removeprefix("Depends:").strip()
        match = _VERSIONED_KERNEL.fullmatch(dep)
        if match:
            # 6.1.0-41 > 6.1.0-9: compare numeric parts padded
            key = tuple(part.zfill(8) for part in re.split(r"[.\-+~]", match.group(1)))
            found.append((key, dep))
    if not found:
        return None
    return max(found)[1]


def _extract(deb: Path, wanted: Callable[[str], bool], count: int) -> dict[str, bytes]:
    """Stream the package's data tar and keep the files `wanted` (no full unpack); stops
    after `count` of them."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if member.isfile() and wanted(name):
                    f = tar.extractfile(member)
                    assert f is not None
                    found[name] = f.read()
                    if len(found) >= count:
                        break
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()
    return found


def _extract_vmlinuz(deb: Path) -> bytes:
    found = _extract(deb, lambda n: n.startswith("boot/vmlinuz-"), 1)
    if not found:
        raise UserError(f"{deb}: no boot/vmlinuz-* inside; is it a linux-image package?")
    return next(iter(found.values()))


# The virtio disk driver of the Debian kernel is a module (CONFIG_VIRTIO_BLK=m): a guest with
# a data disk loads these, in this order (deploy/lab/guest/init).
DISK_MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
                "virtio_pci", "virtio_blk")


def ensure_modules(cache: Path, kernel: Path) -> dict[str, bytes]:
    """The disk modules of `kernel`, from its package (kept beside it in the cache)."""
    folder = cache / "images" / f"modules-{kernel.name}"
    if all((folder / f"{m}.ko").is_file() for m in DISK_MODULES):
        return {m: (folder / f"{m}.ko").read_bytes() for m in DISK_MODULES}
    deb = _kernel_deb(cache)
    wanted = {f"{m}.ko" for m in DISK_MODULES}
    found = _extract(deb, lambda n: n.startswith("lib/modules/") and n.rsplit("/", 1)[-1] in wanted,
                     len(wanted))
    by_name = {n.rsplit("/", 1)[-1][:-3]: data for n, data in found.items()}
    missing = [m for m in DISK_MODULES if m not in by_name]
    if missing:
        raise UserError(f"{deb}: the kernel package lacks the modules {', '.join(missing)}")
    folder.mkdir(parents=True, exist_ok=True)
    for m, data in by_name.items():
        (folder / f"{m}.ko").write_bytes(data)
    return {m: by_name[m] for m in DISK_MODULES}


# --- initramfs --------------------------------------------------------------

def ensure_initrd(cache: Path, modules: dict[str, bytes] | None = None) -> Path:
    init = (GUEST_ASSETS / "init").read_bytes()
    source = (GUEST_ASSETS / "drs-burn.c").read_bytes()
    busybox_path = shutil.which("busybox")
    if busybox_path is None:
        raise UserError("busybox not found: apt-get install -y busybox-static")
    busybox = Path(busybox_path).read_bytes()
    modules = modules or {}
    key = _sha(init + b"\0" + source + b"\0" + busybox + b"".join(
        b"\0" + name.encode() + b"\0" + data for name, data in modules.items()))  # in load order
    index = cache / "images" / f"initrd-inputs-{key}"
    if index.is_file():
        built = cache / "images" / index.read_text().strip()
        if built.is_file():
            return built
    burner = _compile(source)
    files = [
        ("init", 0o100755, init),
        ("bin/busybox", 0o100755, busybox),
        ("bin/sh", 0o120777, b"busybox"),
        ("bin/drs-burn", 0o100755, burner),
        *((f"lib/modules/{name}.ko", 0o100644, data) for name, data in sorted(modules.items())),
        # the load order (dependencies first), read by the init
        *([("lib/modules/order", 0o100644, "".join(f"{m}\n" for m in modules).encode())]
          if modules else []),
    ]
    dirs = ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"]
    initrd = _store(cache, "initrd", newc(dirs, files, devices=[("dev/console", 5, 1)]))
    index.write_text(initrd.name + "\n")
    return initrd


def _compile(source: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="drs-lab-cc-") as tmp:
        src, out = Path(tmp) / "drs-burn.c", Path(tmp) / "drs-burn"
        src.write_bytes(source)
        res = subprocess.run(["gcc", "-O2", "-static", "-s", "-o", str(out), str(src)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise UserError(f"compiling the guest burner failed: {res.stderr.strip()[-300:]} "
                            "(apt-get install -y gcc libc6-dev)")
        return out.read_bytes()


def newc(dirs: list[str], files: list[tuple[str, int, bytes]],
         devices: list[tuple[str, int, int]] | None = None) -> bytes:
    """A deterministic newc ("070701") cpio archive: dirs, then (path, mode, data), then nodes."""
    out = bytearray()
    ino = 1

    def entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        nonlocal ino
        nlink = 2 if mode & 0o170000 == 0o040000 else 1
        fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        header = b"070701" + b"".join(b"%08X" % v for v in fields)
        out.extend(header + name.encode() + b"\0")
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))
        ino += 1

    for d in dirs:
        entry(d, 0o040755)
    for path, mode, data in files:
        entry(path, mode, data)
    for path, major, minor in devices or []:
        entry(path, 0o020600, rdev=(major, minor))
    entry("TRAILER!!!", 0)
    return bytes(out)
