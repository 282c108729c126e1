"""Enriching a Zeek TSV log: every record written back as read, with the ``zw.*`` columns after it.

The header block gains the column names in ``#fields`` and their types in ``#types``; every
other header line (``#separator``, ``#path``, ``#open``, ``#close``, comments) is copied as read,
and each header block of a concatenated log is handled on its own. A headerless conn log gets a
header block of the layout zeekwatch recognised (``readers.zeek.header.infer_conn_header``).

Data lines are processed a block at a time with Arrow kernels, never a Python loop per line:
a block's lines become one binary array whose elements are ``line`` (the first) and ``\\nline``
(the others) -- so that the concatenation of the elements, each followed by its added columns,
is the output block -- the few columns needed (uid, community_id, addresses, ts) are split out,
the addresses are classified once per distinct value, the citations are one hash lookup, and
the elements are joined with the added columns. A line whose column count does not match the
header (a cut line, damage) is a reject: written back untouched, without added columns, and
counted.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch.app.enrich.annotate import FIELDS, PREFIX, Annotator, Citation
from zeekwatch.readers.zeek.header import Header, infer_conn_header

BLOCK = 8 << 20  # bytes of decompressed input per step (memory stays a few times this)
MAX_LINE = 64 << 20  # a "line" longer than this is passed through in pieces, not held
NAMES = ("ts", "uid", "id.orig_h", "id.resp_h", "community_id")
AHEAD = 3  # data runs rendering or rendered but not yet written
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="zw-enrich")


def _escape(text: str, sep: str, set_sep: str | None = None) -> str:
    """A value as Zeek writes it: separators and control characters as \\xHH."""
    out = []
    for ch in text:
        if ch == sep or ch == set_sep or ch == "\\" or ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


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

    # -- input ----------------------------------------------------------------------------
    def run(self, fin) -> None:
        carry = b""
        while True:
            data = fin.read(BLOCK)
            if not data:
                if carry:
                    self._block(carry, len(carry))
                self.flush()
                return
            buf = carry + data if carry else data
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                if len(buf) > MAX_LINE:  # no newline for 64 MB: not a record; pass it on
                    self._emit(buf)
                    self.counts.rejects += 1
                    buf = b""
                carry = buf
                continue
            self._block(buf, cut)
            carry = buf[cut:]

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
            nxt = blk.find(b"\n#", pos, end)
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
            unset=h.unset_field, cited_keys=pa.array([k.encode() for k in keys], pa.binary()),
            cited_text=pa.array([_cited_bytes(self.ann.cited[k], h, sep) for k in keys],
                                pa.binary()),
            unset_cited=sep.join([h.unset_field] * 6).encode(),
            usage_hosts=pa.array([x.encode() for x in self.ann.usage], pa.binary()))
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


@dataclass(frozen=True)
class Plan:
    """What rendering a data run needs of its header block (a snapshot: blocks render in
    worker threads while the next header block is read)."""

    cols: dict
    ncols: int
    sep: str
    unset: str
    cited_keys: pa.Array
    cited_text: pa.Array
    unset_cited: bytes
    usage_hosts: pa.Array


def _cited_bytes(c: Citation, h: Header, sep: str) -> bytes:
    unset = h.unset_field

    def setv(items):
        return h.set_separator.join(_escape(x, sep, h.set_separator) for x in items) or h.empty_field

    vals = [setv(c.finding_ids), setv(c.detectors), setv(c.techniques),
            unset if c.urgency is None else str(c.urgency),
            unset if c.tier is None else str(c.tier),
            _escape("; ".join(c.suppressed), sep) if c.suppressed else unset]
    return sep.join(vals).encode()


def render(plan: Plan, ann: Annotator, seg: memoryview):
    """A data run enriched: (pieces to write, records, rejects, cited records). Arrow and numpy
    release the GIL, so runs render in parallel with reading and compressing."""
    trailing = seg[-1:] == b"\n"
    rows = _Rows(seg[:-1] if trailing else seg, ord(plan.sep), plan.ncols)
    n, nvalid = rows.n, rows.nvalid
    out, cited = rows.lines, 0
    if nvalid:
        joined, cited = _joined(plan, ann, rows)
        out = joined if nvalid == n else pc.if_else(rows.valid_arrow(), joined, rows.lines)
    offs = np.frombuffer(out.buffers()[1], np.int32, n + 1, out.offset * 4)
    pieces = [memoryview(out.buffers()[2])[offs[0]:offs[-1]]]
    if trailing:
        pieces.append(b"\n")
    return pieces, nvalid, n - nvalid - rows.blank, cited  # empty lines are not records


def _addresses(plan: Plan, ann: Annotator, col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(side, asset) columns for an address column: one classification per distinct value."""
    enc = col.dictionary_encode()
    unset = plan.unset
    sides, assets = [], []
    for v in enc.dictionary.to_pylist():
        side, asset = ann.address(v.decode("utf-8", "replace").strip() if v else None)
        sides.append((side if side != "-" else unset).encode())
        assets.append((asset or unset).encode())
    idx = enc.indices
    return (pc.take(pa.array(sides, pa.binary()), idx),
            pc.take(pa.array(assets, pa.binary()), idx))


def _app(plan: Plan, ann: Annotator, rows: "_Rows", orig) -> pa.Array | pa.Scalar:
    unset = pa.scalar(plan.unset.encode(), pa.binary())
    if not len(plan.usage_hosts) or orig is None:
        return unset
    hit = np.flatnonzero(pc.fill_null(pc.is_in(orig, value_set=plan.usage_hosts), False)
                         .to_numpy(False))
    if not len(hit):
        return unset
    ts = rows.column(plan.cols["ts"]) if "ts" in plan.cols else None
    values = [plan.unset.encode()] * rows.n
    for i in hit:
        try:
            t = float(ts[int(i)].as_py()) if ts is not None else None
        except ValueError:
            t = None
        label = ann.app(orig[int(i)].as_py().decode("utf-8", "replace"), t)
        if label:
            values[i] = _escape(label, plan.sep).encode()
    return pa.array(values, pa.binary())


def _joined(plan: Plan, ann: Annotator, rows: "_Rows") -> tuple[pa.Array, int]:
    cols = plan.cols
    unset = pa.scalar(plan.unset.encode(), pa.binary())

    def column(name):
        return rows.column(cols[name]) if name in cols else None

    orig, resp, uid, cid = (column(x) for x in ("id.orig_h", "id.resp_h", "uid", "community_id"))
    o_side, o_asset = _addresses(plan, ann, orig) if orig is not None else (unset, unset)
    r_side, r_asset = _addresses(plan, ann, resp) if resp is not None else (unset, unset)
    app = _app(plan, ann, rows, orig)
    cited, hits = _cited(plan, uid, cid)
    return pc.binary_join_element_wise(rows.lines, o_side, r_side, o_asset, r_asset, app,
                                       cited, plan.sep.encode()), hits


def _cited(plan: Plan, uid, cid):
    fallback = pa.scalar(plan.unset_cited, pa.binary())
    if not len(plan.cited_keys) or (uid is None and cid is None):
        return fallback, 0
    idx = None
    for col in (uid, cid):
        if col is None:
            continue
        hit = pc.index_in(col, value_set=plan.cited_keys)
        idx = hit if idx is None else pc.coalesce(idx, hit)
    hits = pc.sum(pc.is_valid(idx)).as_py() or 0
    if not hits:
        return fallback, 0
    return pc.fill_null(pc.take(plan.cited_text, idx), fallback), hits


class _Rows:
    """A run of data lines as one Arrow binary array (``line``, then ``\\nline`` ...) and the
    positions of their separators, from which single columns are cut out with numpy."""

    def __init__(self, content: memoryview, sep: int, ncols: int):
        arr = np.frombuffer(content, np.uint8)
        nl = np.flatnonzero(arr == 10)
        offsets = np.empty(len(nl) + 2, np.int32)
        offsets[0], offsets[-1] = 0, len(arr)
        offsets[1:-1] = nl
        self.arr, self.offsets, self.n, self.ncols = arr, offsets, len(offsets) - 1, ncols
        self.lines = pa.BinaryArray.from_buffers(pa.binary(), self.n, [None, pa.py_buffer(offsets),
                                                                        pa.py_buffer(content)])
        self.starts = offsets[:-1].copy()
        self.starts[1:] += 1  # past the newline each element but the first begins with
        self.ends = offsets[1:]
        self.seps = np.flatnonzero(arr == sep)
        first = np.searchsorted(self.seps, self.starts)
        self.first = first
        per_line = np.searchsorted(self.seps, self.ends) - first
        self.valid = per_line == ncols - 1
        self.nvalid = int(np.count_nonzero(self.valid))
        self.all_valid = self.nvalid == self.n
        self.blank = int(np.count_nonzero((self.ends == self.starts) & ~self.valid))

    def valid_arrow(self) -> pa.Array:
        return pa.array(self.valid, pa.bool_())

    def column(self, j: int) -> pa.Array:
        """Column ``j`` of every line (empty for an invalid line), as one binary array."""
        last = len(self.seps) - 1
        if j == 0:
            start = self.starts
        else:
            start = self.seps[np.minimum(self.first + j - 1, max(last, 0))] + 1 if last >= 0 \
                else self.starts
        if j == self.ncols - 1:
            end = self.ends
        else:
            end = self.seps[np.minimum(self.first + j, max(last, 0))] if last >= 0 else self.starts
        lens = (end - start).astype(np.int32)
        if not self.all_valid:
            lens[~self.valid] = 0
            start = np.where(self.valid, start, 0)
        offs = np.zeros(self.n + 1, np.int32)
        np.cumsum(lens, out=offs[1:])
        idx = np.arange(offs[-1], dtype=np.int32)
        idx += np.repeat((start - offs[:-1]).astype(np.int32), lens)
        data = self.arr[idx]
        return pa.BinaryArray.from_buffers(pa.binary(), self.n, [None, pa.py_buffer(offs),
                                                                  pa.py_buffer(data)])
