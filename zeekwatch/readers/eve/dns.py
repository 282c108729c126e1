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
back in Zeek's order (responder port 53 or v3's responder-first order). A pending row is
written once ``PENDING_EVENTS`` further events (of any type) have been read, or at the end of the file, so
memory stays bounded; a response arriving later than that makes a second row (rare: Suricata
logs a response within milliseconds of its request).
"""

from __future__ import annotations

from collections import OrderedDict

from zeekwatch.readers.eve.values import Common, as_int, as_str

PENDING_EVENTS = 20_000  # events read before a pending query row is written out
PENDING_MAX = 100_000  # pending transactions held at most
DNS_PORTS = (53, 5353, 5355)

DNS_COLUMNS = ("ts", "uid", "orig_h", "resp_h", "query", "qtype_name", "rcode_name", "answers",
               "community_id")  # the order of a row list
RCODE, ANSWERS = 6, 7
REQUESTS = ("query", "request")
RESPONSES = ("answer", "response")


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


def _questions(d: dict) -> list[tuple[str | None, str | None]]:
    qs = d.get("queries")
    if isinstance(qs, list):
        return [(as_str(q.get("rrname")), as_str(q.get("rrtype"))) for q in qs if isinstance(q, dict)]
    return [(as_str(d.get("rrname")), as_str(d.get("rrtype")))]


class DnsMerger:
    """Holds pending query rows until their response; yields finished rows."""

    def __init__(self):
        self.pending: OrderedDict = OrderedDict()  # key -> [event number, rows]
        self.events = 0
        self.done: list[list] = []

    def add(self, event: dict, common: Common) -> None:
        self.events += 1
        d = event.get("dns")
        if not isinstance(d, dict):
            return
        kind = d.get("type")
        key = (common.uid or _endpoints(common), as_int(d.get("id")))
        if kind in REQUESTS:
            self._request(key, d, common)
        elif kind in RESPONSES:
            self._response(key, d, common)

    def _request(self, key, d: dict, common: dict) -> None:
        if key in self.pending:
            self.done.extend(self.pending.pop(key)[1])
        rows = [_row(common, common.src_ip, common.dest_ip, q) for q in _questions(d)]
        self.pending[key] = [self.events, rows]
        self._bound()

    def _response(self, key, d: dict, common: dict) -> None:
        entry = self.pending.get(key)
        if entry is None:
            orig, resp = _client_server(d, common)
            rows = [_row(common, orig, resp, q) for q in _questions(d)]
            entry = self.pending[key] = [self.events, rows]
            self._bound()
        rcode = as_str(d.get("rcode"))
        answers = _answers(d)
        for row in entry[1]:
            if rcode is not None:
                row[RCODE] = rcode
            if answers:
                row[ANSWERS] = (row[ANSWERS] or []) + answers

    def _bound(self) -> None:
        while len(self.pending) > PENDING_MAX:
            self.done.extend(self.pending.popitem(last=False)[1][1])

    def take(self, final: bool = False) -> list[list]:
        """Rows that are finished: aged-out pending ones too, or every one when ``final``."""
        horizon = self.events - PENDING_EVENTS
        while self.pending:
            key, (born, rows) = next(iter(self.pending.items()))
            if not final and born > horizon:
                break
            self.pending.popitem(last=False)
            self.done.extend(rows)
        out, self.done = self.done, []
        return out


def _endpoints(c: Common) -> tuple:
    return tuple(sorted(((c.src_ip, c.src_port), (c.dest_ip, c.dest_port)), key=repr))


def _client_server(d: dict, c: Common) -> tuple:
    """(client, server) of a response event whose request was not seen."""
    if as_int(d.get("version")) == 3:
        return c.dest_ip, c.src_ip  # v3 responses are logged from the responder
    if c.src_port in DNS_PORTS and c.dest_port not in DNS_PORTS:
        return c.dest_ip, c.src_ip
    return c.src_ip, c.dest_ip


def _row(c: Common, orig, resp, question) -> list:
    return [c.ts, c.uid, orig, resp, question[0], question[1], None, None, c.community_id]
