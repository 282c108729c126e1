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
                    self._block(carry)
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
            self._block(buf[:cut])
            carry = buf[cut:]

    def _block(self, blk: bytes) -> None:
        pos, end = 0, len(blk)
        while pos < end:
            if blk[pos] == 0x23:  # '#': a header line
                nl = blk.find(b"\n", pos)
                stop = end if nl < 0 else nl + 1
                self._header_line(blk[pos:stop])
                pos = stop
                continue
            nxt = blk.find(b"\n#", pos)
            stop = end if nxt < 0 else nxt + 1
            self._data(blk[pos:stop])
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
    def _data(self, seg: bytes) -> None:
        if not self.seen_header and self.first_data:
            self._synthesize_header(seg)
        self.first_data = False
        if not self.active:  # no usable header block (or enriched already): as read
            self.out.write(seg)
            lines = sum(1 for x in seg.split(b"\n") if x.strip())
            if self.header.fields and any(f.startswith(PREFIX) for f in self.header.fields):
                self.counts.passed += lines
            else:
                self.counts.rejects += lines
            return
        if self.cols is None:
            self._layout()
        trailing = seg.endswith(b"\n")
        content = seg[:-1] if trailing else seg
        nl = np.flatnonzero(np.frombuffer(content, np.uint8) == 10)
        offsets = np.empty(len(nl) + 2, np.int32)
        offsets[0], offsets[-1] = 0, len(content)
        offsets[1:-1] = nl
        n = len(offsets) - 1
        lines = pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets),
                                                              pa.py_buffer(content)])
        self._write(lines, n)
        if trailing:
            self.out.write(b"\n")

    def _write(self, lines: pa.Array, n: int) -> None:
        sep = self._sep.encode()
        valid = pc.equal(pc.count_substring(lines, sep), self.ncols - 1)
        nvalid = pc.sum(valid).as_py() or 0
        blank = pc.sum(pc.is_in(lines, value_set=pa.array([b"", b"\n", b"\r", b"\n\r"]))).as_py()
        self.counts.records += nvalid
        self.counts.rejects += n - nvalid - (blank or 0)  # empty lines are not records
        if nvalid == 0:
            out = lines
        else:
            out = pc.if_else(valid, self._joined(lines, valid, n, sep), lines)
        offs = np.frombuffer(out.buffers()[1], np.int32, n + 1, out.offset * 4)
        self.out.write(memoryview(out.buffers()[2])[offs[0]:offs[-1]])

    def _joined(self, lines, valid, n: int, sep: bytes) -> pa.Array:
        cols = self.cols
        unset = pa.scalar(self.header.unset_field.encode(), pa.binary())
        safe = pc.if_else(valid, lines, pa.scalar(sep * (self.ncols - 1), pa.binary()))
        parts = pc.split_pattern(safe, pattern=sep, max_splits=max(cols.values(), default=0) + 1)

        def column(name):
            if name not in cols:
                return None
            c = pc.list_element(parts, cols[name])
            return pc.replace_substring(c, b"\n", b"", max_replacements=1) if cols[name] == 0 else c

        orig, resp, uid, cid = (column(x) for x in ("id.orig_h", "id.resp_h", "uid", "community_id"))
        o_side, o_asset = self._addresses(orig) if orig is not None else (unset, unset)
        r_side, r_asset = self._addresses(resp) if resp is not None else (unset, unset)
        ts = column("ts")

        def get(i):
            t = ts[i].as_py() if ts is not None else None
            try:
                t = float(t) if t is not None else None
            except ValueError:
                t = None
            return orig[i].as_py().decode("utf-8", "replace"), t

        app = self._app(n, orig, get)
        cited = self._cited(uid, cid)
        return pc.binary_join_element_wise(lines, o_side, r_side, o_asset, r_asset, app, cited, sep)

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
