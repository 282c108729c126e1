"""Capture files (pcap and pcapng, gzip too) as batches of raw packet records.

scapy's raw readers (``RawPcapReader`` / ``RawPcapNgReader``) check the magic and parse the
file header, the section header and the interface blocks (link type, time resolution). The
packet records themselves are sliced out of 1 MiB buffers with ``struct``: scapy's own
per-record path builds a namedtuple and parses the options of every pcapng block, which costs
more than all of our decoding (0.9 M records/s for pcap against 3 M here).

Records come out in batches ``(linktype, timestamps, packets)`` (timestamps are integer
microseconds since the epoch, UTC) so the decoder loops over plain lists. Where the file stops
making sense the stream ends and ``Capture.damage`` says where: packets before the damage are
kept, the cut is located by packet number and byte offset (of the decompressed stream for
``.gz``), and a file that ends mid-record (truncated) is told apart from a record that cannot
be right (damaged).
"""

from __future__ import annotations

import gzip
import logging
import struct
import zlib
from dataclasses import dataclass
from typing import Iterator

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader

from zeekwatch.errors import InputError
from zeekwatch.readers.base import IngestLog, open_binary

BLOCK = 1 << 20
MAX_RECORD = 262_144  # Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: larger captured lengths are garbage
MAX_BLOCK = 16 << 20
MAX_TS = 7_258_118_400 * 1_000_000  # 2200-01-01 in µs: a later packet time is a corrupt block
PCAPNG_SHB = 0x0A0D0D0A
READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile)

Batch = tuple[int, list[int], list[bytes]]


@dataclass
class Damage:
    packet: int  # 1-based number of the first packet that could not be read
    offset: int  # byte offset of its record
    truncated: bool  # the file ends inside the record (as opposed to a record that cannot be right)
    detail: str

    def message(self, path: str) -> str:
        what = "truncated" if self.truncated else "damaged"
        return f"{path}: {what} at packet {self.packet} (byte offset {self.offset}): {self.detail}"


class _QuietScapy:
    """scapy reports header problems through its logger; the reader reports them itself."""

    def __enter__(self):
        self._logger = logging.getLogger("scapy.runtime")
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)


class _Position:
    """A read-only stream that knows how many bytes were read from it (gzip streams and our
    counting file cannot ``tell``), so damage can be located by byte offset."""

    def __init__(self, f):
        self._f = f
        self.pos = 0
        self.name = getattr(f, "name", None)

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.pos += len(data)
        return data

    def close(self) -> None:
        self._f.close()


class Capture:
    """One capture file, opened and its header checked; ``batches()`` streams the packets."""

    def __init__(self, path: str, log: IngestLog | None = None):
        self.path = str(path)
        self.count = 0
        self.damage: Damage | None = None
        try:
            self._f = _Position(open_binary(self.path, log))
        except READ_ERRORS as exc:
            raise InputError(self.path, f"cannot read capture: {exc}") from exc
        try:
            with _QuietScapy():
                # scapy reads the magic from our (already decompressed) stream and picks the
                # pcap or the pcapng reader
                self._reader = RawPcapNgReader(self._f)
        except (Scapy_Exception, *READ_ERRORS) as exc:
            self._f.close()
            raise InputError(self.path, f"not a readable pcap/pcapng capture ({exc})", offset=0) from exc
        self.pcapng = isinstance(self._reader, RawPcapNgReader)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def batches(self) -> Iterator[Batch]:
        """(linktype, timestamps µs, packets) per buffer; stops at the end or at damage."""
        if self.pcapng:
            return self._pcapng_batches()
        return self._pcap_batches()

    def _fill(self, buf: bytes, pos: int) -> tuple[bytes, bool]:
        """The unread tail of ``buf`` plus the next block of the file; False at the end."""
        try:
            more = self._f.read(BLOCK)
        except READ_ERRORS as exc:
            self._read_error = str(exc) or type(exc).__name__
            more = b""
        return buf[pos:] + more, bool(more)

    def _stop(self, offset: int, truncated: bool, detail: str, pending: int = 0) -> None:
        """Record where reading stopped; ``pending``: packets read but not yet counted."""
        self.damage = Damage(self.count + pending + 1, offset, truncated, detail)

    def _pcap_batches(self) -> Iterator[Batch]:
        reader = self._reader
        header = struct.Struct(reader.endian + "IIII").unpack_from
        divisor = 1000 if reader.nano else 1
        linktype = reader.linktype
        self._read_error = None
        buf, base, pos, more = b"", 24, 0, True  # base: file offset of buf[0]
        while more:
            base += pos
            buf, more = self._fill(buf, pos)
            pos, size = 0, len(buf)
            stamps: list[int] = []
            packets: list[bytes] = []
            while pos + 16 <= size:
                sec, frac, caplen, _ = header(buf, pos)
                if caplen > MAX_RECORD:
                    self._stop(base + pos, False, f"record claims {caplen} captured bytes (limit {MAX_RECORD})",
                               len(packets))
                    more = False
                    break
                end = pos + 16 + caplen
                if end > size:
                    break
                stamps.append(sec * 1_000_000 + frac // divisor)
                packets.append(buf[pos + 16:end])
                pos = end
            self.count += len(packets)
            if packets:
                yield linktype, stamps, packets
        if self.damage is None and pos < len(buf):
            need = 16 if len(buf) - pos < 16 else 16 + header(buf, pos)[2]
            self._stop(base + pos, True, self._cut_detail(need, len(buf) - pos))

    def _cut_detail(self, need: int, have: int) -> str:
        if self._read_error:
            return f"the stream cannot be read past this point ({self._read_error})"
        return f"the file ends inside the record ({have} of {need} bytes)"

    def _pcapng_batches(self) -> Iterator[Batch]:
        self._read_error = None
        self._ng = _NgState(self._reader)
        buf, base, pos, more = b"", self._f.pos, 0, True
        while more:
            base += pos
            buf, more = self._fill(buf, pos)
            pos, out = self._pcapng_scan(buf, base)
            for batch in out:
                self.count += len(batch[2])
                yield batch
            if self.damage is not None:
                return
        if pos < len(buf):
            have = len(buf) - pos
            need = 12 if have < 8 else self._ng.unpack("I", buf, pos + 4)[0]
            self._stop(base + pos, True, self._cut_detail(need, have))

    def _pcapng_scan(self, buf: bytes, base: int) -> tuple[int, list[Batch]]:
        """Walk the complete blocks in ``buf``; returns where the first incomplete one starts.

        Enhanced packet blocks (nearly all of a file) are decoded inline; the other blocks go
        through ``_NgState.block``."""
        ng, pos, size = self._ng, 0, len(buf)
        out: list[Batch] = []
        while pos + 12 <= size:
            btype, blen = ng.head(buf, pos)
            if btype == PCAPNG_SHB:
                blen = ng.section(buf, pos)
            problem = None
            if blen < 12 or blen > MAX_BLOCK:
                problem = f"block length {blen} is impossible"
            elif pos + blen > size:
                break
            elif ng.tail(buf, pos + blen - 4)[0] != blen:
                problem = "block trailer does not repeat the block length"
            elif btype == 6 and blen >= 32:
                intid, high, low, caplen, _ = ng.epb(buf, pos + 8)
                if caplen > blen - 32 or intid >= len(ng.interfaces):
                    problem = ng.block(btype, buf, pos, blen, out)
                else:
                    linktype, _, resol = ng.interfaces[intid]
                    stamp = (high << 32) | low
                    if resol != 1_000_000:
                        stamp = stamp * 1_000_000 // resol
                    if stamp > MAX_TS:
                        problem = f"packet time {stamp} µs after the epoch is past the year 2200"
                    else:
                        if not out or out[-1][0] != linktype:
                            out.append((linktype, [], []))
                        out[-1][1].append(stamp)
                        out[-1][2].append(buf[pos + 28:pos + 28 + caplen])
            else:
                problem = ng.block(btype, buf, pos, blen, out)
            if problem:
                self._stop(base + pos, False, problem, _pending(out))
                break
            pos += blen
        if out:
            ng.last_ts = out[-1][1][-1]
        return pos, out


def _pending(batches: list[Batch]) -> int:
    return sum(len(batch[2]) for batch in batches)


class _NgState:
    """pcapng section and interface state, and the per-block decoding of packets."""

    def __init__(self, reader: RawPcapNgReader):
        self.reader = reader
        self._set_endian(reader.endian)
        self.interfaces: list[tuple[int, int, int]] = [self._iface(i) for i in reader.interfaces]
        self.last_ts = 0

    @staticmethod
    def _iface(idb) -> tuple[int, int, int]:
        linktype, snaplen, options = idb
        return linktype, snaplen, int(options.get("tsresol", 1_000_000)) or 1_000_000

    def _set_endian(self, endian: str) -> None:
        self.endian = endian
        self.head = struct.Struct(endian + "II").unpack_from
        self.tail = struct.Struct(endian + "I").unpack_from
        self.epb = struct.Struct(endian + "5I").unpack_from

    def unpack(self, fmt: str, buf: bytes, pos: int):
        return struct.unpack_from(self.endian + fmt, buf, pos)

    def section(self, buf: bytes, pos: int) -> int:
        """A new section header: byte order and interfaces start afresh. Returns its length."""
        bom = buf[pos + 8:pos + 12]
        self._set_endian(">" if bom == b"\x1a\x2b\x3c\x4d" else "<")
        self.reader.endian = self.endian
        self.reader.interfaces = []
        self.interfaces = []
        return self.unpack("I", buf, pos + 4)[0]

    def block(self, btype: int, buf: bytes, pos: int, blen: int, out: list[Batch]) -> str | None:
        """Decode one complete block into ``out``; a reason string when it cannot be right."""
        if btype == 6:  # enhanced packet block
            intid, high, low, caplen, _ = self.unpack("5I", buf, pos + 8)
            if caplen > blen - 32:
                return f"packet block claims {caplen} captured bytes in a {blen}-byte block"
            return self._packet(out, intid, (high << 32) | low, buf[pos + 28:pos + 28 + caplen])
        if btype == 3:  # simple packet block: no timestamp, interface 0
            wirelen = self.unpack("I", buf, pos + 8)[0]
            caplen = min(wirelen, blen - 16)
            return self._packet(out, 0, None, buf[pos + 12:pos + 12 + caplen])
        if btype == 2:  # obsolete packet block
            intid, _, high, low, caplen, _ = self.unpack("HHIIII", buf, pos + 8)
            return self._packet(out, intid, (high << 32) | low, buf[pos + 28:pos + 28 + min(caplen, blen - 32)])
        if btype == 1:  # interface description block, parsed by scapy
            with _QuietScapy():
                self.reader._read_block_idb(buf[pos + 8:pos + blen - 4], 0)
            self.interfaces.append(self._iface(self.reader.interfaces[-1]))
        return None

    def _packet(self, out: list[Batch], intid: int, stamp: int | None, data: bytes) -> str | None:
        if intid >= len(self.interfaces):
            return f"packet names interface {intid}, but only {len(self.interfaces)} are described"
        linktype, _, resol = self.interfaces[intid]
        if stamp is None:  # simple packet blocks carry no time: the previous packet's
            ts = out[-1][1][-1] if out else self.last_ts
        elif resol == 1_000_000:
            ts = stamp
        else:
            ts = stamp * 1_000_000 // resol
        if ts > MAX_TS:
            return f"packet time {ts} µs after the epoch is past the year 2200"
        self.last_ts = ts
        if not out or out[-1][0] != linktype:
            out.append((linktype, [], []))
        out[-1][1].append(ts)
        out[-1][2].append(data)
        return None


def open_capture(path: str, log: IngestLog | None = None) -> Capture:
    """Open ``path`` and check its header; ``InputError`` if it is no readable capture."""
    return Capture(path, log)
