"""Write a qcow2 image as one sequential stream: a replica's recovery point.

A recovery point is a qcow2 file holding the clusters written since the point before it
(its backing file); the first point holds the whole disk and has no backing. The file is
streamed to the recovery host through libvirt's storage volume upload, so its layout is
fixed before the first byte goes out: header (with the backing file name), L1 table,
refcount table and blocks, L2 tables, then the data clusters in order. Clusters known to
read as zeros (from NBD base:allocation) take no data: the zero flag in an overlay, nothing
at all in a first point (unallocated reads as zeros there).
Format: https://gitlab.com/qemu-project/qemu/-/blob/master/docs/interop/qcow2.txt
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

CLUSTER_BITS = 16
CLUSTER_BYTES = 1 << CLUSTER_BITS
L2_ENTRIES = CLUSTER_BYTES // 8
REFCOUNT_ORDER = 4  # 16-bit refcounts
REFCOUNTS_PER_BLOCK = CLUSTER_BYTES * 8 // (1 << REFCOUNT_ORDER)
HEADER_BYTES = 104
EXT_BACKING_FORMAT = 0xE2792ACA
COPIED = 1 << 63
ZERO_FLAG = 1


def _clusters(n_bytes: int) -> int:
    return -(-n_bytes // CLUSTER_BYTES)


@dataclass(frozen=True)
class Layout:
    """Where everything of the image goes, in clusters from the start of the file."""

    size_bytes: int
    data: tuple[int, ...]  # guest cluster indices stored with data, ascending
    zero: tuple[int, ...]  # guest cluster indices marked as reading zeros (overlays only)
    l1_entries: int
    l1_clusters: int
    refcount_table_clusters: int
    refcount_blocks: int
    l2_indices: tuple[int, ...]  # L1 indices that get an L2 table, ascending

    @property
    def l1_at(self) -> int:
        return 1

    @property
    def refcount_table_at(self) -> int:
        return self.l1_at + self.l1_clusters

    @property
    def refcount_blocks_at(self) -> int:
        return self.refcount_table_at + self.refcount_table_clusters

    @property
    def l2_at(self) -> int:
        return self.refcount_blocks_at + self.refcount_blocks

    @property
    def data_at(self) -> int:
        return self.l2_at + len(self.l2_indices)

    @property
    def total_clusters(self) -> int:
        return self.data_at + len(self.data)

    @property
    def file_bytes(self) -> int:
        return self.total_clusters * CLUSTER_BYTES


def layout(size_bytes: int, data: Sequence[int], zero: Sequence[int] = ()) -> Layout:
    data_t = tuple(sorted(set(data)))
    zero_t = tuple(sorted(set(zero) - set(data_t)))
    n_guest = _clusters(size_bytes)
    if any(c < 0 or c >= n_guest for c in (*data_t, *zero_t)):
        raise ValueError("cluster index outside the disk")
    l1_entries = max(1, -(-n_guest // L2_ENTRIES))
    l1_clusters = _clusters(l1_entries * 8)
    l2_indices = tuple(sorted({c // L2_ENTRIES for c in (*data_t, *zero_t)}))
    fixed = 1 + l1_clusters + len(l2_indices) + len(data_t)
    rb, rt = 1, 1
    while True:  # refcount structures count themselves
        total = fixed + rb + rt
        need_rb = -(-total // REFCOUNTS_PER_BLOCK)
        need_rt = _clusters(need_rb * 8)
        if (need_rb, need_rt) == (rb, rt):
            break
        rb, rt = max(rb, need_rb), max(rt, need_rt)
    return Layout(size_bytes, data_t, zero_t, l1_entries, l1_clusters, rt, rb, l2_indices)


def _header(lay: Layout, backing: str, backing_format: str) -> bytes:
    ext = b""
    if backing:
        fmt = backing_format.encode()
        ext += struct.pack(">II", EXT_BACKING_FORMAT, len(fmt)) + fmt + b"\0" * (-len(fmt) % 8)
    ext += struct.pack(">II", 0, 0)
    name = backing.encode()
    backing_offset = HEADER_BYTES + len(ext) if backing else 0
    head = struct.pack(">IIQIIQIIQQIIQQQQII", 0x514649FB, 3, backing_offset, len(name),
                       CLUSTER_BITS, lay.size_bytes, 0, lay.l1_entries,
                       lay.l1_at * CLUSTER_BYTES, lay.refcount_table_at * CLUSTER_BYTES,
                       lay.refcount_table_clusters, 0, 0, 0, 0, 0, REFCOUNT_ORDER, HEADER_BYTES)
    out = head + ext + name
    if len(out) > CLUSTER_BYTES:
        raise ValueError("backing file name too long for the header cluster")
    return out + b"\0" * (CLUSTER_BYTES - len(out))


def _pad(table: bytes, clusters: int) -> bytes:
    return table + b"\0" * (clusters * CLUSTER_BYTES - len(table))


def stream(lay: Layout, read: Callable[[int, int], bytes], backing: str = "",
           backing_format: str = "qcow2", chunk_clusters: int = 64) -> Iterator[bytes]:
    """The image's bytes, in file order. `read(offset, length)` gives guest data (only the
    clusters in lay.data are read, in runs of up to chunk_clusters)."""
    yield _header(lay, backing, backing_format)
    l2_slot = {idx: lay.l2_at + i for i, idx in enumerate(lay.l2_indices)}
    l1 = [0] * lay.l1_entries
    for idx, slot in l2_slot.items():
        l1[idx] = (slot * CLUSTER_BYTES) | COPIED
    yield _pad(struct.pack(f">{lay.l1_entries}Q", *l1), lay.l1_clusters)
    rblocks = [(lay.refcount_blocks_at + i) * CLUSTER_BYTES for i in range(lay.refcount_blocks)]
    yield _pad(struct.pack(f">{len(rblocks)}Q", *rblocks), lay.refcount_table_clusters)
    refcounts = [1] * lay.total_clusters + [0] * (lay.refcount_blocks * REFCOUNTS_PER_BLOCK
                                                  - lay.total_clusters)
    yield struct.pack(f">{len(refcounts)}H", *refcounts)
    host_of = {c: lay.data_at + i for i, c in enumerate(lay.data)}
    zero = set(lay.zero)
    for idx in lay.l2_indices:
        entries = []
        for c in range(idx * L2_ENTRIES, (idx + 1) * L2_ENTRIES):
            if c in host_of:
                entries.append((host_of[c] * CLUSTER_BYTES) | COPIED)
            elif c in zero:
                entries.append(ZERO_FLAG)
            else:
                entries.append(0)
        yield struct.pack(f">{L2_ENTRIES}Q", *entries)
    for run_start, run_len in _runs(lay.data, chunk_clusters):
        offset = run_start * CLUSTER_BYTES
        length = min(run_len * CLUSTER_BYTES, lay.size_bytes - offset)
        buf = read(offset, length)
        if len(buf) != length:
            raise ValueError(f"read {len(buf)} bytes at {offset}, wanted {length}")
        yield buf + b"\0" * (run_len * CLUSTER_BYTES - length)


def _runs(clusters: Sequence[int], max_len: int) -> Iterator[tuple[int, int]]:
    """Consecutive cluster indices grouped as (first, count), count <= max_len."""
    start, n = -1, 0
    for c in clusters:
        if n and c == start + n and n < max_len:
            n += 1
            continue
        if n:
            yield start, n
        start, n = c, 1
    if n:
        yield start, n


def clusters_of(extents: Sequence[tuple[int, int]]) -> list[int]:
    """Guest cluster indices touched by byte extents (offset, length)."""
    out: set[int] = set()
    for offset, length in extents:
        if length > 0:
            out.update(range(offset // CLUSTER_BYTES, (offset + length - 1) // CLUSTER_BYTES + 1))
    return sorted(out)


def clusters_within(extents: Sequence[tuple[int, int]]) -> list[int]:
    """Guest cluster indices lying wholly inside byte extents (offset, length)."""
    out: set[int] = set()
    for offset, length in extents:
        first = -(-offset // CLUSTER_BYTES)
        end = (offset + length) // CLUSTER_BYTES
        out.update(range(first, end))
    return sorted(out)
