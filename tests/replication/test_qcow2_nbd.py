"""Recovery points written by our qcow2 stream writer from our NBD client, checked by QEMU's
own tools: qemu-img check finds them sound and qemu-img compare finds them equal to the
disk they copy (a real qemu-nbd serves the disk and its dirty bitmap)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from libvirt_drs.replication import qcow2
from libvirt_drs.replication.nbd import BASE_ALLOCATION, NbdClient, NbdError, dirty_bitmap_context

MIB = 1 << 20


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def io(image: Path, *commands: str) -> None:
    run("qemu-io", *[a for c in commands for a in ("-c", c)], str(image))


class Served:
    """qemu-nbd exporting a disk (read-only) as `vdb`, optionally with a dirty bitmap."""

    def __init__(self, disk: Path, sock: Path, bitmap: str = ""):
        self.sock = sock
        sock.unlink(missing_ok=True)
        self.proc = subprocess.Popen(["qemu-nbd", "-r", "-f", "qcow2", *(["-B", bitmap] if bitmap else []),
                                      "-k", str(sock), "-x", "vdb", "-t", str(disk)])
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """A 20 MiB disk (not a whole number of clusters) with data in two places."""
    path = tmp_path / "disk.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", str(path), "20M")
    io(path, "write -P 0x11 0 3M", "write -P 0x12 19M 1M")
    return path


def write_point(path: Path, client: NbdClient, data: list[int], zero: list[int],
                backing: str = "") -> qcow2.Layout:
    lay = qcow2.layout(client.size_bytes, data, zero)
    with path.open("wb") as f:
        for chunk in qcow2.stream(lay, client.read, backing=backing):
            f.write(chunk)
    assert path.stat().st_size == lay.file_bytes
    return lay


def test_a_full_point_then_an_incremental_one_equal_the_disk_at_each_time(
        disk: Path, tmp_path: Path) -> None:
    sock = tmp_path / "nbd.sock"
    with Served(disk, sock), NbdClient.connect_unix(str(sock), "vdb", (BASE_ALLOCATION,)) as c:
        assert c.size_bytes == 20 * MIB
        zero = qcow2.clusters_within([(e.offset, e.length) for e in c.extents(BASE_ALLOCATION)
                                      if e.flags & 2])
        data = [i for i in range(-(-c.size_bytes // qcow2.CLUSTER_BYTES)) if i not in set(zero)]
        full = write_point(tmp_path / "p0.qcow2", c, data, [])  # no backing: zeros take nothing
    assert len(full.data) == 64  # 3 MiB + 1 MiB of data in 64 KiB clusters
    run("qemu-img", "convert", "-O", "qcow2", str(disk), str(tmp_path / "then.qcow2"))

    run("qemu-img", "bitmap", "--add", str(disk), "b0")  # the checkpoint of point 0
    io(disk, "write -P 0x22 4M 64k", "write -z 1M 128k", "write -P 0x33 19M 4k")
    contexts = (BASE_ALLOCATION, dirty_bitmap_context("b0"))
    with Served(disk, sock, "b0"), NbdClient.connect_unix(str(sock), "vdb", contexts) as c:
        dirty = [(e.offset, e.length) for e in c.dirty_extents("b0")]
        assert dirty == [(1 * MIB, 128 << 10), (4 * MIB, 64 << 10), (19 * MIB, 64 << 10)]
        zero_now = set(qcow2.clusters_within([(e.offset, e.length)
                                              for e in c.extents(BASE_ALLOCATION) if e.flags & 2]))
        changed = qcow2.clusters_of(dirty)
        inc = write_point(tmp_path / "p1.qcow2", c, [x for x in changed if x not in zero_now],
                          [x for x in changed if x in zero_now], backing=str(tmp_path / "p0.qcow2"))
    assert (len(inc.data), len(inc.zero)) == (2, 2)
    for p in ("p0.qcow2", "p1.qcow2"):
        run("qemu-img", "check", str(tmp_path / p))
    compare = ("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2")
    run(*compare, str(tmp_path / "p1.qcow2"), str(disk))  # the chain is the disk now
    run(*compare, str(tmp_path / "p0.qcow2"), str(tmp_path / "then.qcow2"))  # point 0 then
    with pytest.raises(subprocess.CalledProcessError):
        run(*compare, str(tmp_path / "p0.qcow2"), str(disk))


def test_an_unknown_bitmap_is_a_clear_error(disk: Path, tmp_path: Path) -> None:
    sock = tmp_path / "nbd.sock"
    with Served(disk, sock), pytest.raises(NbdError, match="no meta context qemu:dirty-bitmap:nope"):
        NbdClient.connect_unix(str(sock), "vdb", (dirty_bitmap_context("nope"),))


def test_layout_counts_its_own_refcount_blocks() -> None:
    # 40 GiB of data clusters need more than one refcount block (each covers 2 GiB of file)
    lay = qcow2.layout(64 << 30, range(0, 40 << 14))
    assert lay.refcount_blocks == -(-lay.total_clusters // qcow2.REFCOUNTS_PER_BLOCK)
    assert lay.refcount_table_clusters == 1
