"""Suricata EVE ``dns`` events → one Zeek-like dns row per query, answers attached.

Suricata has written DNS in three layouts; all give the same rows:

- v1 (Suricata ≤ 4): a ``query`` event per question, then one ``answer`` event *per answer
  record* (``rrname``/``rrtype``/``rdata``), or one without ``rdata`` carrying the rcode.
- v2 (Suricata 5–7, ``version: 2``): ``query`` events as in v1, and one ``answer`` event per
  response with the question in ``rrname``/``rrtype`` and the records in ``answers[]``
  ("detailed") and/or ``grouped{rrtype: [rdata]}``.
- v3 (Suricata 8, ``version: 3``): ``request`` and ``response`` events, each with
  ``queries[]``; the response adds ``answers[]`` / ``grouped``. A v3 response names the
  responder as ``src_ip``.

The choice (to count each DNS transaction once, as Zeek's dns.log does): a request makes a
row per question and waits, *pending*, for its response, matched by (``flow_id``, ``dns.id``)
(the endpoints stand in when ``flow_id`` is absent). The response's rcode and answers are
attached to those rows; further answer events of the same transaction (v1) add their
records. A response whose request was not logged (request logging off, or the request fell
outside the file) makes its own rows from the question it repeats, with client and server put
back in Zeek's order (responder port 53 or v3's responder-first order). A request whose
(flow, id) is pending already ends that transaction and starts a new one.

The merge works on columns (``DnsMerge``): each DNS event is first reduced to one row of
``EVENTS`` (``event_values`` event by event, or ``dns_columns.extract`` for a whole DuckDB
batch); at the end of each block of events the block's rows and the ones still pending are
sorted by (transaction key, event number) and grouped into transactions with Arrow compute.
A transaction is written at the end of the block in which it was replaced, or once
``PENDING_EVENTS`` further events (of any type) have been read, or at the end of the file;
the rest wait for the next block, so memory stays bounded. Each block's finished
transactions leave in the order of their first event. A response arriving after its
request was written makes a second row (rare: Suricata logs a response within milliseconds
of its request).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zeekwatch.readers.eve.values import Common, as_int, as_str

PENDING_EVENTS = 20_000  # events read before a pending query row is written out
DNS_PORTS = (53, 5353, 5355)
REQUESTS = ("query", "request")
RESPONSES = ("answer", "response")
REQUEST, RESPONSE = 1, 2

S = pa.string()
QUESTION = pa.struct([("query", S), ("qtype", S)])
EVENTS = pa.schema([  # one DNS request or response, reduced to what the merge needs
    ("e", pa.int64()), ("kind", pa.int8()), ("key", S), ("ts", S), ("uid", S), ("orig", S),
    ("resp", S), ("community_id", S), ("questions", pa.list_(QUESTION)), ("rcode", S),
    ("answers", pa.list_(S))])
ROWS = ("ts", "uid", "orig_h", "resp_h", "query", "qtype_name", "rcode_name", "answers", "community_id")
_KEY_SEP, _FIELD_SEP = "\x1e", "\x1f"


def flow_key(uid, src_ip, src_port, dest_ip, dest_port) -> str:
    """The flow part of a transaction key: the flow id, or the two endpoints in either order."""
    if uid is not None:
        return "f" + uid
    a = f"{src_ip}{_FIELD_SEP}{src_port}"
    b = f"{dest_ip}{_FIELD_SEP}{dest_port}"
    return "e" + (a + _FIELD_SEP + b if a <= b else b + _FIELD_SEP + a)


def _answers(d: dict) -> list[str]:
    out: list[str] = []
    for a in d.get("answers") or ():
        if isinstance(a, dict) and isinstance(a.get("rdata"), str):
            out.append(a["rdata"])
    if not out and isinstance(d.get("grouped"), dict):
        for values in d["grouped"].values():
            if isinstance(values, list):
                out.extend(v for v in values if isinstance(v, str))
    if not out and isinstance(d.get("rdata"), str):  # v1: one answer record per event
        out.append(d["rdata"])
    return out


def _questions(d: dict) -> list[dict]:
    qs = d.get("queries")
    if isinstance(qs, list):
        return [{"query": as_str(q.get("rrname")), "qtype": as_str(q.get("rrtype"))}
                for q in qs if isinstance(q, dict)]
    return [{"query": as_str(d.get("rrname")), "qtype": as_str(d.get("rrtype"))}]


def client_server(version, src, src_port, dest, dest_port) -> tuple:
    """(client, server) of a response event, were it to make its own rows."""
    if version == 3:
        return dest, src  # v3 responses are logged from the responder
    if src_port in DNS_PORTS and dest_port not in DNS_PORTS:
        return dest, src
    return src, dest


def event_values(d, c: Common, e: int) -> tuple | None:
    """One row of ``EVENTS`` for a DNS event read as a Python object (None: not a request
    or response, so it takes no part in the merge)."""
    if not isinstance(d, dict):
        return None
    kind = d.get("type")
    kind = REQUEST if kind in REQUESTS else RESPONSE if kind in RESPONSES else 0
    if not kind:
        return None
    key = flow_key(c.uid, c.src_ip, c.src_port, c.dest_ip, c.dest_port) + _KEY_SEP + str(as_int(d.get("id")))
    if kind == REQUEST:
        orig, resp, rcode, answers = c.src_ip, c.dest_ip, None, None
    else:
        orig, resp = client_server(as_int(d.get("version")), c.src_ip, c.src_port, c.dest_ip, c.dest_port)
        rcode, answers = as_str(d.get("rcode")), _answers(d)
    return (e, kind, key, c.ts, c.uid, orig, resp, c.community_id, _questions(d), rcode, answers)


class DnsMerge:
    """Collects DNS events (``add`` one by one, ``add_table`` a block's worth) and turns
    them into dns rows at the end of each block (``take``)."""

    def __init__(self):
        self.events = 0  # events read so far, of any type: a DNS event's number is its count
        self.values: list[tuple] = []
        self.tables: list[pa.Table] = []
        self.pending: pa.Table = EVENTS.empty_table()

    def add(self, d, common: Common) -> None:
        self.events += 1
        v = event_values(d, common, self.events)
        if v is not None:
            self.values.append(v)

    def add_table(self, events: pa.Table) -> None:
        self.tables.append(events)

    def take(self, final: bool = False) -> pa.Table | None:
        """The rows of the transactions finished by now (all of them when ``final``), in
        the order of their first event, as a table of ``ROWS``; None when there are none."""
        if self.values:
            self.tables.append(pa.Table.from_pylist(
                [dict(zip(EVENTS.names, v)) for v in self.values], schema=EVENTS))
            self.values = []
        events = pa.concat_tables([self.pending, *self.tables])
        self.tables = []
        if not len(events):
            return None
        horizon = None if final else self.events - PENDING_EVENTS
        rows, self.pending = merge(events, horizon)
        return rows if len(rows) else None


def merge(events: pa.Table, horizon: int | None) -> tuple[pa.Table, pa.Table]:
    """(rows of the finished transactions, events of the pending ones). A transaction is
    finished when a later request replaced it, or it began at event ``horizon`` or before,
    or always when ``horizon`` is None."""
    events = events.take(pc.sort_indices(events, [("key", "ascending"), ("e", "ascending")]))
    n = len(events)
    key = events.column("key").combine_chunks()
    first = np.ones(n, dtype=bool)
    if n > 1:
        first[1:] = pc.not_equal(key.slice(1), key.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    kind = events.column("kind").to_numpy()
    starts = np.flatnonzero(first | (kind == REQUEST))  # the first event of each transaction
    tx = np.cumsum(first | (kind == REQUEST)) - 1  # each event's transaction
    born = events.column("e").to_numpy()[starts]
    replaced = np.zeros(len(starts), dtype=bool)
    replaced[:-1] = ~first[starts[1:]]
    done = np.ones(len(starts), dtype=bool) if horizon is None else replaced | (born <= horizon)
    pending = events.filter(pa.array(~done[tx]))
    finished = np.flatnonzero(done)
    finished = finished[np.argsort(born[finished], kind="stable")]
    return _rows(events, kind, tx, starts, finished), pending


def _rows(events: pa.Table, kind, tx, starts, finished) -> pa.Table:
    """One row per question of each finished transaction's first event, with the rcode
    (the last one given) and the answers (all, in order) of its responses."""
    ntx = len(starts)
    responses = kind == RESPONSE
    rcode = events.column("rcode").combine_chunks()
    with_rcode = np.flatnonzero(responses & pc.is_valid(rcode).to_numpy(zero_copy_only=False))
    last = np.full(ntx, -1)
    tx_w = tx[with_rcode]  # ascending: keep the last of each run
    end = np.ones(len(tx_w), dtype=bool)
    end[:-1] = tx_w[1:] != tx_w[:-1]
    last[tx_w[end]] = with_rcode[end]
    tx_rcode = rcode.take(pa.array(last, mask=last < 0))
    answers = events.column("answers").combine_chunks()
    values = pc.list_flatten(answers)
    parent = pc.list_parent_indices(answers).to_numpy()
    keep = responses[parent]
    counts = np.bincount(tx[parent[keep]], minlength=ntx)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    tx_answers = pa.ListArray.from_arrays(pa.array(offsets), values.filter(pa.array(keep)),
                                          mask=pa.array(counts == 0))
    creators = events.take(pa.array(starts[finished]))
    questions = creators.column("questions").combine_chunks()
    which = pc.list_parent_indices(questions)
    q = pc.list_flatten(questions)
    tx_of = pa.array(finished).take(which)
    pick = lambda name: creators.column(name).take(which)  # noqa: E731
    return pa.table({
        "ts": pick("ts"), "uid": pick("uid"), "orig_h": pick("orig"), "resp_h": pick("resp"),
        "query": q.field("query"), "qtype_name": q.field("qtype"), "rcode_name": tx_rcode.take(tx_of),
        "answers": tx_answers.take(tx_of), "community_id": pick("community_id")})
