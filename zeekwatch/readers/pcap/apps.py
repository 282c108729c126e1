"""Application hints from the first payload bytes of a flow, and the rows they yield.

Only the first few payload packets of a flow are looked at (``flows.INSPECT``), so the cost
does not grow with the traffic. From them: the flow's ``service`` (Zeek's names: http, ssl,
dns, smtp, irc, ssh, plus bittorrent and stun for the look-alike detectors), ``http`` rows
(method, Host, URI, User-Agent, status), ``tls`` rows (ClientHello SNI) and ``smtp`` rows
(HELO, MAIL FROM, RCPT TO). DNS messages on ports 53/5353/5355 are all parsed (``pcap_dns``)
into one ``dns`` row per query/response transaction, paired by transaction id within the flow.
"""

from __future__ import annotations

import re

from zeekwatch.readers.pcap import dns as pcap_dns

HTTP_REQUEST = re.compile(
    rb"(GET|POST|HEAD|PUT|DELETE|OPTIONS|CONNECT|PATCH|TRACE|PROPFIND) (\S+) HTTP/[0-9]\.[0-9]\r?\n")
HTTP_STATUS = re.compile(rb"HTTP/[0-9]\.[0-9] ([0-9]{3})")
IRC_CLIENT = re.compile(rb"(?m)^(NICK \S+|JOIN [#&]\S*|PRIVMSG \S+ :|USER \S+ \S+ \S+ :|CAP LS)")
IRC_SERVER = re.compile(rb"^:\S+ ([0-9]{3}|NOTICE|PING|PRIVMSG|JOIN|MODE) |^NOTICE AUTH ")
BITTORRENT = b"\x13BitTorrent protocol"
STUN_COOKIE = b"\x21\x12\xa4\x42"
SMTP_COMMAND = re.compile(rb"(?mi)^(EHLO|HELO)[ \t]+(\S+)")
SMTP_MAIL = re.compile(rb"(?mi)^MAIL FROM:[ \t]*(\S+)")
SMTP_RCPT = re.compile(rb"(?mi)^RCPT TO:[ \t]*(\S+)")
DEEP = {"http": 16, "smtp": 24}  # services whose rows need more than the first packets
MAX_PENDING = 1000  # unanswered DNS queries kept per flow
MAX_NOT_DNS = 8  # payloads on a DNS port that are no DNS before the flow is treated as non-DNS



def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def classify(payload: bytes, d: int, proto: str) -> str | None:
    """The service a flow's payload announces, from its first bytes (``d`` 1: responder)."""
    head = payload[:6]
    if head[:1] == b"\x16" and head[1:2] == b"\x03" and len(head) == 6 and head[5] in (1, 2):
        return "ssl"
    if payload.startswith(BITTORRENT):
        return "bittorrent"
    if len(payload) >= 20 and payload[4:8] == STUN_COOKIE and payload[0] < 0x40:
        return "stun"
    if payload.startswith(b"SSH-"):
        return "ssh"
    if proto == "udp":
        return "bittorrent" if payload.startswith(b"d1:") and b"1:y1:" in payload[:512] else None
    if d == 0:
        if HTTP_REQUEST.match(payload):
            return "http"
        if SMTP_COMMAND.match(payload):
            return "smtp"
        if IRC_CLIENT.search(payload[:512]):
            return "irc"
        return None
    if payload.startswith(b"HTTP/1."):
        return "http"
    if payload.startswith(b"220") and b"SMTP" in payload.split(b"\n", 1)[0].upper():
        return "smtp"
    if IRC_SERVER.match(payload):
        return "irc"
    return None


def inspect(table, f, d: int, payload: bytes, ts: int) -> None:
    """Look at one payload packet of flow ``f`` (direction ``d``); called by the flow table."""
    if f.dns:
        _dns(table, f, d, payload[2:] if f.proto == "tcp" else payload, ts)
        return
    f.insp -= 1
    if f.service is None:
        service = classify(payload, d, f.proto)
        if service is None:
            return
        f.service = service
        f.insp = DEEP.get(service, 1)
    service = f.service
    if service == "http":
        _http(f, d, payload, ts)
    elif service == "ssl":
        if d == 0 and payload[5:6] == b"\x01":
            _state(f)["tls"] = (ts, server_name(payload))
            f.insp = 0
    elif service == "smtp":
        if d == 0:
            _smtp(f, payload, ts)
    else:
        f.insp = 0


def _state(f) -> dict:
    if f.app is None:
        f.app = {}
    return f.app


def _http(f, d: int, payload: bytes, ts: int) -> None:
    state = _state(f)
    if d == 0:
        m = HTTP_REQUEST.match(payload)
        if not m:
            return
        head = payload.split(b"\r\n\r\n", 1)[0]
        host = re.search(rb"(?mi)^Host:[ \t]*([^\r\n]*)", head)
        agent = re.search(rb"(?mi)^User-Agent:[ \t]*([^\r\n]*)", head)
        state.setdefault("http", []).append([
            ts, _text(m.group(1)), _text(host.group(1)) if host else None, _text(m.group(2)),
            _text(agent.group(1)) if agent else None, None])
    else:
        m = HTTP_STATUS.match(payload)
        if m:
            for request in state.get("http", []):
                if request[5] is None:
                    request[5] = int(m.group(1))
                    break


def _smtp(f, payload: bytes, ts: int) -> None:
    state = _state(f).setdefault("smtp", {"ts": ts, "helo": None, "from": None, "rcpt": []})
    m = SMTP_COMMAND.search(payload)
    if m and state["helo"] is None:
        state["helo"] = _text(m.group(2))
    m = SMTP_MAIL.search(payload)
    if m and state["from"] is None:
        state["from"] = _text(m.group(1))
    state["rcpt"].extend(_text(r) for r in SMTP_RCPT.findall(payload))


def server_name(hello: bytes) -> str | None:
    """The SNI host name of a TLS ClientHello record, or None (absent or cut off)."""
    try:
        pos = 9 + 2 + 32  # record header 5, handshake header 4, version 2, random 32
        pos += 1 + hello[pos]  # session id
        pos += 2 + (hello[pos] << 8 | hello[pos + 1])  # cipher suites
        pos += 1 + hello[pos]  # compression methods
        end = min(len(hello), pos + 2 + (hello[pos] << 8 | hello[pos + 1]))
        pos += 2
        while pos + 4 <= end:
            etype, elen = hello[pos] << 8 | hello[pos + 1], hello[pos + 2] << 8 | hello[pos + 3]
            if etype == 0:
                nlen = hello[pos + 7] << 8 | hello[pos + 8]
                name = hello[pos + 9:pos + 9 + nlen]
                return name.decode("ascii", "replace") if len(name) == nlen else None
            pos += 4 + elen
    except IndexError:
        return None
    return None


def finish(table, f) -> None:
    """Emit the rows a finished flow collected (called by the flow table)."""
    state = f.app
    uid, orig_h, resp_h, _ = f.ids()
    resp_p = f.rp
    for ts, method, host, uri, agent, status in state.get("http", ()):
        table.rows["http"].append((ts, uid, orig_h, resp_h, resp_p, host, uri, agent, method, status))
    if "tls" in state:
        ts, name = state["tls"]
        table.rows["tls"].append((ts, uid, orig_h, resp_h, resp_p, name))
    smtp = state.get("smtp")
    if smtp and (smtp["helo"] or smtp["from"] or smtp["rcpt"]):
        table.rows["smtp"].append((smtp["ts"], uid, orig_h, resp_h, resp_p, smtp["helo"], smtp["from"],
                                   smtp["rcpt"] or None))
    for txid, (ts, query, qtype) in state.get("dns", {}).items():
        table.rows["dns"].append(_dns_row(f, ts, query, qtype, None, None))


# -- DNS ---------------------------------------------------------------------------------------


def _dns(table, f, d: int, payload: bytes, ts: int) -> None:
    parsed = pcap_dns.parse(payload)
    if parsed is None:
        state = _state(f)
        state["not_dns"] = state.get("not_dns", 0) + 1
        if state["not_dns"] >= MAX_NOT_DNS:
            f.dns = False  # something else on a DNS port: stop paying for DNS parsing
        return
    if f.service is None:
        f.service = "dns"
    txid, is_response, query, qtype, rcode, answers = parsed
    pending = _state(f).setdefault("dns", {})
    if not is_response:
        if len(pending) < MAX_PENDING:
            pending[txid] = (ts, query, qtype)
        return
    asked = pending.pop(txid, None)
    if asked is not None:
        ts, query, qtype = asked[0], asked[1] or query, asked[2] if asked[2] is not None else qtype
    table.rows["dns"].append(_dns_row(f, ts, query, qtype, rcode, answers or None))


def _dns_row(f, ts, query, qtype, rcode, answers) -> tuple:
    uid, orig_h, resp_h, cid = f.ids()
    qtype_name = pcap_dns.type_name(qtype) if qtype is not None else None
    rcode_name = pcap_dns.RCODES.get(rcode, str(rcode)) if rcode is not None else None
    return (ts, uid, orig_h, resp_h, query, qtype_name, rcode_name, answers, cid)
