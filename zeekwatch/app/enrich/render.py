"""Rendering a run of Zeek TSV data lines: each line as read, followed by its ``zw.*`` columns.

A run's lines are one Arrow binary array whose elements are ``line`` (the first) and ``\\nline``
(the others), so the concatenation of the elements, each followed by its added columns, is the
output. The few columns looked at (uid, community_id, addresses, ts) are not copied out of the
lines one byte at a time: a column is an Arrow array over the run's own bytes whose elements
alternate between the field and the gap to the next line's field, and a ``take`` of the even
elements is the column. Addresses are classified once per distinct value (cached across runs)
into a small code, and the four address columns of a line are one string looked up by the pair
of codes. App labels are looked up for the few lines whose originator has app usage only.

Arrow arrays are built from buffers, never with ``pa.array``/``to_numpy``: those import pandas
(~0.2 s of every run) and nothing here needs it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch.app.enrich.annotate import Annotator


def escape(text: str, sep: str, set_sep: str | None = None) -> str:
    """A value as Zeek writes it: separators and control characters as \\xHH."""
    out = []
    for ch in text:
        if ch == sep or ch == set_sep or ch == "\\" or ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


# -- Arrow arrays from Python and numpy values, without pandas ---------------------------------
def binary(values: list[bytes]) -> pa.Array:
    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum([len(v) for v in values], out=offsets[1:])
    return pa.BinaryArray.from_buffers(pa.binary(), len(values), [
        None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))])


def scalar(value: bytes) -> pa.Scalar:
    return binary([value])[0]


def ints(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values)
    kind = {4: pa.int32(), 8: pa.int64()}[values.dtype.itemsize]
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def numbers(arr: pa.Array, dtype) -> np.ndarray:
    """A null-free primitive Arrow array as numpy (a view of its buffer)."""
    return np.frombuffer(arr.buffers()[1], dtype, len(arr), arr.offset * np.dtype(dtype).itemsize)


def bools(mask: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.bool_(), len(mask), [
        None, pa.py_buffer(np.packbits(mask, bitorder="little"))])


# -- addresses ---------------------------------------------------------------------------------
class AddressCodes:
    """Address bytes -> the code of its (side, asset class) (``Annotator.address``), each
    distinct value classified once per file. Shared by the rendering threads: a dict lookup or
    store is atomic, and codes are assigned under a lock."""

    LIMIT = 2_000_000  # bounded: a scan's address space cannot grow it forever

    def __init__(self, ann: Annotator):
        self.ann = ann
        self.known: dict[bytes, int] = {}
        self.classes: list[tuple[str, str | None]] = []
        self._index: dict[tuple[str, str | None], int] = {}
        self._lock = threading.Lock()

    def codes(self, values: list[bytes]) -> np.ndarray:
        get = self.known.get
        out = [get(v) for v in values]
        if None in out:
            out = [self._classify(v) if c is None else c for v, c in zip(values, out)]
        return np.array(out, np.int64)

    def _classify(self, value: bytes) -> int:
        hit = self.ann.address(value.decode("utf-8", "replace").strip() if value else None)
        with self._lock:
            code = self._index.get(hit)
            if code is None:
                code = self._index[hit] = len(self.classes)
                self.classes.append(hit)
        if len(self.known) < self.LIMIT:
            self.known[value] = code
        return code


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
    merged_text: Callable[[list[str]], bytes]  # the text of several keys' citations together
    usage_hosts: pa.Array
    codes: AddressCodes


def render(plan: Plan, ann: Annotator, seg: memoryview):
    """A data run enriched: (pieces to write, records, rejects, cited records). Arrow and numpy
    release the GIL, so runs render in parallel with reading and compressing."""
    trailing = seg[-1:] == b"\n"
    rows = Rows(seg[:-1] if trailing else seg, ord(plan.sep), plan.ncols)
    n, nvalid = rows.n, rows.nvalid
    out, cited = rows.lines, 0
    if nvalid:
        joined, cited = _joined(plan, ann, rows)
        out = joined if nvalid == n else pc.if_else(bools(rows.valid), joined, rows.lines)
    offs = np.frombuffer(out.buffers()[1], np.int32, n + 1, out.offset * 4)
    pieces = [memoryview(out.buffers()[2])[offs[0]:offs[-1]]]
    if trailing:
        pieces.append(b"\n")
    return pieces, nvalid, n - nvalid - rows.blank, cited  # empty lines are not records


def _joined(plan: Plan, ann: Annotator, rows: "Rows") -> tuple[pa.Array, int]:
    cols = plan.cols

    def column(name):
        return rows.column(cols[name]) if name in cols else None

    orig, resp, uid, cid = (column(x) for x in ("id.orig_h", "id.resp_h", "uid", "community_id"))
    cited, hits = _cited(plan, uid, cid)
    return pc.binary_join_element_wise(rows.lines, _addresses(plan, rows.n, orig, resp),
                                       _app(plan, ann, rows, orig), cited,
                                       scalar(plan.sep.encode())), hits


def _codes(plan: Plan, col: pa.Array | None, n: int) -> np.ndarray:
    if col is None:  # no such column: as an empty value (unset side and asset)
        return np.repeat(plan.codes.codes([b""]), n)
    enc = col.dictionary_encode()
    return plan.codes.codes(enc.dictionary.to_pylist())[numbers(enc.indices, np.int32)]


def _addresses(plan: Plan, n: int, orig, resp) -> pa.Array:
    """The four address columns (orig side, resp side, orig asset, resp asset) as one."""
    o, r = _codes(plan, orig, n), _codes(plan, resp, n)
    k = len(plan.codes.classes)  # every code in o and r is below it
    enc = pc.dictionary_encode(ints(o * k + r))
    texts = []
    for pair in numbers(enc.dictionary, np.int64).tolist():
        (o_side, o_asset), (r_side, r_asset) = (plan.codes.classes[c] for c in divmod(pair, k))
        texts.append(plan.sep.join([
            o_side if o_side != "-" else plan.unset, r_side if r_side != "-" else plan.unset,
            o_asset or plan.unset, r_asset or plan.unset]).encode())
    return pc.take(binary(texts), enc.indices)


def _app(plan: Plan, ann: Annotator, rows: "Rows", orig) -> pa.Array | pa.Scalar:
    """The app label of the lines whose originator has app usage at the line's time."""
    unset = scalar(plan.unset.encode())
    if not len(plan.usage_hosts) or orig is None:
        return unset
    hit = pc.indices_nonzero(pc.is_in(orig, value_set=plan.usage_hosts))  # no nulls
    if not len(hit):
        return unset
    hosts = pc.take(orig, hit).to_pylist()
    times = (rows.column(plan.cols["ts"], hit).to_pylist() if "ts" in plan.cols
             else [None] * len(hosts))
    labels, index = [plan.unset.encode()], np.zeros(rows.n, np.int32)
    for i, host, ts in zip(numbers(hit, np.uint64).tolist(), hosts, times):
        try:
            t = float(ts) if ts is not None else None
        except ValueError:
            t = None
        label = ann.app(host.decode("utf-8", "replace"), t)
        if label:
            index[i] = len(labels)
            labels.append(escape(label, plan.sep).encode())
    return pc.take(binary(labels), ints(index)) if len(labels) > 1 else unset


def _cited(plan: Plan, uid, cid):
    """The citation text of each line, by uid or community id; a line whose uid and community
    id are cited by different findings shows them all (as the JSON enrichers do)."""
    fallback = scalar(plan.unset_cited)
    if not len(plan.cited_keys) or (uid is None and cid is None):
        return fallback, 0
    found = [pc.index_in(col, value_set=plan.cited_keys) for col in (uid, cid) if col is not None]
    idx = found[0] if len(found) == 1 else pc.coalesce(*found)
    hits = pc.sum(pc.is_valid(idx)).as_py() or 0
    if not hits:
        return fallback, 0
    text = pc.fill_null(pc.take(plan.cited_text, idx), fallback)
    if len(found) == 2:
        text = _both(plan, text, *found)
    return text, hits


def _both(plan: Plan, text: pa.Array, by_uid: pa.Array, by_cid: pa.Array) -> pa.Array:
    # both cited, by different keys (no Python scalars: pyarrow would import pandas for one)
    both = pc.and_kleene(pc.and_(pc.is_valid(by_uid), pc.is_valid(by_cid)), pc.not_equal(by_uid, by_cid))
    rows = pc.indices_nonzero(both)
    if not len(rows):
        return text
    u = pc.take(plan.cited_keys, pc.take(by_uid, rows)).to_pylist()
    c = pc.take(plan.cited_keys, pc.take(by_cid, rows)).to_pylist()
    merged = [plan.merged_text([a.decode(), b.decode()]) for a, b in zip(u, c)]
    return pc.replace_with_mask(text, both, binary(merged))


class Rows:
    """A run of data lines as one Arrow binary array (``line``, then ``\\nline`` ...), the
    positions of their separators, and which lines have the header's column count."""

    def __init__(self, content: memoryview, sep: int, ncols: int):
        arr = np.frombuffer(content, np.uint8)
        nl = np.flatnonzero(arr == 10)
        offsets = np.empty(len(nl) + 2, np.int32)
        offsets[0], offsets[-1] = 0, len(arr)
        offsets[1:-1] = nl
        self.arr, self.n, self.ncols = arr, len(offsets) - 1, ncols
        self.lines = pa.BinaryArray.from_buffers(pa.binary(), self.n, [None, pa.py_buffer(offsets),
                                                                        pa.py_buffer(content)])
        self.starts = offsets[:-1].copy()
        self.starts[1:] += 1  # past the newline each element but the first begins with
        self.ends = offsets[1:]
        self.seps = np.flatnonzero(arr == sep)
        if sep == 10:
            self.first = np.searchsorted(self.seps, self.starts)
            per_line = np.searchsorted(self.seps, self.ends) - self.first
        else:  # a newline is no separator: the separators before a line's start and its end
            bounds = np.searchsorted(self.seps, offsets)
            self.first, per_line = bounds[:-1], np.diff(bounds)
        self.valid = per_line == ncols - 1
        self.nvalid = int(np.count_nonzero(self.valid))
        self.all_valid = self.nvalid == self.n
        self.blank = int(np.count_nonzero((self.ends == self.starts) & ~self.valid))
        self._even = None

    def _bounds(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Where field ``j`` of every line starts and ends (empty at the start of an invalid
        line)."""
        last = max(len(self.seps) - 1, 0)
        have = len(self.seps) > 0
        start = self.starts if j == 0 or not have else \
            self.seps[np.minimum(self.first + j - 1, last)] + 1
        end = self.ends if j == self.ncols - 1 else \
            self.seps[np.minimum(self.first + j, last)] if have else self.starts
        if not self.all_valid:
            start = np.where(self.valid, start, self.starts)
            end = np.where(self.valid, end, self.starts)
        return start, end

    def column(self, j: int, rows: pa.Array | None = None) -> pa.Array:
        """Field ``j`` of every line (of ``rows``, indices, if given; empty for an invalid
        line), as one binary array."""
        start, end = self._bounds(j)
        offs = np.empty(2 * self.n + 1, np.int32)
        offs[0:-1:2], offs[1::2] = start, end  # field, gap to the next line's field, field ...
        offs[-1] = end[-1]  # the last gap: empty
        both = pa.BinaryArray.from_buffers(pa.binary(), 2 * self.n, [
            None, pa.py_buffer(offs), pa.py_buffer(self.arr)])
        if rows is not None:
            return pc.take(both, ints(numbers(rows, np.int64) * 2))
        if self._even is None:
            self._even = ints(np.arange(0, 2 * self.n, 2, dtype=np.int32))
        return pc.take(both, self._even)
