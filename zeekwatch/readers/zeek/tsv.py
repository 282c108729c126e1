"""Zeek ASCII (TSV) logs -> normalized Arrow chunks: ``read(path, log)``.

The (decompressed) stream is read in pieces of about ``PIECE_SIZE`` bytes cut at the last
newline, so memory is bounded by the piece size, not the file size. In each piece the few
``#`` lines are found at C speed (``bytes.find``); the data lines between them are parsed by
pyarrow's CSV reader (``zeek_records``) under the layout of the header block above them
(``zeek_header``). The log type comes from ``#path``, never from the file name.

Bad input follows the reader contract (``readers.base``): a bad line is rejected with its
physical 1-based line number and the rest is kept; only a file that is not a Zeek log at all
raises ``NotALogError``.
"""

from __future__ import annotations

import gzip
import re
import zlib
from typing import Iterator

import pyarrow as pa

from zeekwatch.errors import NotALogError
from zeekwatch.readers.base import RAW_LIMIT, Chunk, IngestLog, file_size, open_binary
from zeekwatch.readers.readahead import read_ahead
from zeekwatch.readers.zeek.header import (
    Header,
    Layout,
    Refused,
    compile_layout,
    infer_conn_header,
    table_for,
)
from zeekwatch.readers.zeek.records import Checked, finish, parse_checked, parse_fast

PIECE_SIZE = 32 << 20  # bytes of decompressed input handled at once (peak RSS ~330 MB)
SUB_RANGE = 4 << 20  # a piece that fails the fast path is retried in ranges of this size
SAMPLE_LINES = 20  # lines looked at to recognise a headerless conn log
READ_AHEAD_MIN = 4 << 20  # smaller files are read in the caller's thread
_NL, _HASH = 10, 35


def read(path, log: IngestLog, piece_size: int = PIECE_SIZE) -> Iterator[Chunk]:
    """Yield (table, chunk) pairs from the Zeek TSV log at ``path`` (plain or gzip).

    A file of more than ``READ_AHEAD_MIN`` bytes is parsed a chunk ahead in a worker thread
    (``readahead``), so parsing overlaps with whatever the caller does with each chunk.
    """
    chunks = ZeekTsvReader(str(path), log, piece_size).chunks()
    return read_ahead(chunks) if file_size(str(path)) >= READ_AHEAD_MIN else chunks


# ---------------------------------------------------------------- the decompressed stream

INFLATE_IN = 1 << 20  # compressed bytes read at once
INFLATE_OUT = 16 << 20  # decompressed bytes per zlib call at most (bounded even for a bomb)


class _Inflate:
    """Multi-member gzip decompressed with zlib directly, reading the compressed bytes from
    ``open_binary``'s counting file (so progress still works): ``GzipFile`` reads 8 KB at a
    time and costs about half as much CPU again on large logs."""

    def __init__(self, raw):
        self.raw = raw
        self.z = zlib.decompressobj(31)
        self.tail = b""  # compressed input not consumed yet
        self.in_member = False
        self.out = memoryview(b"")

    def _inflate(self) -> bytes:
        while True:
            data, self.tail = self.tail or self.raw.read(INFLATE_IN), b""
            if not data:
                if self.in_member:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
                return b""
            if not self.in_member:
                data = data.lstrip(b"\x00")  # zero padding after a member is allowed
                if not data:
                    continue
                self.in_member = True
            out = self.z.decompress(data, INFLATE_OUT)
            if self.z.eof:  # a member ended; another may follow
                self.tail, self.z, self.in_member = self.z.unused_data, zlib.decompressobj(31), False
            else:
                self.tail = self.z.unconsumed_tail
            if out:
                return out

    def readinto1(self, view) -> int:
        if not self.out:
            self.out = memoryview(self._inflate())
        n = min(len(view), len(self.out))
        view[:n] = self.out[:n]
        self.out = self.out[n:]
        return n


def _fill(f, buf: bytearray, filled: int) -> tuple[int, bool, tuple[str, str] | None]:
    """Read into ``buf[filled:]`` until it is full or the stream ends: (filled, eof, error)."""
    view = memoryview(buf)
    while filled < len(buf):
        try:
            n = f.readinto1(view[filled:])
        except EOFError as exc:
            return filled, True, ("truncated", str(exc))
        except (OSError, zlib.error) as exc:
            return filled, True, ("corrupt", str(exc))
        if not n:
            return filled, True, None
        filled += n
    return filled, False, None


def _stream(path: str, log: IngestLog, size: int):
    """Yield ("lines", buf, length, eof) pieces of whole lines, ("overlong", head) for a line
    longer than a piece (skipped), and ("broken", message) when the stream ends early."""
    filled, offset, skipping, error = 0, 0, False, None
    with open_binary(path, log) as f, getattr(f, "fileobj", f) as raw:
        gz = isinstance(f, gzip.GzipFile)  # then ``raw`` is the counting file below it
        source = _Inflate(raw) if gz else f
        buf = bytearray(min(size, max(1 << 20, 8 * file_size(path)) if gz else file_size(path) + 1))
        while True:
            filled, eof, error = _fill(source, buf, filled)
            if not eof and filled == len(buf) and len(buf) < size:  # grow: early in a gzip only
                bigger = bytearray(min(size, 2 * len(buf)))
                bigger[:filled] = buf
                buf = bigger
                continue
            if skipping:  # drop the rest of an over-long line
                nl = buf.find(b"\n", 0, filled)
                drop = filled if nl < 0 else nl + 1
                buf[:filled - drop] = buf[drop:filled]
                filled, offset, skipping = filled - drop, offset + drop, nl < 0
                if not eof:
                    continue
            if eof:
                if filled:
                    yield "lines", buf, filled, True
                break
            cut = buf.rfind(b"\n", 0, filled) + 1
            if cut == 0:
                yield "overlong", bytes(buf[:RAW_LIMIT])
                filled, offset, skipping = 0, offset + filled, True
                continue
            yield "lines", buf, cut, False
            buf[:filled - cut] = buf[cut:filled]
            filled, offset = filled - cut, offset + cut
    if error:
        what, detail = error
        yield "broken", (f"gzip stream {what} at byte {offset + filled} of the decompressed "
                         f"data ({detail})")


def _next_header(buf, pos: int, end: int) -> int:
    """Offset of the next line starting with '#' after ``pos`` (a data line start), or ``end``."""
    misses = 0
    i = buf.find(b"#", pos, end)
    while i > 0 and buf[i - 1] != _NL:
        misses += 1
        if misses > 16:  # many '#' inside values (URLs): look for "\n#" instead
            i = buf.find(b"\n#", i, end)
            return end if i < 0 else i + 1
        i = buf.find(b"#", i + 1, end)
    return end if i < 0 else i


def _count_lines(buf, start: int, stop: int) -> int:
    if stop <= start:
        return 0
    return buf.count(b"\n", start, stop) + (buf[stop - 1] != _NL)


def _without_cr(buf, end: int) -> bytes:
    """Zeek escapes CR as \\x0d; a raw CR (CRLF line ends, damage) would split lines in pyarrow."""
    return bytes(buf[:end]).replace(b"\r\n", b"\n").replace(b"\r", b"\\x0d")


# ---------------------------------------------------------------- the reader

class ZeekTsvReader:
    """State while reading one file: the current header block, line number and counters."""

    def __init__(self, path: str, log: IngestLog, piece_size: int = PIECE_SIZE):
        self.path, self.log, self.piece_size = path, log, piece_size
        self.header = Header()
        self.line = 1  # physical line number of the next line to be consumed
        self.layout: Layout | Refused | None = None
        self.changed = True  # the header changed since ``layout`` was compiled
        self.seen_header = False
        self.masked = 0
        self.skipped_types: set[str] = set()
        self.cut_line = False  # the data ended inside a line (no final newline)

    def chunks(self) -> Iterator[Chunk]:
        for kind, *args in _stream(self.path, self.log, self.piece_size):
            if kind == "lines":
                yield from self._piece(*args)
            elif kind == "overlong":
                self.log.reject(self.path, self.line,
                                f"line longer than {self.piece_size} bytes; skipped", args[0])
                self.line += 1
            else:  # the stream broke: name the line it broke in, if it broke inside one
                self.log.note(f"{self.path}: {args[0]}; kept the lines before it")
                self.log.reject(self.path, self.line - 1 if self.cut_line else None, args[0])
        if self.masked:
            self.log.note(f"{self.path}: {self.masked} masked timestamps (ts NULL)")

    def _piece(self, buf, end: int, eof: bool) -> Iterator[Chunk]:
        self.cut_line = eof and buf[end - 1] != _NL
        if buf.find(b"\r", 0, end) >= 0:
            buf = _without_cr(buf, end)
            end = len(buf)
        pos = 0
        while pos < end:
            if buf[pos] == _HASH:
                nl = buf.find(b"\n", pos, end)
                stop = end if nl < 0 else nl
                self._directive(bytes(buf[pos:stop]))
                pos = stop + 1
            else:
                nxt = _next_header(buf, pos, end)
                yield from self._range(buf, pos, nxt, eof and nxt == end)
                pos = nxt

    def _directive(self, raw: bytes) -> None:
        if self.header.apply(raw.decode("utf-8", "replace"), self.line):
            self.changed = self.seen_header = True
        self.line += 1

    def _range(self, buf, start: int, stop: int, at_eof: bool) -> Iterator[Chunk]:
        """Data lines [start, stop) under the current header."""
        layout = self._layout(buf, start, stop)
        if layout is None:
            self.line += _count_lines(buf, start, stop)
        elif isinstance(layout, Refused):
            self._refuse(buf, start, stop, layout)
        elif at_eof and buf[stop - 1] != _NL:  # the last line has no newline: maybe cut short
            nl = buf.rfind(b"\n", start, stop)
            tail = start if nl < 0 else nl + 1
            if tail > start:
                yield from self._parse(buf, start, tail, layout)
            yield from self._parse(buf, tail, stop, layout, at_eof=True)
        else:
            yield from self._parse(buf, start, stop, layout)

    # ---- layouts

    def _layout(self, buf, start: int, stop: int) -> Layout | Refused | None:
        if self.changed:
            self.changed = False
            self.layout = self._compile(buf, start, stop)
        return self.layout

    def _compile(self, buf, start: int, stop: int) -> Layout | Refused | None:
        if self.header.fields is None:
            refused = self._headerless(buf, start, stop)
            if refused:
                return refused
        table = table_for(self.header)
        if table is None:
            self._skip_type(self.header.path or "(no #path)")
            return None
        if self.header.path is None and not self.header.inferred:
            self.log.note(f"{self.path}: no #path header; {table} log recognised by its #fields")
        try:
            return compile_layout(self.header, table)
        except Refused as exc:
            where = f"{self.path}:{self.header.fields_line}" if self.header.fields_line else self.path
            self.log.note(f"{where}: {exc}")
            return exc

    def _skip_type(self, name: str) -> None:
        if name not in self.skipped_types:
            self.skipped_types.add(name)
            self.log.skipped.append((self.path, f"unsupported Zeek log type {name!r}"))

    def _headerless(self, buf, start: int, stop: int) -> Refused | None:
        """Recognise records without a header as a conn log, or refuse them."""
        lines = bytes(buf[start:min(stop, start + (1 << 20))]).split(b"\n", SAMPLE_LINES)
        sample = lines[:-1][:SAMPLE_LINES] or lines[:1]  # whole lines when there are any
        inferred = infer_conn_header(sample)
        if inferred is not None and table_for(self.header) in (None, "conn"):
            self.header = inferred
            self.log.note(f"{self.path}: no Zeek header; inferred the {inferred.inferred} conn "
                          f"layout ({len(inferred.fields)} fields) from the record shape")
            return None
        if self.seen_header or buf.find(b"#fields", stop) >= 0:
            return Refused("data line without a #fields header")
        first = sample[0][:60].decode("utf-8", "replace")
        raise NotALogError(self.path, "not a Zeek TSV log: no #fields header, and the records "
                                      f"match no Zeek conn layout (starts with {first!r})")

    def _refuse(self, buf, start: int, stop: int, refusal: Refused) -> None:
        lines = bytes(buf[start:stop]).split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        where = f" (#fields at line {self.header.fields_line})" if self.header.fields_line else ""
        for raw in lines:
            if raw:
                self.log.reject(self.path, self.line, f"{refusal}{where}", raw)
            self.line += 1

    # ---- parsing

    def _parse(self, buf, start: int, stop: int, layout: Layout, at_eof: bool = False):
        runs = _blank_runs(buf, start, stop)
        if runs is None:
            yield from self._parse_lines(buf, start, stop, layout, at_eof)
            return
        for a, b, blanks in runs:  # the lines between runs of blank lines; blanks cost nothing
            if b > a:
                yield from self._parse_lines(buf, a, b, layout, at_eof and b == stop)
            self.line += blanks

    def _parse_lines(self, buf, start: int, stop: int, layout: Layout, at_eof: bool = False):
        table = None if at_eof else parse_fast(memoryview(buf)[start:stop], layout)
        if table is not None:
            self.line += table.num_rows
            parts = [table]
        elif stop - start > SUB_RANGE:
            parts = [self._parse_small(buf, a, b, layout) for a, b in _split(buf, start, stop)]
        else:
            parts = [self._checked(bytes(buf[start:stop]), layout, at_eof)]
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if table.num_rows:
            yield layout.table, finish(table, layout, self.path)

    def _parse_small(self, buf, start: int, stop: int, layout: Layout) -> pa.Table:
        table = parse_fast(memoryview(buf)[start:stop], layout)
        if table is None:
            return self._checked(bytes(buf[start:stop]), layout, False)
        self.line += table.num_rows
        return table

    def _checked(self, data: bytes, layout: Layout, at_eof: bool) -> pa.Table:
        result: Checked = parse_checked(data, layout, at_eof)
        for rel, reason, raw in result.rejects:
            self.log.reject(self.path, None if rel is None else self.line + rel - 1, reason, raw)
        self.masked += result.masked
        self.line += result.lines
        return result.table


_BLANKS = re.compile(rb"(?:^|(?<=\n))\n+")  # a run of empty lines
MAX_RUNS = 64  # more runs of blank lines than this: the checked path drops them line by line


def _blank_runs(buf, start: int, stop: int) -> list[tuple[int, int, int]] | None:
    """(start, stop, blank lines after it) for the text between runs of empty lines in
    [start, stop), so that 100 MB of newlines cost one regex scan, not 100 M parsed rows;
    None when there are none, or too many runs to be worth cutting out."""
    if buf.find(b"\n\n", start, stop) < 0 and buf[start:start + 1] != b"\n":
        return None
    out, pos = [], start
    for m in _BLANKS.finditer(buf, start, stop):
        out.append((pos, m.start(), m.end() - m.start()))
        pos = m.end()
        if len(out) > MAX_RUNS:
            return None
    if pos < stop:
        out.append((pos, stop, 0))
    return out or None


def _split(buf, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """[start, stop) in ranges of about ``SUB_RANGE`` bytes, each ending after a newline."""
    while start < stop:
        cut = buf.find(b"\n", min(start + SUB_RANGE, stop) - 1, stop)
        end = stop if cut < 0 else cut + 1
        yield start, end
        start = end
