"""A small NBD client: what replication reads from a libvirt pull-mode backup.

libvirt's pull-mode backup exports each disk over NBD (QEMU's built-in server), frozen at
the backup's checkpoint; an incremental backup also exposes the blocks written since the
previous checkpoint as the meta context `qemu:dirty-bitmap:backup-<disk>`. This client
speaks just enough of the protocol (fixed newstyle handshake, structured replies, meta
contexts, READ and BLOCK_STATUS) to list those extents and read them.
Protocol: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC_OPT = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_SET_META_CONTEXT = 10
REP_ACK = 1
REP_INFO = 3
REP_META_CONTEXT = 4
REP_FLAG_ERROR = 0x80000000
INFO_EXPORT = 0
CMD_READ = 0
CMD_DISC = 2
CMD_BLOCK_STATUS = 7
REPLY_FLAG_DONE = 1
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR_BIT = 0x8000

BASE_ALLOCATION = "base:allocation"
STATE_DIRTY = 1  # in qemu:dirty-bitmap:* contexts
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # QEMU refuses larger reads


class NbdError(Exception):
    """The server refused something or the connection broke (the message says which)."""


def dirty_bitmap_context(bitmap: str) -> str:
    return f"qemu:dirty-bitmap:{bitmap}"


@dataclass(frozen=True)
class Extent:
    offset: int
    length: int
    flags: int


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise NbdError(f"NBD server closed the connection ({len(buf)} of {n} bytes read)")
        buf += chunk
    return bytes(buf)


class NbdClient:
    """One export, read-only. Use as a context manager; `size_bytes` after connecting."""

    def __init__(self, sock: socket.socket, export: str, contexts: tuple[str, ...] = ()):
        self._sock = sock
        self._cookie = 0
        self.export = export
        self.size_bytes = 0
        self.context_ids: dict[str, int] = {}
        self._handshake(contexts)

    @classmethod
    def connect_unix(cls, path: str, export: str, contexts: tuple[str, ...] = (),
                     timeout_s: float = 30.0) -> NbdClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(path)
            return cls(sock, export, contexts)
        except (OSError, NbdError):
            sock.close()
            raise

    @classmethod
    def connect_tcp(cls, host: str, port: int, export: str, contexts: tuple[str, ...] = (),
                    timeout_s: float = 30.0) -> NbdClient:
        sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            return cls(sock, export, contexts)
        except (OSError, NbdError):
            sock.close()
            raise

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._send_request(CMD_DISC, 0, 0)
        except OSError:
            pass
        self._sock.close()

    # handshake ---------------------------------------------------------------------------

    def _handshake(self, contexts: tuple[str, ...]) -> None:
        magic, opt_magic, flags = struct.unpack(">QQH", _recv_exact(self._sock, 18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT:
            raise NbdError("not an NBD server with the newstyle handshake")
        if not flags & FLAG_FIXED_NEWSTYLE:
            raise NbdError("NBD server lacks the fixed newstyle handshake")
        self._sock.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)))
        self._option(OPT_STRUCTURED_REPLY, b"")
        self._expect_ack(OPT_STRUCTURED_REPLY)
        if contexts:
            self._set_meta_contexts(contexts)
        name = self.export.encode()
        self._option(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, INFO_EXPORT))
        while True:
            rtype, data = self._option_reply(OPT_GO)
            if rtype == REP_ACK:
                break
            if rtype == REP_INFO and len(data) >= 12:
                info, = struct.unpack(">H", data[:2])
                if info == INFO_EXPORT:
                    self.size_bytes, _tflags = struct.unpack(">QH", data[2:12])
        if not self.size_bytes:
            raise NbdError(f"NBD export {self.export!r} reported no size")

    def _set_meta_contexts(self, contexts: tuple[str, ...]) -> None:
        name = self.export.encode()
        body = struct.pack(">I", len(name)) + name + struct.pack(">I", len(contexts))
        for c in contexts:
            body += struct.pack(">I", len(c.encode())) + c.encode()
        self._option(OPT_SET_META_CONTEXT, body)
        while True:
            rtype, data = self._option_reply(OPT_SET_META_CONTEXT)
            if rtype == REP_ACK:
                break
            if rtype == REP_META_CONTEXT:
                cid, = struct.unpack(">I", data[:4])
                self.context_ids[data[4:].decode()] = cid
        missing = [c for c in contexts if c not in self.context_ids]
        if missing:
            raise NbdError(f"NBD export {self.export!r} has no meta context {', '.join(missing)}")

    def _option(self, opt: int, data: bytes) -> None:
        self._sock.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def _option_reply(self, opt: int) -> tuple[int, bytes]:
        magic, ropt, rtype, length = struct.unpack(">QIII", _recv_exact(self._sock, 20))
        data = _recv_exact(self._sock, length) if length else b""
        if magic != REPLY_MAGIC_OPT or ropt != opt:
            raise NbdError(f"unexpected NBD option reply (magic {magic:#x}, option {ropt})")
        if rtype & REP_FLAG_ERROR:
            raise NbdError(f"NBD server refused option {opt}: error {rtype & ~REP_FLAG_ERROR} "
                           f"{data.decode(errors='replace')}".rstrip())
        return rtype, data

    def _expect_ack(self, opt: int) -> None:
        rtype, _ = self._option_reply(opt)
        if rtype != REP_ACK:
            raise NbdError(f"NBD server answered option {opt} with reply type {rtype}")

    # transmission ------------------------------------------------------------------------

    def _send_request(self, cmd: int, offset: int, length: int, flags: int = 0) -> int:
        self._cookie += 1
        self._sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, self._cookie,
                                       offset, length))
        return self._cookie

    def _chunks(self, cookie: int) -> Iterator[tuple[int, bytes]]:
        """The (type, payload) chunks of the structured reply to request `cookie`."""
        while True:
            head = _recv_exact(self._sock, 4)
            magic, = struct.unpack(">I", head)
            if magic == SIMPLE_REPLY_MAGIC:
                error, rcookie = struct.unpack(">IQ", _recv_exact(self._sock, 12))
                if error:
                    raise NbdError(f"NBD request failed: error {error}")
                return
            if magic != STRUCTURED_REPLY_MAGIC:
                raise NbdError(f"unexpected NBD reply magic {magic:#x}")
            flags, rtype, rcookie, length = struct.unpack(">HHQI", _recv_exact(self._sock, 16))
            payload = _recv_exact(self._sock, length) if length else b""
            if rcookie != cookie:
                raise NbdError(f"NBD reply for request {rcookie}, expected {cookie}")
            if rtype & REPLY_TYPE_ERROR_BIT:
                error, mlen = struct.unpack(">IH", payload[:6])
                raise NbdError(f"NBD request failed: error {error} "
                               f"{payload[6:6 + mlen].decode(errors='replace')}".rstrip())
            if rtype != REPLY_TYPE_NONE:
                yield rtype, payload
            if flags & REPLY_FLAG_DONE:
                return

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` (holes come back as zeros)."""
        out = bytearray()
        while length > 0:
            n = min(length, MAX_REQUEST_BYTES)
            buf = bytearray(n)
            cookie = self._send_request(CMD_READ, offset, n)
            for rtype, payload in self._chunks(cookie):
                if rtype == REPLY_TYPE_OFFSET_DATA:
                    at, = struct.unpack(">Q", payload[:8])
                    buf[at - offset:at - offset + len(payload) - 8] = payload[8:]
                elif rtype == REPLY_TYPE_OFFSET_HOLE:
                    pass  # already zeros
                else:
                    raise NbdError(f"unexpected NBD read reply type {rtype}")
            out += buf
            offset += n
            length -= n
        return bytes(out)

    def extents(self, context: str, offset: int = 0, length: int | None = None) -> Iterator[Extent]:
        """Extents of the export as `context` describes them, in order, covering the range."""
        cid = self.context_ids[context]
        end = self.size_bytes if length is None else offset + length
        while offset < end:
            n = min(end - offset, 0xFFFFFFFF & ~0xFFFF)
            cookie = self._send_request(CMD_BLOCK_STATUS, offset, n)
            got = 0
            for rtype, payload in self._chunks(cookie):
                if rtype != REPLY_TYPE_BLOCK_STATUS:
                    raise NbdError(f"unexpected NBD block status reply type {rtype}")
                rcid, = struct.unpack(">I", payload[:4])
                if rcid != cid:
                    continue
                at = offset
                for i in range(4, len(payload), 8):
                    elen, eflags = struct.unpack(">II", payload[i:i + 8])
                    elen = min(elen, end - at)
                    if elen <= 0:
                        break
                    yield Extent(at, elen, eflags)
                    at += elen
                got = at - offset
            if got <= 0:
                raise NbdError("NBD block status made no progress")
            offset += got

    def dirty_extents(self, bitmap: str) -> Iterator[Extent]:
        """The extents written since the checkpoint the bitmap starts at, merged."""
        pending: Extent | None = None
        for e in self.extents(dirty_bitmap_context(bitmap)):
            if not e.flags & STATE_DIRTY:
                continue
            if pending and pending.offset + pending.length == e.offset:
                pending = Extent(pending.offset, pending.length + e.length, STATE_DIRTY)
                continue
            if pending:
                yield pending
            pending = e
        if pending:
            yield pending
