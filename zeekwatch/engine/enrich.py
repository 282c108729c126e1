"""The enriched conn rows (table ``cx``): every conn row with the facts detectors test, once.

Most detectors ask the same questions of a connection: is the originator internal, is the
responder a mail or DNS server or a special address; did the attempt fail, was it established,
did the originator really initiate it (not backscatter), did the responder answer. Asked
inside every detector query, each question costs a pass over all the rows (string tests on
``conn_state`` and ``history``, a semi-join per address class); on 2 M rows, 14 detectors
spent about 2 s on them. Here they are columns, computed with Arrow compute kernels as each
chunk is read (while the reader parses the next one; C++ all the way), so detectors only read them:

    t               epoch seconds of ts (DOUBLE; NULL when ts is)
    orig_<class>    the originator / responder is in the address class: internal, mail,
    resp_<class>    dns, vpn, vpngw (``nets.NET_CLASSES``); never NULL
    resp_special    the responder is multicast, broadcast, link-local, loopback or
                    unspecified (never a host on the Internet); never NULL
    orig_id         the addresses as integers (their ``id`` in ``zw_addr``): cheap to join
    resp_id         and group on; NULL when the address is
    failed          conn_state S0, REJ, RSTOS0 or SH: the attempt got no usable answer
                    (NULL when conn_state is NULL)
    established     the connection was answered: conn_state SF, S1, S2, S3, RSTO, RSTR; or
                    a TCP history with the originator's SYN (S) and the responder's SYN-ACK
                    (h); or, without a state (flows from other sensors), responder payload
                    (TCP) or responder packets (other protocols); never NULL
    initiated       the originator really initiated: not TCP with conn_state SHR, RSTRH or
                    OTH, or a history without an S (backscatter, mid-stream pickup); never NULL
    outbound        an internal host initiated a TCP/UDP connection (with a resp_p) to an
                    external, non-special responder: orig_internal, initiated, not
                    resp_internal, not resp_special; never NULL (one flag for the common
                    selection of the bot detectors, instead of seven tests per row)
    answered        conn_state SF, S1, S2, S3, RSTO, RSTR or a SYN-ACK 'h' in the history;
                    never NULL
    rid             the row's number (unique in the engine): lets a query carry a number
                    through its heavy steps and fetch text columns only for its evidence

Address classes are decided once per distinct address (``AddressBook``): IPv4 by range tests
on the integer value (numpy), IPv6 with ``ipaddress``; the book is also the engine's ``zw_addr``
table, which the other tables' predicates (``Nets.member``) and ``cidr_match`` read.
The same function enriches rows for DuckDB now and, through Arrow batches, for Spark later.
"""

from __future__ import annotations

import functools
import ipaddress

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch import schema
from zeekwatch.nets import Nets

FAILED_STATES = ("S0", "REJ", "RSTOS0", "SH")
BACKSCATTER_STATES = ("SHR", "RSTRH", "OTH")
ESTABLISHED_STATES = ("SF", "S1", "S2", "S3", "RSTO", "RSTR")
# IPv4 ranges that are never a host on the Internet: this-network, loopback, link-local,
# multicast, reserved + limited broadcast.
SPECIAL_V4 = [(0, 0x00FFFFFF), (0x7F000000, 0x7FFFFFFF), (0xA9FE0000, 0xA9FEFFFF),
              (0xE0000000, 0xFFFFFFFF)]

# conn's text columns kept dictionary-encoded in ``cx`` (few distinct values per chunk)
CODED = ("orig_h", "resp_h", "proto", "service")
TEXT_CODES = pa.dictionary(pa.int32(), pa.string())
_V4_RE = r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$"


def address_columns(nets: Nets) -> list[str]:
    return list(nets.classes) + ["special"]


def schema_for(nets: Nets) -> pa.Schema:
    """The enriched conn schema: conn's columns, then the enrichment columns."""
    fields = [pa.field(f.name, TEXT_CODES) if f.name in CODED else f for f in schema.CONN]
    fields.append(pa.field("t", pa.float64()))
    fields += [pa.field(f"orig_{n}", pa.bool_()) for n in nets.classes]
    fields += [pa.field(f"resp_{n}", pa.bool_()) for n in nets.classes]
    fields += [pa.field("resp_special", pa.bool_()),
               pa.field("orig_id", pa.int32()), pa.field("resp_id", pa.int32())]
    fields += [pa.field(n, pa.bool_())
               for n in ("failed", "established", "initiated", "answered", "outbound")]
    fields.append(pa.field("rid", pa.int64()))
    return pa.schema(fields)


class AddressBook:
    """Every distinct address seen, with its classes and a stable integer id: Arrow arrays
    for the row kernels and the DuckDB table ``zw_addr`` (a, internal, mail, dns, vpn, vpngw,
    special, id) for SQL. An id is never reused, so ``retain`` can forget addresses (follow
    mode) without changing the ids of the rows that stay."""

    def __init__(self, con, nets: Nets):
        self.con, self.nets = con, nets
        self.names = address_columns(nets)
        cols = ", ".join(f"{n} BOOLEAN" for n in self.names)
        if con is not None:  # (Spark keeps its ``zw_addr`` itself: ``table``)
            con.execute(f"CREATE OR REPLACE TABLE zw_addr (a VARCHAR, {cols}, id INTEGER)")
        self.known = pa.array([], pa.string())
        self.ids = pa.array([], pa.int32())
        self.next_id = 0
        self.rows = 0  # conn rows enriched so far: the next row's ``rid``
        self.classes = {n: pa.array([], pa.bool_()) for n in self.names}
        # networks.internal "auto": addresses each sensor's logs marked local, and the ids of
        # those that had been classified before they were learned (rows to fix, ``relearn``)
        self.learned: dict[str, set[str]] = {}
        self.late: set[int] = set()

    def __len__(self) -> int:
        return len(self.known)

    def retain(self, addresses: pa.Array) -> int:
        """Forget every address not in ``addresses`` (ids of the others stay); return how
        many were forgotten."""
        keep = pc.is_in(self.known, value_set=addresses)
        dropped = len(self.known) - pc.sum(keep).as_py() if len(self.known) else 0
        if not dropped:
            return 0
        self.known, self.ids = self.known.filter(keep), self.ids.filter(keep)
        self.classes = {n: a.filter(keep) for n, a in self.classes.items()}
        self.con.register("zw_keep", pa.table({"a": self.known}))
        try:
            self.con.execute("DELETE FROM zw_addr WHERE a NOT IN (SELECT a FROM zw_keep)")
        finally:
            self.con.unregister("zw_keep")
        return dropped

    def add(self, addresses: pa.Array) -> int:
        """Classify the distinct ``addresses`` not seen yet; return how many were new."""
        new = addresses.filter(pc.and_(pc.is_valid(addresses),
                                       pc.invert(pc.is_in(addresses, value_set=self.known))))
        return self._append(new)

    def _append(self, new: pa.Array) -> int:
        """Classify ``new`` (distinct, not NULL, none known yet) and give them the next ids, in
        order: the first gets ``len(self)`` as its position in ``known``."""
        if not len(new):
            return 0
        classified = self._classify(new)
        ids = pa.array(range(self.next_id, self.next_id + len(new)), pa.int32())
        self.next_id += len(new)
        classified = classified.append_column("id", ids)
        if self.con is not None:
            self.con.register("zw_classified", classified)
            try:
                self.con.execute("INSERT INTO zw_addr SELECT * FROM zw_classified")
            finally:
                self.con.unregister("zw_classified")
        self.known = pa.concat_arrays([self.known, classified.column("a").combine_chunks()])
        self.ids = pa.concat_arrays([self.ids, ids])
        self.classes = {n: pa.concat_arrays([self.classes[n], classified.column(n).combine_chunks()])
                        for n in self.names}
        return len(new)

    def table(self) -> pa.Table:
        """The book as the ``zw_addr`` table (a, classes..., id)."""
        return pa.table({"a": self.known, **self.classes, "id": self.ids})

    @classmethod
    def from_table(cls, nets: Nets, table: pa.Table) -> "AddressBook":
        """A book holding ``table`` (``table()`` of another book; no DuckDB connection): the
        Spark engine's executors enrich with the book the driver made."""
        book = cls(None, nets)
        book.known = table.column("a").combine_chunks()
        book.ids = table.column("id").combine_chunks()
        book.classes = {n: table.column(n).combine_chunks() for n in book.names}
        book.next_id = len(book.known)
        return book
    def learn_local(self, chunk: pa.Table) -> int:
        """networks.internal "auto": the addresses Zeek marked local in this chunk
        (``local_orig`` for the originator, ``local_resp`` for the responder) become internal,
        recorded per sensor for the run summary. Returns how many were new to the class."""
        found = []
        for addr, flag in (("orig_h", "local_orig"), ("resp_h", "local_resp")):
            mask = pc.fill_null(chunk.column(flag), False)
            if pc.any(mask).as_py():
                part = pa.table({"a": chunk.column(addr), "s": chunk.column("sensor")}).filter(mask)
                found.append(part.group_by(["a", "s"]).aggregate([]))
        if not found:
            return 0
        pairs = pa.concat_tables(found)
        for a, s in zip(pairs.column("a").to_pylist(), pairs.column("s").to_pylist()):
            if a is not None:
                self.learned.setdefault(s or "", set()).add(a)
        addrs = pc.unique(pairs.column("a").combine_chunks()).drop_null()
        before = len(self.known)
        self.add(addrs)
        idx = pc.index_in(addrs, value_set=self.known).to_numpy(zero_copy_only=False)
        internal = self.classes["internal"].to_numpy(zero_copy_only=False).copy()
        flip = idx[~internal[idx]]
        if not len(flip):
            return 0
        self.late.update(int(i) for i in self.ids.take(pa.array(flip[flip < before])).to_pylist())
        internal[flip] = True
        self.classes["internal"] = pa.array(internal)
        self.con.register("zw_learn", pa.table({"a": self.known.take(pa.array(flip))}))
        try:
            self.con.execute("UPDATE zw_addr SET internal = TRUE WHERE a IN (SELECT a FROM zw_learn)")
        finally:
            self.con.unregister("zw_learn")
        return len(flip)

    def _classify(self, new: pa.Array) -> pa.Table:
        """The classes of ``new`` addresses: IPv4 vectorised (range tests on the integer
        value), IPv6 (and anything else) one by one with ``ipaddress``."""
        v4 = pc.fill_null(pc.match_substring_regex(new, _V4_RE), False)
        ints = np.full(len(new), -1, dtype=np.int64)
        if pc.any(v4).as_py():
            octets = pc.cast(pc.list_flatten(pc.split_pattern(new.filter(v4), ".")), pa.int64())
            o = octets.to_numpy().reshape(-1, 4)
            value = ((o[:, 0] * 256 + o[:, 1]) * 256 + o[:, 2]) * 256 + o[:, 3]
            ints[v4.to_numpy(zero_copy_only=False)] = np.where((o <= 255).all(axis=1), value, -1)
        cols = {"a": new}
        ranges = {n: c.v4 for n, c in self.nets.classes.items()}
        ranges["special"] = SPECIAL_V4
        for n, spans in ranges.items():
            hit = np.zeros(len(new), dtype=bool)
            for lo, hi in spans:
                hit |= (ints >= lo) & (ints <= hi)
            cols[n] = hit
        rest = np.flatnonzero(ints < 0)  # not dotted-quad IPv4: IPv6, or not an address
        for i, text in zip(rest, new.take(pa.array(rest)).to_pylist()):
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue  # in no class
            for n, cls in self.nets.classes.items():
                cols[n][i] = cls.contains(ip)
            cols["special"][i] = ip.is_multicast or ip.is_link_local or ip.is_loopback or ip.is_unspecified
        return pa.table({k: pa.array(v) if k != "a" else v for k, v in cols.items()})

    def lookup(self, column) -> dict[str, pa.Array]:
        """Per row of ``column``: its classes (False when the address is NULL), its ``id``
        (as in ``zw_addr``; NULL for NULL) and the column dictionary-encoded (``coded``).
        Each distinct address is looked up (and, if new, classified) once per chunk."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        coded = pc.dictionary_encode(column)  # (NULLs in the indices, not in the dictionary)
        idx = pc.index_in(coded.dictionary, value_set=self.known)
        if idx.null_count:  # the new ones go to the end of ``known`` in dictionary order
            missing = pc.is_null(idx)
            first = len(self.known)
            self._append(coded.dictionary.filter(missing))
            where = pc.fill_null(idx, -1).to_numpy().copy()
            gaps = missing.to_numpy(zero_copy_only=False)
            where[gaps] = np.arange(first, first + int(gaps.sum()), dtype=where.dtype)
            idx = pa.array(where)
        out = {n: pc.fill_null(pc.take(pc.take(arr, idx), coded.indices), False)
               for n, arr in self.classes.items()}
        out["id"] = pc.take(pc.take(self.ids, idx), coded.indices)
        out["coded"] = coded
        return out


def _state_in(states, values) -> pa.Array:
    """conn_state IN values, NULL where conn_state is NULL (SQL semantics)."""
    hit = pc.is_in(states, value_set=pa.array(values, pa.string()))
    return pc.if_else(pc.is_valid(states), hit, pa.nulls(len(states), pa.bool_()))


def outbound_flag(chunk, cols) -> pa.Array:
    """The ``outbound`` column from conn's columns (``chunk``) and the enrichment columns
    (``cols``: orig_internal, resp_internal, resp_special, initiated)."""
    proto = chunk.column("proto")
    if pa.types.is_dictionary(proto.type):
        proto = proto.cast(pa.string())
    tcp_udp = pc.fill_null(pc.or_(pc.equal(proto, "tcp"), pc.equal(proto, "udp")), False)
    parts = [tcp_udp, pc.is_valid(chunk.column("resp_p")), pc.is_valid(chunk.column("resp_h")),
             cols["orig_internal"], pc.invert(cols["resp_internal"]),
             pc.invert(cols["resp_special"]), cols["initiated"]]
    return functools.reduce(pc.and_, parts)


def relearn(chunk: pa.Table, late: pa.Array) -> pa.Table:
    """An enriched chunk with orig_internal, resp_internal and outbound recomputed for the
    address ids in ``late`` (learned internal after rows with them were enriched)."""
    cols = {n: chunk.column(n) for n in ("orig_internal", "resp_internal", "resp_special", "initiated")}
    for end in ("orig", "resp"):
        hit = pc.fill_null(pc.is_in(chunk.column(f"{end}_id"), value_set=late), False)
        cols[f"{end}_internal"] = pc.or_(cols[f"{end}_internal"], hit)
    cols["outbound"] = outbound_flag(chunk, cols)
    for name in ("orig_internal", "resp_internal", "outbound"):
        chunk = chunk.set_column(chunk.schema.get_field_index(name), name, cols[name])
    return chunk


def enrich(chunk: pa.Table, book: AddressBook) -> pa.Table:
    """A conn chunk (normalized schema) with the enrichment columns appended (see the
    module docstring for their meaning); new addresses go into ``book`` first."""
    if book.nets.auto:
        book.learn_local(chunk)
    orig, resp = chunk.column("orig_h"), chunk.column("resp_h")
    state, hist, proto = chunk.column("conn_state"), chunk.column("history"), chunk.column("proto")
    tcp = pc.equal(proto, "tcp")
    syn, synack = pc.match_substring(hist, "S"), pc.match_substring(hist, "h")
    est_state = _state_in(state, ESTABLISHED_STATES)
    no_state = pc.is_null(state)
    reply = pc.or_kleene(
        pc.greater(pc.fill_null(chunk.column("resp_bytes"), 0), 0),
        pc.and_kleene(pc.invert(tcp), pc.greater(pc.fill_null(chunk.column("resp_pkts"), 0), 0)))
    established = pc.or_kleene(pc.or_kleene(est_state, pc.and_kleene(pc.and_kleene(tcp, syn), synack)),
                               pc.and_kleene(no_state, reply))
    backscatter = pc.and_kleene(tcp, pc.or_kleene(_state_in(state, BACKSCATTER_STATES),
                                                  pc.and_kleene(pc.is_valid(hist), pc.invert(syn))))
    ts = chunk.column("ts")
    extra = {"t": pc.divide(pc.cast(pc.cast(ts, pa.int64()), pa.float64(), safe=False), 1e6)}
    o_cls, r_cls = book.lookup(orig), book.lookup(resp)
    for n in book.nets.classes:
        extra[f"orig_{n}"] = o_cls[n]
    for n in book.nets.classes:
        extra[f"resp_{n}"] = r_cls[n]
    extra["resp_special"] = r_cls["special"]
    extra["orig_id"], extra["resp_id"] = o_cls["id"], r_cls["id"]
    extra["failed"] = _state_in(state, FAILED_STATES)
    extra["established"] = pc.fill_null(established, False)
    extra["initiated"] = pc.invert(pc.fill_null(backscatter, False))
    extra["answered"] = pc.fill_null(pc.or_kleene(est_state, synack), False)
    extra["outbound"] = outbound_flag(chunk, extra)
    extra["rid"] = pa.array(np.arange(book.rows, book.rows + chunk.num_rows, dtype=np.int64))
    book.rows += chunk.num_rows
    # low-cardinality text as dictionaries: DuckDB scans them without building each string
    coded = {"orig_h": o_cls["coded"], "resp_h": r_cls["coded"],
             "proto": pc.dictionary_encode(proto), "service": pc.dictionary_encode(chunk.column("service"))}
    cols = [coded.get(f.name, chunk.column(f.name)) for f in schema.CONN] + list(extra.values())
    return pa.Table.from_arrays(cols, schema=schema_for(book.nets))
