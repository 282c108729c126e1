"""Enriching a Zeek TSV log: every record written back as read, with the ``zw.*`` columns after it.

The header block gains the column names in ``#fields`` and their types in ``#types``; every
other header line (``#separator``, ``#path``, ``#open``, ``#close``, comments) is copied as read,
and each header block of a concatenated log is handled on its own. A headerless conn log gets a
header block of the layout zeekwatch recognised (``readers.zeek.header.infer_conn_header``).

Data lines are processed a block at a time with Arrow kernels, never a Python loop per line
(``render``), in worker threads while the next block is read and the previous one written. A
line whose column count does not match the
header (a cut line, damage) is a reject: written back untouched, without added columns, and
counted.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from zeekwatch.app.enrich.annotate import FIELDS, PREFIX, Annotator, Citation
from zeekwatch.app.enrich.render import AddressCodes, Plan, binary, escape, render
from zeekwatch.readers.readahead import read_ahead
from zeekwatch.readers.zeek.header import Header, infer_conn_header

BLOCK = 8 << 20  # bytes of decompressed input per step (memory stays a few times this)
MAX_LINE = 64 << 20  # a "line" longer than this is passed through in pieces, not held
NAMES = ("ts", "uid", "id.orig_h", "id.resp_h", "community_id")
AHEAD = 3  # data runs rendering or rendered but not yet written
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="zw-enrich")


def _line_blocks(fin) -> Iterator[tuple[bytearray | bytes, int, bool]]:
    """``fin`` as (buffer, end, whole): ``buffer[:end]`` is whole lines (the last piece of the
    input may lack its newline), or, not ``whole``, a piece of a line longer than
    ``MAX_LINE``. Each buffer is new (the blocks render while the next is read into its own),
    filled by ``readinto`` behind the carried part of the previous block's last line."""
    carry = b""
    while True:
        buf = bytearray(len(carry) + BLOCK)
        buf[:len(carry)] = carry
        got = fin.readinto(memoryview(buf)[len(carry):])
        if not got:
            if carry:
                yield carry, len(carry), True
            return
        size = len(carry) + got
        cut = buf.rfind(b"\n", 0, size) + 1
        if cut == 0:
            carry = bytes(buf[:size])
            if size > MAX_LINE:
                yield carry, size, False
                carry = b""
            continue
        yield buf, cut, True
        carry = bytes(buf[cut:size])


class WriteBehind:
    """Writes to ``out`` in a worker thread, in order, at most ``DEPTH`` pieces behind. An
    error of the worker is raised at the next ``write`` or at ``close``."""

    DEPTH = 4

    def __init__(self, out):
        self.out, self.error = out, None
        self._queue: queue.Queue = queue.Queue(self.DEPTH)
        self._thread = threading.Thread(target=self._work, name="zw-enrich-write", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (piece := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self.out.write(piece)
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    self.error = exc

    def write(self, piece) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(piece)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error


class Counts:
    def __init__(self):
        self.records = self.cited = self.rejects = 0
        self.passed = 0  # records of a log that was enriched already, copied as read


class TsvEnricher:
    def __init__(self, ann: Annotator, out, counts: Counts, pool: Executor | None = None):
        self.ann, self.out, self.counts = ann, out, counts
        self.header = Header()
        self.cols: dict[str, int] | None = None  # needed column -> index, for the current block
        self.ncols = 0
        self.active = False  # the current header block gets the added columns
        self.seen_header = False
        self.first_data = True
        self.plan: Plan | None = None
        self.pool = pool or _POOL
        self.pending: deque = deque()
        self.codes = AddressCodes(ann)

    # -- input ----------------------------------------------------------------------------
    def run(self, fin) -> None:
        """All of ``fin`` to ``self.out``: read (and decompressed) a block ahead in one thread,
        rendered in the pool, written (and compressed: isal releases the GIL) behind in
        another, so that on two cores none of them waits for the others."""
        out, blocks = self.out, read_ahead(_line_blocks(fin), depth=2)
        self.out = behind = WriteBehind(out)
        try:
            for blk, end, whole in blocks:
                if whole:
                    self._block(blk, end)
                else:  # no newline for 64 MB: not a record; pass it on
                    self._emit(blk)
                    self.counts.rejects += 1
            self.flush()
        finally:
            blocks.close()
            self.out = out
            behind.close()

    def _block(self, blk: bytes, end: int) -> None:
        """The lines of ``blk[:end]`` (whole lines), header lines and data runs in order."""
        view = memoryview(blk)
        pos = 0
        while pos < end:
            if blk[pos] == 0x23:  # '#': a header line
                nl = blk.find(b"\n", pos, end)
                stop = end if nl < 0 else nl + 1
                self._header_line(blk[pos:stop])
                pos = stop
                continue
            # a '#' anywhere first: one memchr, where finding "\n#" stops at every newline
            nxt = blk.find(b"\n#", pos, end) if blk.find(b"#", pos, end) >= 0 else -1
            stop = end if nxt < 0 else nxt + 1
            self._data(view[pos:stop])
            pos = stop

    # -- header ---------------------------------------------------------------------------
    def _header_line(self, raw: bytes) -> None:
        body = raw.rstrip(b"\r\n")
        text = body.decode("utf-8", "replace")
        self.header.apply(text)
        self.seen_header = True
        h = self.header
        sep = h.separator if len(h.separator) == 1 else "\t"
        if text.startswith("#fields") and h.fields:
            self.active = not any(f.startswith(PREFIX) for f in h.fields)  # enriched already
            self.cols = None
            if self.active:
                extra = sep + sep.join(PREFIX + name for name, _ in FIELDS)
                raw = body + extra.encode() + raw[len(body):]
        elif text.startswith("#types") and h.types and self.active:
            raw = body + (sep + sep.join(t for _, t in FIELDS)).encode() + raw[len(body):]
        elif text.startswith("#separator"):
            self.active, self.cols = False, None
        self._emit(bytes(raw))

    def _synthesize_header(self, seg: bytes) -> None:
        """A headerless conn log: write the header block of the layout it was recognised as."""
        h = infer_conn_header(seg.split(b"\n", 200)[:200])
        if h is None:
            return
        self.header = h
        lines = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
                 "#unset_field\t-", "#path\tconn",
                 "#fields\t" + "\t".join(h.fields + [PREFIX + n for n, _ in FIELDS]),
                 "#types\t" + "\t".join(h.types + [t for _, t in FIELDS])]
        self._emit(("\n".join(lines) + "\n").encode())
        self.active = True

    def _layout(self) -> None:
        h = self.header
        sep = h.separator if len(h.separator) == 1 else "\t"
        fields = h.fields or []
        keys = list(self.ann.cited)
        self.plan = Plan(
            cols={n: fields.index(n) for n in NAMES if n in fields}, ncols=len(fields), sep=sep,
            unset=h.unset_field, cited_keys=binary([k.encode() for k in keys]),
            cited_text=binary([_cited_bytes(self.ann.cited[k], h, sep) for k in keys]),
            unset_cited=sep.join([h.unset_field] * 6).encode(),
            merged_text=lambda ks: _cited_bytes(self.ann.citation(*ks), h, sep),
            usage_hosts=binary([x.encode() for x in self.ann.usage]), codes=self.codes)
        self.cols = self.plan.cols

    # -- data -----------------------------------------------------------------------------
    def _data(self, seg: memoryview) -> None:
        if not self.seen_header and self.first_data:
            self._synthesize_header(bytes(seg[:1 << 20]))
        self.first_data = False
        if not self.active:  # no usable header block (or enriched already): as read
            self._emit(bytes(seg))
            lines = sum(1 for x in bytes(seg).split(b"\n") if x.strip())
            if self.header.fields and any(f.startswith(PREFIX) for f in self.header.fields):
                self.counts.passed += lines
            else:
                self.counts.rejects += lines
            return
        if self.cols is None:
            self._layout()
        self._emit(self.pool.submit(render, self.plan, self.ann, seg))

    def _emit(self, item) -> None:
        """Queue output (bytes, or a pending ``render``) in input order; write what is ready,
        keeping at most ``AHEAD`` blocks in flight (memory stays bounded)."""
        self.pending.append(item)
        while len(self.pending) > AHEAD:
            self._flush_one()

    def _flush_one(self) -> None:
        item = self.pending.popleft()
        if isinstance(item, Future):
            pieces, records, rejects, cited = item.result()
            self.counts.records += records
            self.counts.rejects += rejects
            self.counts.cited += cited
            for piece in pieces:
                self.out.write(piece)
        else:
            self.out.write(item)

    def flush(self) -> None:
        while self.pending:
            self._flush_one()


def _cited_bytes(c: Citation, h: Header, sep: str) -> bytes:
    unset = h.unset_field

    def setv(items):
        return h.set_separator.join(escape(x, sep, h.set_separator) for x in items) or h.empty_field

    vals = [setv(c.finding_ids), setv(c.detectors), setv(c.techniques),
            unset if c.urgency is None else str(c.urgency),
            unset if c.tier is None else str(c.tier),
            escape("; ".join(c.suppressed), sep) if c.suppressed else unset]
    return sep.join(vals).encode()
