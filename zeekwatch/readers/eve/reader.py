"""Suricata EVE JSON → normalized tables.

Input: EVE as JSON lines (``eve.json``, gzip too), or a JSON array of events (a file whose
first non-blank byte is ``[``, as some exports write; it is parsed whole, so it is read only
up to ``MAX_ARRAY`` (32 MB decompressed; a larger one is a reject asking for JSON lines) —
EVE written by Suricata itself is always lines). A line longer than 32 MB is rejected unread.

Event types used (the rest are counted, one note per file):

- ``alert`` → alert: ``alert.gid/signature_id/rev/signature/category/severity/action``,
  ``app_proto``, ``flow_id``, ``community_id``; src/dest → orig/resp as logged.
- ``flow`` → conn (see ``eve_flow``: Suricata's byte counts include headers).
- ``dns`` → dns, v1/v2/v3 layouts, one row per query with its answers (see ``eve_dns``).
- ``http`` → http (hostname → host, url → uri, http_user_agent, http_method, status).
- ``tls`` → tls (sni → server_name).
- ``smtp`` → smtp (helo, mail_from, rcpt_to; the ``<>`` around addresses removed, as Zeek).

Every row of a flow carries Suricata's ``flow_id`` as ``uid`` (as text). ``proto`` is
lowercased and ICMP's (``ICMP``, ``IPv6-ICMP``) becomes ``icmp``, with ``orig_p``/``resp_p``
holding ICMP type/code as Zeek does. Timestamps with an offset ("-0600", "+0000", "Z") are
converted to UTC; timestamps without one are read as UTC, with one note per file.

Bad input: a line that is not a JSON object, or an object without ``event_type``, is
rejected (``log.reject`` with its physical line number; a cut last line is "truncated") and
its neighbours are kept. A JSON array file that does not parse raises ``InputError`` naming
the file and the position.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Iterator

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch import schema
from zeekwatch.errors import InputError
from zeekwatch.readers.base import Chunk, IngestLog, file_size, head, is_gzip, open_binary
from zeekwatch.readers.eve import columnar
from zeekwatch.readers.eve.dns import ROWS as DNS_COLUMNS, DnsMerge
from zeekwatch.readers.eve.flow import CONN_COLUMNS, Common, conn_row
from zeekwatch.readers.eve.values import as_int, as_str, as_str_list, mailbox
from zeekwatch.readers.jsonlines import (
    MAX_LINE,
    blocks_only,
    TsStats,
    iter_blocks,
    parse_lines,
    parse_ts,
    skip_records,
    ts_notes,
    ts_problem,
)
from zeekwatch.readers.readahead import read_ahead

CHUNK_EVENTS = 50_000
MAX_ARRAY = MAX_LINE  # bytes of a JSON-array file parsed whole (memory: about 10x that)
ICMP_PROTOS = {"icmp", "ipv6-icmp", "icmpv6", "icmp6"}
USED = ("alert", "flow", "dns", "http", "tls", "smtp")


_PROTOS = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "IPv6-ICMP": "icmp", "IPV6-ICMP": "icmp"}


def _proto(v) -> str | None:
    fast = _PROTOS.get(v) if type(v) is str else None
    if fast is not None:
        return fast
    p = as_str(v)
    if p is None:
        return None
    p = p.lower()
    return "icmp" if p in ICMP_PROTOS else p


def _int(v):
    return v if type(v) is int else as_int(v)


def _str(v):
    return v if v is None or type(v) is str else as_str(v)


def _common(e: dict) -> Common:
    proto = _proto(e.get("proto"))
    flow_id = _int(e.get("flow_id"))
    if proto == "icmp":
        sport, dport = _int(e.get("icmp_type")), _int(e.get("icmp_code"))
    else:
        sport, dport = _int(e.get("src_port")), _int(e.get("dest_port"))
    return Common(_str(e.get("timestamp")), None if flow_id is None else str(flow_id), flow_id,
                  _str(e.get("src_ip")), sport, _str(e.get("dest_ip")), dport, proto,
                  _str(e.get("community_id")))


def _alert_row(e: dict, c: Common) -> tuple | None:
    a = e.get("alert")
    if not isinstance(a, dict):
        return None
    return (c.ts, c.src_ip, c.src_port, c.dest_ip, c.dest_port, c.proto, _int(a.get("gid")),
            _int(a.get("signature_id")), _int(a.get("rev")), _str(a.get("signature")),
            _str(a.get("category")), _int(a.get("severity")), _str(a.get("action")),
            _str(e.get("app_proto")), c.flow_id, c.community_id)


def _http_row(e: dict, c: Common) -> tuple | None:
    h = e.get("http")
    if not isinstance(h, dict):
        return None
    return (c.ts, c.uid, c.src_ip, c.dest_ip, c.dest_port, _str(h.get("hostname")),
            _str(h.get("url")), _str(h.get("http_user_agent")), _str(h.get("http_method")),
            _int(h.get("status")))


def _tls_row(e: dict, c: Common) -> tuple | None:
    t = e.get("tls")
    if not isinstance(t, dict):
        return None
    return (c.ts, c.uid, c.src_ip, c.dest_ip, c.dest_port, _str(t.get("sni")))


def _smtp_row(e: dict, c: Common) -> tuple | None:
    s = e.get("smtp")
    if not isinstance(s, dict):
        return None
    rcpt = as_str_list(s.get("rcpt_to"))
    return (c.ts, c.uid, c.src_ip, c.dest_ip, c.dest_port, _str(s.get("helo")),
            mailbox(s.get("mail_from")), None if rcpt is None else [mailbox(r) for r in rcpt])


_APP = ("ts", "uid", "orig_h", "resp_h", "resp_p")
COLUMNS = {  # the order of the row tuples each event type gives
    "alert": ("ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "gid", "sid", "rev",
              "signature", "category", "severity", "action", "app_proto", "flow_id", "community_id"),
    "conn": CONN_COLUMNS, "dns": DNS_COLUMNS,
    "http": _APP + ("host", "uri", "user_agent", "method", "status"),
    "tls": _APP + ("server_name",),
    "smtp": _APP + ("helo", "mail_from", "rcpt_to"),
}
ROWS = {"alert": ("alert", _alert_row), "flow": ("conn", conn_row), "http": ("http", _http_row),
        "tls": ("tls", _tls_row), "smtp": ("smtp", _smtp_row)}


class _Builder:
    """Collects rows per table and turns them into normalized Arrow chunks."""

    def __init__(self, path: str, log: IngestLog):
        self.path = path
        self.log = log
        self.rows: dict[str, list] = {t: [] for t in schema.TABLES}
        self.dns = DnsMerge()
        self.pending = 0
        self.unused: Counter = Counter()
        self.ts = TsStats()

    def add(self, e: dict) -> None:
        kind = e.get("event_type")
        self.pending += 1
        if kind == "dns":
            self.dns.add(e.get("dns"), _common(e))
            return
        self.dns.events += 1  # the pending window counts every event read
        target = ROWS.get(kind)
        if target is None:
            self.unused[str(kind)] += 1
            return
        row = target[1](e, _common(e))
        if row is None:
            self.unused[f"{kind} without an '{kind}' object"] += 1
        else:
            self.rows[target[0]].append(row)

    def flush(self, final: bool = False) -> Iterator[Chunk]:
        dns = self.dns.take(final)
        self.pending = 0
        for table, rows in self.rows.items():
            if rows:
                yield table, self._table(table, rows)
                self.rows[table] = []
        if dns is not None:
            yield "dns", self._dns(dns)

    def _dns(self, rows: pa.Table) -> pa.Table:
        sch = schema.TABLES["dns"]
        cols = {name: rows.column(name).cast(sch.field(name).type) for name in DNS_COLUMNS if name != "ts"}
        cols["ts"] = parse_ts(rows.column("ts").combine_chunks(), self.ts)
        cols["source"] = schema.source_column(self.path, len(rows))
        return schema.conform("dns", pa.table(cols))

    def _table(self, table: str, rows: list) -> pa.Table:
        sch = schema.TABLES[table]
        cols = {}
        for name, values in zip(COLUMNS[table], zip(*rows)):
            if name in ("ts", "end"):
                cols[name] = parse_ts(pa.array(values, type=pa.string()), self.ts)
            else:
                cols[name] = _array(values, sch.field(name).type)
        if "end" in cols:
            cols["duration"] = _seconds_between(cols["ts"], cols.pop("end"))
        cols["source"] = schema.source_column(self.path, len(rows))
        return schema.conform(table, pa.table(cols))

    def finish(self) -> None:
        for note in ts_notes(self.path, self.ts):
            self.log.note(note)
        if self.unused:
            kinds = ", ".join(f"{k} ({n})" for k, n in sorted(self.unused.items()))
            self.log.note(f"{self.path}: {sum(self.unused.values())} events of types not used: {kinds}")


def _array(values, typ: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array; one that does not fit ``typ`` (a port of 10**10) is NULL."""
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_fits(v, typ) for v in values], type=typ)


def _fits(value, typ: pa.DataType):
    try:
        return pa.scalar(value, type=typ).as_py()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


def _seconds_between(start: pa.Array, end: pa.Array) -> pa.Array:
    us = pc.subtract(end.cast(pa.int64()), start.cast(pa.int64()))
    return pc.divide(us.cast(pa.float64()), 1e6)


def read(path: str, log: IngestLog) -> Iterator[Chunk]:
    """Yield normalized chunks from an EVE file (JSON lines or a JSON array)."""
    path = str(path)
    builder = _Builder(path, log)
    if _is_array(path):
        yield from _per_event(builder, _array_events(path, log))
    else:
        yield from _blocks(path, log, builder)
    yield from builder.flush(final=True)
    builder.finish()


def _per_event(builder: _Builder, events: Iterable[dict]) -> Iterator[Chunk]:
    for event in events:
        builder.add(event)
        if builder.pending >= CHUNK_EVENTS:
            yield from builder.flush()


def _blocks(path: str, log: IngestLog, builder: _Builder) -> Iterator[Chunk]:
    """DuckDB over the whole file; where it stops, blocks of lines (``_robust``). Small files
    (and names DuckDB would expand as a glob) take the blocks of lines from the start."""
    cols = columnar.Columns(path, builder.ts, builder.unused)
    if blocks_only(path):
        yield from _robust(path, log, builder, cols, 0)
        return
    delivered = 0
    # DuckDB parses the next batch (without the GIL) while this one is converted
    batches = read_ahead(columnar.duckdb_batches(path, is_gzip(path)), depth=2)
    while True:
        try:
            raw = next(batches, None)
        except (duckdb.Error, OSError, pa.ArrowException):  # DuckDB errors surface via Arrow too
            raw, stop = None, True
        else:
            stop = False
        if raw is None and not stop:
            log.advance(file_size(path))
            return
        if raw is not None:
            nulls = pc.indices_nonzero(pc.is_null(raw.column("event_type"))).to_pylist()
            good = raw.slice(0, nulls[0]) if nulls else raw
            try:
                good = columnar.strict_numbers(good)
                dns = columnar.dns_table(good, builder.dns.events)
                tables = cols.tables(good)  # last: it counts the notes of a block that succeeds
            except columnar.Fallback:
                stop = True
            else:
                builder.dns.add_table(dns)
                yield from _emit(builder, tables, (), len(good))
                delivered += len(good)
                stop = bool(nulls)
        if stop:
            batches.close()
            yield from _robust(path, log, builder, cols, delivered)
            return


def _robust(path, log, builder, cols, skip: int) -> Iterator[Chunk]:
    """Blocks of lines through pyarrow.json; a block that fails event by event (rejects)."""
    with open_binary(path, log, tolerant=True) as f:
        for block in iter_blocks(f, path=path, log=log):
            block, skip = skip_records(block, skip)
            if block is None:
                continue
            try:
                raw, lines = columnar.parse_block(block)
                tables = cols.tables(raw)
            except columnar.Fallback:
                yield from _per_event(builder, _block_events(block, path, log))
                continue
            dns = columnar.dns_events(lines, columnar.dns_rows(raw))
            yield from _emit(builder, tables, dns, len(lines))


def _emit(builder, tables: dict, dns, n: int) -> Iterator[Chunk]:
    """A converted block of ``n`` events: its DNS events (``(index, event)``) through the
    merge, then its tables."""
    base = builder.dns.events
    for i, event in dns:
        builder.dns.events = base + i  # the events before it in the file
        builder.add(event)
    builder.dns.events = base + n
    yield from builder.flush()
    yield from tables.items()


def _is_array(path: str) -> bool:
    return head(path, 4096).lstrip()[:1] == b"["


def _block_events(block, path: str, log: IngestLog) -> Iterable[dict]:
    for line, raw, obj in parse_lines(block, path, log):
        if "event_type" not in obj:
            log.reject(path, line, "not an EVE event (no event_type)", raw)
            continue
        problem = ts_problem(obj.get("timestamp"))
        if problem is not None:
            log.reject(path, line, problem, raw)
            continue
        yield obj


def _array_events(path: str, log: IngestLog) -> Iterable[dict]:
    with open_binary(path, log, tolerant=True) as f:
        data = f.read(MAX_ARRAY + 1)
    if len(data) > MAX_ARRAY:  # parsed whole, so bounded: Suricata itself writes JSON lines
        log.reject(path, None, f"JSON array larger than {MAX_ARRAY >> 20} MB (decompressed); not "
                               "read: convert it to JSON lines (jq -c '.[]')", data[:200])
        return
    try:
        events = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(path, f"JSON array does not parse at line {exc.lineno} column "
                               f"{exc.colno} (byte {exc.pos}): {exc.msg}", line=exc.lineno) from exc
    if not isinstance(events, list):
        raise InputError(path, "starts with '[' but is not a JSON array of EVE events")
    for i, e in enumerate(events):
        if not isinstance(e, dict) or "event_type" not in e:
            log.reject(path, None, f"array element {i} is not an EVE event", orjson.dumps(e))
            continue
        problem = ts_problem(e.get("timestamp"))
        if problem is not None:
            log.reject(path, None, f"array element {i}: {problem}", orjson.dumps(e))
            continue
        yield e
