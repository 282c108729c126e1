"""Suricata EVE JSON → normalized tables.

Input: EVE as JSON lines (``eve.json``, gzip too), or a JSON array of events (a file whose
first non-blank byte is ``[``, as some exports write; it is parsed whole, so its size is
bounded by memory — EVE written by Suricata itself is always lines).

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

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from ..errors import InputError
from .base import Chunk, IngestLog, head, open_binary
from .eve_dns import DnsMerger
from .eve_flow import conn_row
from .eve_values import as_int, as_str, as_str_list, mailbox
from .jsonlines import TsStats, iter_blocks, parse_lines, parse_ts, ts_notes

CHUNK_EVENTS = 50_000
ICMP_PROTOS = {"icmp", "ipv6-icmp", "icmpv6", "icmp6"}
USED = ("alert", "flow", "dns", "http", "tls", "smtp")


def _proto(v) -> str | None:
    p = as_str(v)
    if p is None:
        return None
    p = p.lower()
    return "icmp" if p in ICMP_PROTOS else p


def _common(e: dict) -> dict:
    proto = _proto(e.get("proto"))
    flow_id = as_int(e.get("flow_id"))
    if proto == "icmp":
        sport, dport = as_int(e.get("icmp_type")), as_int(e.get("icmp_code"))
    else:
        sport, dport = as_int(e.get("src_port")), as_int(e.get("dest_port"))
    return {
        "ts": e.get("timestamp"), "uid": None if flow_id is None else str(flow_id),
        "flow_id": flow_id, "src_ip": as_str(e.get("src_ip")), "src_port": sport,
        "dest_ip": as_str(e.get("dest_ip")), "dest_port": dport, "proto": proto,
        "community_id": as_str(e.get("community_id")),
    }


def _alert_row(e: dict, c: dict) -> dict | None:
    a = e.get("alert")
    if not isinstance(a, dict):
        return None
    return {
        "ts": c["ts"], "orig_h": c["src_ip"], "orig_p": c["src_port"], "resp_h": c["dest_ip"],
        "resp_p": c["dest_port"], "proto": c["proto"], "gid": as_int(a.get("gid")),
        "sid": as_int(a.get("signature_id")), "rev": as_int(a.get("rev")),
        "signature": as_str(a.get("signature")), "category": as_str(a.get("category")),
        "severity": as_int(a.get("severity")), "action": as_str(a.get("action")),
        "app_proto": as_str(e.get("app_proto")), "flow_id": c["flow_id"],
        "community_id": c["community_id"],
    }


def _app_base(c: dict) -> dict:
    return {"ts": c["ts"], "uid": c["uid"], "orig_h": c["src_ip"], "resp_h": c["dest_ip"],
            "resp_p": c["dest_port"]}


def _http_row(e: dict, c: dict) -> dict | None:
    h = e.get("http")
    if not isinstance(h, dict):
        return None
    return _app_base(c) | {
        "host": as_str(h.get("hostname")), "uri": as_str(h.get("url")),
        "user_agent": as_str(h.get("http_user_agent")), "method": as_str(h.get("http_method")),
        "status": as_int(h.get("status")),
    }


def _tls_row(e: dict, c: dict) -> dict | None:
    t = e.get("tls")
    if not isinstance(t, dict):
        return None
    return _app_base(c) | {"server_name": as_str(t.get("sni"))}


def _smtp_row(e: dict, c: dict) -> dict | None:
    s = e.get("smtp")
    if not isinstance(s, dict):
        return None
    rcpt = as_str_list(s.get("rcpt_to"))
    return _app_base(c) | {
        "helo": as_str(s.get("helo")), "mail_from": mailbox(s.get("mail_from")),
        "rcpt_to": None if rcpt is None else [mailbox(r) for r in rcpt],
    }


ROWS = {"alert": ("alert", _alert_row), "flow": ("conn", conn_row), "http": ("http", _http_row),
        "tls": ("tls", _tls_row), "smtp": ("smtp", _smtp_row)}


class _Builder:
    """Collects rows per table and turns them into normalized Arrow chunks."""

    def __init__(self, path: str, log: IngestLog):
        self.path = path
        self.log = log
        self.rows: dict[str, list[dict]] = {t: [] for t in schema.TABLES}
        self.dns = DnsMerger()
        self.pending = 0
        self.unused: Counter = Counter()
        self.ts = TsStats()

    def add(self, e: dict) -> None:
        kind = e.get("event_type")
        self.pending += 1
        if kind == "dns":
            self.dns.add(e, _common(e))
            return
        target = ROWS.get(kind)
        if target is None:
            self.unused[str(kind)] += 1
            return
        row = target[1](e, _common(e))
        if row is not None:
            self.rows[target[0]].append(row)

    def flush(self, final: bool = False) -> Iterator[Chunk]:
        self.rows["dns"].extend(self.dns.take(final))
        self.pending = 0
        for table, rows in self.rows.items():
            if rows:
                yield table, self._table(table, rows)
                self.rows[table] = []

    def _table(self, table: str, rows: list[dict]) -> pa.Table:
        sch = schema.TABLES[table]
        cols = {}
        for name in rows[0]:
            values = [r[name] for r in rows]
            if name in ("ts", "end"):
                cols[name] = parse_ts(pa.array(values, type=pa.string()), self.ts)
            else:
                cols[name] = pa.array(values, type=sch.field(name).type)
        if "end" in cols:
            cols["duration"] = _seconds_between(cols["ts"], cols.pop("end"))
        cols["source"] = pa.repeat(self.path, len(rows))
        return schema.conform(table, pa.table(cols))

    def finish(self) -> None:
        for note in ts_notes(self.path, self.ts):
            self.log.note(note)
        if self.unused:
            kinds = ", ".join(f"{k} ({n})" for k, n in sorted(self.unused.items()))
            self.log.note(f"{self.path}: {sum(self.unused.values())} events of types not used: {kinds}")


def _seconds_between(start: pa.Array, end: pa.Array) -> pa.Array:
    us = pc.subtract(end.cast(pa.int64()), start.cast(pa.int64()))
    return pc.divide(us.cast(pa.float64()), 1e6)


def read(path: str, log: IngestLog) -> Iterator[Chunk]:
    """Yield normalized chunks from an EVE file (JSON lines or a JSON array)."""
    path = str(path)
    builder = _Builder(path, log)
    events = _array_events(path, log) if _is_array(path) else _line_events(path, log)
    for event in events:
        builder.add(event)
        if builder.pending >= CHUNK_EVENTS:
            yield from builder.flush()
    yield from builder.flush(final=True)
    builder.finish()


def _is_array(path: str) -> bool:
    return head(path, 4096).lstrip()[:1] == b"["


def _line_events(path: str, log: IngestLog) -> Iterable[dict]:
    with open_binary(path, log) as f:
        for block in iter_blocks(f):
            for line, raw, obj in parse_lines(block, path, log):
                if "event_type" not in obj:
                    log.reject(path, line, "not an EVE event (no event_type)", raw)
                    continue
                yield obj


def _array_events(path: str, log: IngestLog) -> Iterable[dict]:
    with open_binary(path, log) as f:
        data = f.read()
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
        yield e
