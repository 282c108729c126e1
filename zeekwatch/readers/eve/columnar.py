"""Suricata EVE lines → normalized tables in Arrow columns (the fast paths of ``eve.reader``).

Two ways in, one conversion (``Columns``):

- the whole file through DuckDB's ``read_json`` with an explicit column list (``duckdb_batches``:
  the fields zeekwatch uses; numbers read as text and converted strictly here, so that a value
  the per-event code would not take — 1.5 or true as a port — is not silently rounded);
- blocks of whole lines (``jsonlines.iter_blocks``) through ``pyarrow.json`` with an explicit
  schema (``parse_block``), where DuckDB stopped.

Flow, alert, http, tls and smtp events become rows with Arrow compute, giving the rows the
per-event code gives (``reader``, ``flow``): the same proto, port, service and uid rules; each
flow's ``conn_state`` is decided by ``flow.conn_state`` itself, once per distinct combination of
its inputs. DNS events read by DuckDB are reduced by column too (``dns_columns.extract``), and
merged into one row per query by ``dns.DnsMerge``; those of pyarrow.json blocks are merged
too but reduced event by event.

What this path cannot take whole — a line that is not a JSON object, an event without
``event_type``, a value of an unexpected type (a port as text, a flow_id beyond 64 bits), a
blank line — raises ``Fallback``: the caller reads that block with the per-event code, which
rejects the bad lines with their line numbers and reads the rest leniently. So the result is
the same either way; only the speed differs. (One difference is left: a boolean where text is
expected, e.g. ``"proto": true``, reads as "true" from DuckDB and as NULL event by event.)
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from zeekwatch import schema
from zeekwatch.readers.base import duckdb_reader
from zeekwatch.readers.eve import flow as flowmod
from zeekwatch.readers.eve.dns_columns import DUCKDB_TYPE, Fallback, extract
from zeekwatch.readers.jsonlines import Block, TsStats, parse_ts

S, I64 = pa.string(), pa.int64()
_STRUCTS = {
    "flow": {"pkts_toserver": I64, "pkts_toclient": I64, "bytes_toserver": I64,
             "bytes_toclient": I64, "start": S, "end": S, "state": S},
    "tcp": {"tcp_flags_ts": S, "tcp_flags_tc": S},
    "alert": {"gid": I64, "signature_id": I64, "rev": I64, "signature": S, "category": S,
              "severity": I64, "action": S},
    "http": {"hostname": S, "url": S, "http_user_agent": S, "http_method": S, "status": I64},
    "tls": {"sni": S},
    "smtp": {"helo": S, "mail_from": S, "rcpt_to": pa.list_(S)},
}
SCHEMA = pa.schema(
    [("timestamp", S), ("flow_id", I64), ("event_type", S), ("src_ip", S), ("src_port", I64),
     ("dest_ip", S), ("dest_port", I64), ("proto", S), ("icmp_type", I64), ("icmp_code", I64),
     ("community_id", S), ("app_proto", S), ("host", S)]
    + [(name, pa.struct(list(fields.items()))) for name, fields in _STRUCTS.items()])
OPTIONS = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
READ = pj.ReadOptions(use_threads=False, block_size=16 << 20)
APP_TABLES = {"alert": "alert", "flow": "conn", "http": "http", "tls": "tls", "smtp": "smtp"}
ICMP = ("icmp", "ipv6-icmp", "icmpv6", "icmp6")


INT_FIELDS = {n for n, t in zip(SCHEMA.names, SCHEMA.types) if t == I64}
BATCH_ROWS = 122_880


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f'"{f.name}" {_duck_type(f.type)}' for f in t) + ")"
    if pa.types.is_list(t):
        return "VARCHAR[]"
    return "VARCHAR"  # numbers too: converted strictly in ``strict_numbers``


def duckdb_batches(path: str, gzip: bool):
    """The file's events as Arrow tables of ``SCHEMA``'s fields (numbers as text; ``dns`` as
    ``dns_columns.DUCKDB_TYPE``), streamed; DuckDB raises at the first line it cannot read."""
    cols = {f.name: _duck_type(f.type) for f in SCHEMA}
    cols["dns"] = DUCKDB_TYPE
    spec = ", ".join(f"'{k}': '{v}'" for k, v in cols.items())
    con = duckdb_reader()
    try:
        query = (f"SELECT * FROM read_json($path, format='newline_delimited', records=true, "
                 f"compression=$comp, columns={{{spec}}})")
        reader = con.sql(query, params={"path": path, "comp": "gzip" if gzip else "none"}) \
            .to_arrow_reader(BATCH_ROWS)
        for batch in reader:  # two threads: batches of ~40 k rows rather than BATCH_ROWS
            yield pa.Table.from_batches([batch])
    finally:
        con.close()


def strict_numbers(raw: pa.Table) -> pa.Table:
    """DuckDB's text of the number fields as int64; anything that is not a whole number in
    plain notation (1.5, true, 1e3, beyond 64 bits) raises ``Fallback``."""
    cols = []
    for name in raw.column_names:
        arr = raw.column(name).combine_chunks()
        if name in INT_FIELDS:
            arr = _ints(arr)
        elif pa.types.is_struct(arr.type) and name in _STRUCTS:
            fields = [_ints(arr.field(f.name)) if _STRUCTS[name][f.name] == I64 else arr.field(f.name)
                      for f in arr.type]
            arr = pa.StructArray.from_arrays(fields, names=[f.name for f in arr.type],
                                             mask=pc.is_null(arr))
        cols.append(arr)
    return pa.Table.from_arrays(cols, names=raw.column_names)


def _ints(arr: pa.Array) -> pa.Array:
    if arr.type == I64:
        return arr
    try:
        return arr.cast(I64)
    except (pa.ArrowInvalid, OverflowError) as exc:
        raise Fallback(str(exc)) from None


def _all_iso_in_range(text: pa.Array) -> bool:
    """The common case, cheaply: every timestamp starts "YYYY-" with 1970 <= YYYY < 2200."""
    if text.null_count or not pc.all(pc.equal(pc.utf8_slice_codeunits(text, 4, 5), "-")).as_py():
        return False
    try:
        year = pc.cast(pc.utf8_slice_codeunits(text, 0, 4), pa.int32())
    except pa.ArrowInvalid:
        return False
    low, high = pc.min_max(year).values()
    return low.as_py() >= 1970 and high.as_py() < 2200


def check_ts_range(col) -> None:
    """Raise ``Fallback`` when a ``timestamp`` lies outside 1970..2199 (``schema.TS_MAX_SECONDS``):
    the per-event path then rejects that line with its number (``jsonlines.ts_problem``), as
    it does for every other bad value."""
    text = pc.cast(col, pa.string())
    if _all_iso_in_range(text):
        return
    iso = pc.fill_null(pc.match_substring_regex(text, r"^\s*\d{4}-"), False)
    year = pc.cast(pc.if_else(iso, pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(text), 0, 4), "1970"),
                   pa.int32())
    bad = pc.or_(pc.less(year, 1970), pc.greater_equal(year, 2200))
    number = pc.fill_null(pc.match_substring_regex(
        text, r"^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"), False)
    seconds = pc.cast(pc.if_else(number, pc.utf8_trim_whitespace(text), "0"), pa.float64())
    bad = pc.or_(bad, pc.or_(pc.less(seconds, schema.TS_MIN_SECONDS),
                             pc.greater_equal(seconds, schema.TS_MAX_SECONDS)))
    if pc.any(bad).as_py():
        raise Fallback("timestamp out of range")


def parse_block(block: Block) -> tuple[pa.Table, list[bytes]]:
    """The block's events as columns and its lines; raises ``Fallback`` when it cannot."""
    data = block.data if block.data.endswith(b"\n") else block.data + b"\n"
    lines = data.split(b"\n")
    lines.pop()
    if any(not raw.strip() for raw in lines):
        raise Fallback("blank line")
    try:
        raw = pj.read_json(pa.BufferReader(data), read_options=READ, parse_options=OPTIONS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError) as exc:
        raise Fallback(str(exc)) from None
    if raw.num_rows != len(lines) or raw.column("event_type").null_count:
        raise Fallback("an event without event_type")
    return raw, lines


class Columns:
    """Turns parsed blocks into normalized tables (one instance per file)."""

    def __init__(self, path: str, stats: TsStats, unused: Counter):
        self.path = path
        self.ts = stats
        self.unused = unused

    def tables(self, raw: pa.Table) -> dict[str, pa.Table]:
        """{table: rows} of one parsed block (DNS events aside: ``dns_rows``). Counts and notes
        change only when the whole block succeeded (else the per-event path counts it)."""
        unused, stats = Counter(), TsStats()
        out = self._tables(raw, unused, stats)
        self.unused.update(unused)
        self.ts.no_zone += stats.no_zone
        self.ts.bad += stats.bad
        return out

    def _tables(self, raw: pa.Table, unused: Counter, stats: TsStats):
        self._unused, self._stats = unused, stats
        check_ts_range(raw.column("timestamp"))
        kind = raw.column("event_type").combine_chunks()
        out: dict[str, pa.Table] = {}
        for item in pc.value_counts(kind).to_pylist():
            name, count = item["values"], item["counts"]
            table = APP_TABLES.get(name)
            if name == "dns":
                continue
            if table is None:
                self._unused[str(name)] += count
                continue
            part = raw if count == len(raw) else raw.filter(pc.equal(kind, name))
            if name != "flow":
                has = pc.is_valid(part.column(name))
                missing = len(part) - (pc.sum(has).as_py() or 0)
                if missing:
                    self._unused[f"{name} without an '{name}' object"] += missing
                    part = part.filter(has)
            if len(part):
                out[table] = self._normalize(table, name, part)
        return out

    def _normalize(self, table: str, kind: str, e: pa.Table) -> pa.Table:
        c = self._common(e)
        if kind == "flow":
            cols = self._conn(e, c)
        elif kind == "alert":
            a = e.column("alert").combine_chunks()
            cols = {"ts": c["ts"], "orig_h": c["src_ip"], "orig_p": c["src_port"],
                    "resp_h": c["dest_ip"], "resp_p": c["dest_port"], "proto": c["proto"],
                    "gid": a.field("gid"), "sid": a.field("signature_id"), "rev": a.field("rev"),
                    "signature": a.field("signature"), "category": a.field("category"),
                    "severity": a.field("severity"), "action": a.field("action"),
                    "app_proto": c["app_proto"], "flow_id": c["flow_id"],
                    "community_id": c["community_id"]}
        else:
            cols = {"ts": c["ts"], "uid": c["uid"], "orig_h": c["src_ip"], "resp_h": c["dest_ip"],
                    "resp_p": c["dest_port"]}
            cols.update(self._app(kind, e.column(kind).combine_chunks()))
        if not pa.types.is_timestamp(cols["ts"].type):
            cols["ts"] = parse_ts(cols["ts"], self._stats)
        cols["source"] = schema.source_column(self.path, len(e))
        return schema.conform(table, pa.table(_typed(table, cols)))

    @staticmethod
    def _common(e: pa.Table) -> dict[str, pa.Array]:
        col = lambda n: e.column(n).combine_chunks()  # noqa: E731
        proto = _proto(col("proto"))
        icmp = pc.fill_null(pc.equal(proto, "icmp"), False)
        flow_id = col("flow_id")
        return {
            "ts": col("timestamp"), "flow_id": flow_id, "uid": pc.cast(flow_id, S),
            "src_ip": col("src_ip"), "dest_ip": col("dest_ip"), "proto": proto,
            "src_port": pc.if_else(icmp, col("icmp_type"), col("src_port")),
            "dest_port": pc.if_else(icmp, col("icmp_code"), col("dest_port")),
            "community_id": col("community_id"), "app_proto": col("app_proto"),
        }

    def _conn(self, e: pa.Table, c: dict) -> dict[str, pa.Array]:
        f = e.column("flow").combine_chunks()
        start = f.field("start")
        start = pc.if_else(pc.fill_null(pc.greater(pc.utf8_length(start), 0), False), start, c["ts"])
        ts = parse_ts(start, self._stats)
        end = parse_ts(f.field("end"), self._stats)
        us = pc.subtract(end.cast(I64), ts.cast(I64))
        pkts_ts, pkts_tc = f.field("pkts_toserver"), f.field("pkts_toclient")
        return {
            "ts": ts, "duration": pc.divide(us.cast(pa.float64()), 1e6), "uid": c["uid"],
            "orig_h": c["src_ip"], "orig_p": c["src_port"], "resp_h": c["dest_ip"],
            "resp_p": c["dest_port"], "proto": c["proto"], "service": _service(c["app_proto"]),
            "orig_bytes": f.field("bytes_toserver"), "resp_bytes": f.field("bytes_toclient"),
            "conn_state": _conn_state(c["proto"], f.field("state"), e.column("tcp").combine_chunks(),
                                      pkts_ts, pkts_tc),
            "orig_pkts": pkts_ts, "resp_pkts": pkts_tc, "community_id": c["community_id"],
            "sensor": e.column("host").combine_chunks(),
        }

    def _app(self, kind: str, s: pa.StructArray) -> dict[str, pa.Array]:
        if kind == "http":
            return {"host": s.field("hostname"), "uri": s.field("url"),
                    "user_agent": s.field("http_user_agent"), "method": s.field("http_method"),
                    "status": s.field("status")}
        if kind == "tls":
            return {"server_name": s.field("sni")}
        rcpt = s.field("rcpt_to")
        return {"helo": s.field("helo"), "mail_from": _mailbox(s.field("mail_from")),
                "rcpt_to": _mailboxes(rcpt)}


def _typed(table: str, cols: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """Columns cast to the normalized schema's types. A value that does not fit (a port of
    10**10) raises ``Fallback``: the per-event path makes it NULL."""
    sch = schema.TABLES[table]
    out = {}
    for name, arr in cols.items():
        if name in sch.names:
            try:
                arr = arr.cast(sch.field(name).type)
            except (pa.ArrowInvalid, OverflowError) as exc:
                raise Fallback(str(exc)) from None
        out[name] = arr
    return out


def _proto(p: pa.Array) -> pa.Array:
    low = pc.utf8_lower(p)
    return pc.if_else(pc.fill_null(pc.is_in(low, value_set=pa.array(ICMP)), False), "icmp", low)


def _service(app: pa.Array) -> pa.Array:
    return _per_value(app, flowmod.service)


def _mailbox(v: pa.Array) -> pa.Array:
    s = pc.utf8_trim_whitespace(v)
    bracketed = pc.and_(pc.starts_with(s, "<"), pc.ends_with(s, ">"))
    return pc.if_else(pc.fill_null(bracketed, False), pc.utf8_slice_codeunits(s, 1, -1), s)


def _mailboxes(v: pa.ListArray) -> pa.Array:
    flat = _mailbox(pc.list_flatten(v))
    return pa.ListArray.from_arrays(v.offsets, flat, mask=pc.is_null(v))


def _per_value(arr: pa.Array, fn) -> pa.Array:
    """``fn`` applied once per distinct value of ``arr`` (NULL included)."""
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    mapped = pa.array([fn(v) for v in enc.dictionary.to_pylist()], S)
    return mapped.take(enc.indices)


def _truthy(n: pa.Array) -> pa.Array:
    """Whether a packet count is truthy in Python (not NULL, not 0)."""
    return pc.fill_null(pc.not_equal(n, 0), False)


def _conn_state(proto, state, tcp: pa.StructArray, pkts_ts, pkts_tc) -> pa.Array:
    """``flow.conn_state`` per distinct combination of its inputs (a few dozen per file): each
    input dictionary-encoded, the codes combined into one integer per row."""
    parts = [proto, state, tcp.field("tcp_flags_ts"), tcp.field("tcp_flags_tc"), pc.is_valid(tcp),
             _truthy(pkts_ts), _truthy(pkts_tc)]
    key = np.zeros(len(proto), dtype=np.int64)
    values, size = [], 1
    for part in parts:
        enc = pc.dictionary_encode(part, null_encoding="encode")
        values.append(enc.dictionary.to_pylist())
        size *= len(values[-1])
        if size >= 1 << 62:
            raise Fallback("too many distinct flow states")
        key = key * len(values[-1]) + enc.indices.to_numpy(zero_copy_only=False)
    combos, inverse = np.unique(key, return_inverse=True)
    decided = []
    for combo in combos.tolist():
        picked = []
        for vals in reversed(values):
            combo, code = divmod(combo, len(vals))
            picked.append(vals[code])
        b, a, has_tcp, ftc, fts, st, p = picked
        tcp_obj = {"tcp_flags_ts": fts, "tcp_flags_tc": ftc} if has_tcp else None
        decided.append(flowmod.conn_state(p, {"state": st}, tcp_obj, a, b))
    return pa.array(decided, S).take(pa.array(inverse.astype(np.int64)))


# the DNS object and the fields ``Columns._common`` reads
_DNS_COLUMNS = ["dns", "timestamp", "flow_id", "proto", "icmp_type", "icmp_code", "src_ip", "src_port",
                "dest_ip", "dest_port", "community_id", "app_proto"]


def dns_table(raw: pa.Table, before: int) -> pa.Table:
    """The DNS events of a DuckDB batch (numbers made strict) as rows of ``dns.EVENTS``;
    ``before``: the events read before the batch."""
    rows = dns_rows(raw)
    part = raw.select(_DNS_COLUMNS).take(rows)  # not the other events' objects: they are NULL here
    return extract(part.column("dns"), Columns._common(part), before + 1 + rows.to_numpy())


def dns_rows(raw: pa.Table) -> pa.Array:
    """Indexes of the DNS events of a parsed block."""
    return pc.indices_nonzero(pc.fill_null(pc.equal(raw.column("event_type"), "dns"), False))


def dns_events(lines: list[bytes], rows: pa.Array):
    """(index in the block, object) of the DNS events of a parsed block, for the per-event
    merge."""
    for i in rows.to_pylist():
        yield i, orjson.loads(lines[i])
