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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch.app.enrich.annotate import FIELDS, PREFIX, Annotator, Citation
from zeekwatch.readers.zeek.header import Header, infer_conn_header

BLOCK = 8 << 20  # bytes of decompressed input per step (memory stays a few times this)
MAX_LINE = 64 << 20  # a "line" longer than this is passed through in pieces, not held
NAMES = ("ts", "uid", "id.orig_h", "id.resp_h", "community_id")


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
    def __init__(self, ann: Annotator, out, counts: Counts):
        self.ann, self.out, self.counts = ann, out, counts
        self.header = Header()
        self.cols: dict[str, int] | None = None  # needed column -> index, for the current block
        self.ncols = 0
        self.active = False  # the current header block gets the added columns
        self.seen_header = False
        self.first_data = True
        self._cited_keys: pa.Array | None = None
        self._cited_text: pa.Array | None = None
        self._sep = "\t"

    # -- input ----------------------------------------------------------------------------
    def run(self, fin) -> None:
        carry = b""
        while True:
            data = fin.read(BLOCK)
            if not data:
                if carry:
                    self._block(carry, len(carry))
                return
            buf = carry + data if carry else data
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                if len(buf) > MAX_LINE:  # no newline for 64 MB: not a record; pass it on
                    self.out.write(buf)
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
        self.out.write(raw)

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
        self.out.write(("\n".join(lines) + "\n").encode())
        self.active = True

    def _layout(self) -> None:
        h = self.header
        self._sep = h.separator if len(h.separator) == 1 else "\t"
        fields = h.fields or []
        self.ncols = len(fields)
        self.cols = {n: fields.index(n) for n in NAMES if n in fields}
        if self._cited_keys is None:
            keys = list(self.ann.cited)
            self._cited_keys = pa.array([k.encode() for k in keys], pa.binary())
            self._cited_text = pa.array([self._cited_bytes(self.ann.cited[k]) for k in keys],
                                        pa.binary())
        self._unset_cited = self._sep.join([h.unset_field] * 6).encode()

    # -- values ---------------------------------------------------------------------------
    def _cited_bytes(self, c: Citation) -> bytes:
        h, sep = self.header, self._sep
        unset = h.unset_field

        def setv(items):
            return h.set_separator.join(_escape(x, sep, h.set_separator) for x in items) or h.empty_field

        vals = [setv(c.finding_ids), setv(c.detectors), setv(c.techniques),
                unset if c.urgency is None else str(c.urgency),
                unset if c.tier is None else str(c.tier),
                _escape("; ".join(c.suppressed), sep) if c.suppressed else unset]
        return sep.join(vals).encode()

    def _addresses(self, col: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(side, asset) columns for an address column: one classification per distinct value."""
        enc = col.dictionary_encode()
        unset = self.header.unset_field
        sides, assets = [], []
        for v in enc.dictionary.to_pylist():
            side, asset = self.ann.address(v.decode("utf-8", "replace").strip() if v else None)
            sides.append((side if side != "-" else unset).encode())
            assets.append((asset or unset).encode())
        idx = enc.indices
        return (pc.take(pa.array(sides, pa.binary()), idx),
                pc.take(pa.array(assets, pa.binary()), idx))

    def _app(self, n: int, col, get) -> pa.Array | pa.Scalar:
        unset = pa.scalar(self.header.unset_field.encode(), pa.binary())
        if not self.ann.usage or col is None:
            return unset
        hosts = pa.array([h.encode() for h in self.ann.usage], pa.binary())
        rows = np.flatnonzero(pc.fill_null(pc.is_in(col, value_set=hosts), False).to_numpy(False))
        if not len(rows):
            return unset
        values = [self.header.unset_field.encode()] * n
        for i in rows:
            host, ts = get(int(i))
            label = self.ann.app(host, ts)
            if label:
                values[i] = _escape(label, self._sep).encode()
        return pa.array(values, pa.binary())

    # -- data -----------------------------------------------------------------------------
    def _data(self, seg: memoryview) -> None:
        if not self.seen_header and self.first_data:
            self._synthesize_header(bytes(seg[:1 << 20]))
        self.first_data = False
        if not self.active:  # no usable header block (or enriched already): as read
            self.out.write(seg)
            lines = sum(1 for x in bytes(seg).split(b"\n") if x.strip())
            if self.header.fields and any(f.startswith(PREFIX) for f in self.header.fields):
                self.counts.passed += lines
            else:
                self.counts.rejects += lines
            return
        if self.cols is None:
            self._layout()
        trailing = seg[-1:] == b"\n"
        content = seg[:-1] if trailing else seg
        rows = _Rows(content, ord(self._sep), self.ncols)
        self._write(rows)
        if trailing:
            self.out.write(b"\n")

    def _write(self, rows: "_Rows") -> None:
        n, nvalid = rows.n, rows.nvalid
        self.counts.records += nvalid
        self.counts.rejects += n - nvalid - rows.blank  # empty lines are not records
        out = rows.lines
        if nvalid == n:
            out = self._joined(rows)
        elif nvalid:
            out = pc.if_else(rows.valid_arrow(), self._joined(rows), rows.lines)
        offs = np.frombuffer(out.buffers()[1], np.int32, n + 1, out.offset * 4)
        self.out.write(memoryview(out.buffers()[2])[offs[0]:offs[-1]])

    def _joined(self, rows: "_Rows") -> pa.Array:
        cols = self.cols
        unset = pa.scalar(self.header.unset_field.encode(), pa.binary())

        def column(name):
            return rows.column(cols[name]) if name in cols else None

        orig, resp, uid, cid = (column(x) for x in ("id.orig_h", "id.resp_h", "uid", "community_id"))
        o_side, o_asset = self._addresses(orig) if orig is not None else (unset, unset)
        r_side, r_asset = self._addresses(resp) if resp is not None else (unset, unset)

        stamps: list = []

        def get(i):
            if not stamps:
                stamps.append(column("ts"))
            ts = stamps[0]
            t = ts[i].as_py() if ts is not None else None
            try:
                t = float(t) if t is not None else None
            except ValueError:
                t = None
            return orig[i].as_py().decode("utf-8", "replace"), t

        app = self._app(rows.n, orig, get)
        cited = self._cited(uid, cid)
        return pc.binary_join_element_wise(rows.lines, o_side, r_side, o_asset, r_asset, app,
                                           cited, self._sep.encode())

    def _cited(self, uid, cid):
        fallback = pa.scalar(self._unset_cited, pa.binary())
        if not len(self._cited_keys) or (uid is None and cid is None):
            return fallback
        idx = None
        for col in (uid, cid):
            if col is None:
                continue
            hit = pc.index_in(col, value_set=self._cited_keys)
            idx = hit if idx is None else pc.coalesce(idx, hit)
        hits = pc.sum(pc.is_valid(idx)).as_py() or 0
        if not hits:
            return fallback
        self.counts.cited += hits
        return pc.fill_null(pc.take(self._cited_text, idx), fallback)


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
