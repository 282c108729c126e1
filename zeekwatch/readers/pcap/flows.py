"""Flows assembled from decoded packets, finished into ``conn`` rows with Zeek's meaning.

A flow is keyed by the bytes of its 4-tuple in both directions (two dictionary entries that
point at one ``Flow``), so a packet costs one slice and one lookup. TCP follows Zeek's endpoint
state machine (``TCPSessionAdapter::UpdateStateMachine``) closely enough to give the same
``conn_state`` and the S/H/A/D/F/R/Q/I letters of ``history`` (uppercase for the originator),
without sequence-number tracking: retransmission, gap, checksum and zero-window letters are
not produced, and byte counts are payload sums (retransmissions included).

The originator is the sender of a SYN; a flow met midstream or with a SYN-ACK keeps the first
sender unless Zeek's port heuristic says the first sender is the server (then roles flip and
history starts with ``^``). ICMP follows Zeek: echo (and the other request/reply pairs) form
one flow; orig_p is the request type, resp_p the reply type, or the code for one-way messages.

Flows end by inactivity (TCP 5 min, UDP and ICMP 1 min, Zeek's defaults), 5 s after a close
or reset or an unanswered attempt (Zeek's close, reset and attempt delays), when a new SYN
reuses a finished connection, or at the end of the capture. ``sweep`` expires idle flows as
the capture advances, so memory follows the number of active flows, not the file size.
"""

from __future__ import annotations

import re

from zeekwatch.readers.flow_ids import (
    ICMP4_PAIRS,
    ICMP6_PAIRS,
    community_id,
    flow_uid,
    ntop,
)
from zeekwatch.readers.pcap import apps as pcap_apps

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
SECOND = 1_000_000
TCP_TIMEOUT, UDP_TIMEOUT, ICMP_TIMEOUT, TCP_LINGER = 300 * SECOND, 60 * SECOND, 60 * SECOND, 5 * SECOND
INSPECT = 6  # payload packets per flow looked at for application hints
RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R")

ICMP4_REQUESTS = {8, 13, 15, 10, 17}
ICMP6_REQUESTS = {128, 133, 135, 130, 144}

# Zeek's likely_server_ports, reduced to what decides roles for flows met midstream
LIKELY_SERVER = frozenset(range(1, 1024)) | {
    1080, 1194, 1433, 1521, 1723, 1883, 2049, 3128, 3306, 3389, 5060, 5061, 5222, 5223, 5269,
    5353, 5355, 5432, 5900, 6379, 6660, 6661, 6662, 6663, 6664, 6665, 6666, 6667, 6668, 6669,
    6697, 6881, 6969, 7000, 8000, 8008, 8080, 8443, 8888, 9001, 9200, 27017,
}
DNS_PORTS = frozenset({53, 5353, 5355})


class Flow:
    __slots__ = (
        "key", "rkey", "proto", "v6", "oa", "ra", "op", "rp", "ts0", "last", "tmo",
        "opk", "rpk", "ob", "rb", "os", "rs", "os_prev", "rs_prev", "hist", "done",
        "lev_o", "lev_r", "gen", "gen_o", "gen_r", "service", "insp", "app", "dns", "names",
    )

    def __init__(self, proto: str, key: bytes, rkey: bytes, ts: int, tmo: int):
        self.proto, self.key, self.rkey = proto, key, rkey
        self.ts0 = self.last = ts
        self.tmo = tmo
        self.opk = self.rpk = self.ob = self.rb = 0
        self.os = self.rs = self.os_prev = self.rs_prev = INACTIVE
        self.hist = ""
        self.done = False
        self.lev_o = self.lev_r = -1
        self.gen = self.gen_o = self.gen_r = 0
        self.service = None
        self.insp = INSPECT
        self.app = None  # per-flow application state (pcap_apps), created on demand
        self.dns = False
        self.names = None  # (uid, orig_h, resp_h, community_id), computed once when first needed

    def ids(self) -> tuple[str, str, str, str]:
        """The flow's printable identity, shared by its conn row and its application rows."""
        if self.names is None:
            self.names = (flow_uid(self), ntop(self.oa), ntop(self.ra),
                          community_id(self.proto, self.oa, self.ra, self.op, self.rp))
        return self.names


def _ports(key: bytes) -> tuple[bytes, bytes, int, int, bool]:
    """(source, destination, source port, destination port, v6) from a TCP/UDP key."""
    if len(key) == 12:
        return key[0:4], key[4:8], key[8] << 8 | key[9], key[10] << 8 | key[11], False
    return key[0:16], key[16:32], key[32] << 8 | key[33], key[34] << 8 | key[35], True


def _reverse(key: bytes) -> bytes:
    if len(key) == 12:
        return key[4:8] + key[0:4] + key[10:12] + key[8:10]
    return key[16:32] + key[0:16] + key[34:36] + key[32:34]


def flip_roles(sport: int, dport: int, syn: bool) -> bool:
    """Zeek's guess for a flow first seen without a plain SYN: is the first sender the server?"""
    if sport not in LIKELY_SERVER:
        return False
    if dport in LIKELY_SERVER:
        return not syn and sport < dport
    return True


class FlowTable:
    """Active flows, and the rows of finished ones waiting to be emitted."""

    def __init__(self, labels: dict[str, str] | None = None):
        self.tcp_map: dict[bytes, tuple[Flow, int]] = {}
        self.udp_map: dict[bytes, tuple[Flow, int]] = {}
        self.icmp_map: dict[bytes, tuple[Flow, int]] = {}
        self.rows: dict[str, list[tuple]] = {t: [] for t in ("conn", "dns", "http", "tls", "smtp")}
        self.labels = labels or {}
        self.now = 0
        self._swept_at = 0
        self._since_sweep = 0

    # -- per packet (hot) -------------------------------------------------------------------

    def tcp(self, ts: int, key: bytes, data: bytes, l4: int, end: int) -> None:
        flags = data[l4 + 13]
        plen = end - l4 - ((data[l4 + 12] >> 4) << 2)
        ent = self.tcp_map.get(key)
        if ent is None:
            ent = self._open_tcp(ts, key, flags)
        else:
            f = ent[0]
            if ts - f.last > f.tmo or ((flags & 0x17) == 2 and f.done):
                self._finish(f, self.tcp_map)
                ent = self._open_tcp(ts, key, flags)
        f, d = ent
        f.last = ts
        if plen < 0:
            plen = 0
        ev = (flags & 0x17) | (32 if plen else 0)
        if d:
            f.rpk += 1
            f.rb += plen
            if ev != f.lev_r or f.gen != f.gen_r:
                self._tcp_event(f, 1, ev)
        else:
            f.opk += 1
            f.ob += plen
            if ev != f.lev_o or f.gen != f.gen_o:
                self._tcp_event(f, 0, ev)
        if plen and f.insp:
            doff = l4 + ((data[l4 + 12] >> 4) << 2)
            pcap_apps.inspect(self, f, d, data[doff:end], ts)

    def udp(self, ts: int, key: bytes, data: bytes, l4: int, end: int) -> None:
        plen = (data[l4 + 4] << 8 | data[l4 + 5]) - 8
        ent = self.udp_map.get(key)
        if ent is None or ts - ent[0].last > UDP_TIMEOUT:
            if ent is not None:
                self._finish(ent[0], self.udp_map)
            ent = self._open_udp(ts, key)
        f, d = ent
        f.last = ts
        if plen < 0:
            plen = end - l4 - 8 if end - l4 > 8 else 0  # length 0: jumbogram
        if d:
            f.rpk += 1
            f.rb += plen
            if f.rpk == 1:
                f.hist += "d"
        else:
            f.opk += 1
            f.ob += plen
            if f.opk == 1:
                f.hist += "D"
        if plen and (f.insp or f.dns):
            pcap_apps.inspect(self, f, d, data[l4 + 8:l4 + 8 + plen], ts)

    def icmp(self, ts: int, key: bytes, data: bytes, l4: int, end: int, v6: bool) -> None:
        itype, code = data[l4], data[l4 + 1]
        alen = 16 if v6 else 4
        src, dst = key[:alen], key[alen:2 * alen]
        pairs = ICMP6_PAIRS if v6 else ICMP4_PAIRS
        if itype in pairs:
            request = itype in (ICMP6_REQUESTS if v6 else ICMP4_REQUESTS)
            first = itype if request else pairs[itype]
            fkey = src + dst + bytes((first,))
        else:
            request, first = True, itype
            fkey = src + dst + bytes((itype, code))
        ent = self.icmp_map.get(fkey)
        if ent is None or ts - ent[0].last > ICMP_TIMEOUT:
            if ent is not None:
                self._finish(ent[0], self.icmp_map)
            ent = self._open_icmp(ts, fkey, src, dst, first, pairs.get(first, code), request, v6)
        f, d = ent
        f.last = ts
        plen = max(end - l4 - 8, 0)
        if d:
            f.rpk += 1
            f.rb += plen
        else:
            f.opk += 1
            f.ob += plen

    # -- per flow ----------------------------------------------------------------------------

    def _insert(self, table: dict, f: Flow, seen_key: bytes, seen_dir: int) -> tuple[Flow, int]:
        if f.rkey != f.key:
            table[f.rkey] = (f, 1)
        table[f.key] = (f, 0)
        return f, seen_dir

    def _open_tcp(self, ts: int, key: bytes, flags: int) -> tuple[Flow, int]:
        src, dst, sport, dport, v6 = _ports(key)
        syn_only = (flags & 0x12) == 0x02
        flipped = not syn_only and flip_roles(sport, dport, bool(flags & 0x02))
        rkey = _reverse(key)
        tmo = TCP_LINGER if syn_only else TCP_TIMEOUT
        if flipped:
            f = Flow("tcp", rkey, key, ts, tmo)
            f.oa, f.ra, f.op, f.rp, f.v6 = dst, src, dport, sport, v6
            f.hist = "^"
        else:
            f = Flow("tcp", key, rkey, ts, tmo)
            f.oa, f.ra, f.op, f.rp, f.v6 = src, dst, sport, dport, v6
        f.dns = f.rp in DNS_PORTS or f.op in DNS_PORTS
        return self._insert(self.tcp_map, f, key, 1 if flipped else 0)

    def _open_udp(self, ts: int, key: bytes) -> tuple[Flow, int]:
        src, dst, sport, dport, v6 = _ports(key)
        flipped = flip_roles(sport, dport, False)
        rkey = _reverse(key)
        f = Flow("udp", rkey, key, ts, UDP_TIMEOUT) if flipped else Flow("udp", key, rkey, ts, UDP_TIMEOUT)
        if flipped:
            f.oa, f.ra, f.op, f.rp, f.hist = dst, src, dport, sport, "^"
        else:
            f.oa, f.ra, f.op, f.rp = src, dst, sport, dport
        f.v6 = v6
        f.dns = f.rp in DNS_PORTS or f.op in DNS_PORTS
        return self._insert(self.udp_map, f, key, 1 if flipped else 0)

    def _open_icmp(self, ts, fkey, src, dst, first, second, request, v6) -> tuple[Flow, int]:
        alen = len(src)
        rkey = fkey[alen:2 * alen] + fkey[:alen] + fkey[2 * alen:]
        if request:
            f = Flow("icmp", fkey, rkey, ts, ICMP_TIMEOUT)
            f.oa, f.ra = src, dst
        else:  # a reply met before its request: the requester is the originator
            f = Flow("icmp", rkey, fkey, ts, ICMP_TIMEOUT)
            f.oa, f.ra = dst, src
        f.op, f.rp, f.v6 = first, second, v6
        f.insp = 0
        return self._insert(self.icmp_map, f, fkey, 0 if request else 1)

    def _tcp_event(self, f: Flow, d: int, ev: int) -> None:
        """A packet whose flags/payload class differs from the last one in its direction."""
        letter = _history_letter(ev)
        if letter:
            if d:
                letter = letter.lower()
            if letter not in f.hist:
                f.hist += letter
        before = (f.os, f.rs)
        if d:
            f.rs, f.os, f.rs_prev, f.os_prev = _step(f.rs, f.os, f.rs_prev, f.os_prev, False, ev)
        else:
            f.os, f.rs, f.os_prev, f.rs_prev = _step(f.os, f.rs, f.os_prev, f.rs_prev, True, ev)
        if (f.os, f.rs) != before:
            f.gen += 1
            os, rs = f.os, f.rs
            f.done = os == RESET or rs == RESET or (os == CLOSED and rs == CLOSED)
            attempt = rs == INACTIVE and os in (SYN_SENT, SYN_ACK_SENT)
            f.tmo = TCP_LINGER if f.done or attempt else TCP_TIMEOUT
        if d:
            f.lev_r, f.gen_r = ev, f.gen
        else:
            f.lev_o, f.gen_o = ev, f.gen

    def _finish(self, f: Flow, table: dict) -> None:
        table.pop(f.key, None)
        table.pop(f.rkey, None)
        if f.app is not None:
            pcap_apps.finish(self, f)
        self.rows["conn"].append(self._conn_row(f))

    def _conn_row(self, f: Flow) -> tuple:
        dur = f.last - f.ts0
        uid, orig_h, resp_h, cid = f.ids()
        service = f.service or self.labels.get(cid)
        if f.proto == "tcp":
            state = tcp_conn_state(f)
        elif f.proto == "udp":
            state = "SF" if f.opk and f.rpk else "S0" if f.opk else "SHR" if f.rpk else "OTH"
        else:
            state = "OTH"
        sized = dur > 0
        return (
            f.ts0, uid, orig_h, f.op, resp_h, f.rp, f.proto, service,
            dur / SECOND if sized else None, f.ob if sized else None, f.rb if sized else None,
            state, f.hist or None, f.opk, f.rpk, cid,
        )

    # -- expiry ------------------------------------------------------------------------------

    def sweep(self, now: int, packets: int) -> None:
        """Finish flows idle past their timeout (called once per batch of ``packets``). The
        table is walked only when capture time moved on by a second and enough packets arrived
        since the last walk to pay for it, so expiry costs O(1) per packet."""
        self._since_sweep += packets
        if now > self.now:
            self.now = now
        active = (len(self.tcp_map) + len(self.udp_map) + len(self.icmp_map)) // 2
        due = self.now - self._swept_at >= SECOND and (
            self._since_sweep * 4 >= active or self.now - self._swept_at >= 60 * SECOND)
        if not due:
            return
        self._swept_at, self._since_sweep = self.now, 0
        for table in (self.tcp_map, self.udp_map, self.icmp_map):
            idle = [e[0] for e in table.values() if e[1] == 0 and self.now - e[0].last > e[0].tmo]
            for f in idle:
                self._finish(f, table)

    def close_all(self) -> None:
        for table in (self.tcp_map, self.udp_map, self.icmp_map):
            for f in [e[0] for e in table.values() if e[1] == 0]:
                self._finish(f, table)

    def active(self) -> int:
        return sum(1 for t in (self.tcp_map, self.udp_map, self.icmp_map) for e in t.values() if e[1] == 0)


def _history_letter(ev: int) -> str:
    """Zeek's update_history: one letter per packet class (FIN 1, SYN 2, RST 4, ACK 16, data 32)."""
    fin, syn, rst = ev & 1, ev & 2, ev & 4
    bits = (fin > 0) + (syn > 0) + (rst > 0)
    if bits > 1:
        return "I" if fin and rst else "Q"
    if syn:
        return "H" if ev & 16 else "S"
    if fin:
        return "F"
    if rst:
        return "R"
    if ev & 32:
        return "D"
    if ev & 16:
        return "A"
    return ""


def _step(ep: int, peer: int, ep_prev: int, peer_prev: int, is_orig: bool, ev: int):
    """Zeek's TCP endpoint state machine for one packet: new (ep, peer, ep_prev, peer_prev)."""
    fin, syn, rst, ack, data = ev & 1, ev & 2, ev & 4, ev & 16, ev & 32
    old_ep, old_peer = ep, peer
    if ep == INACTIVE:
        if syn:
            if is_orig:
                ep = SYN_ACK_SENT if ack else SYN_SENT
            else:
                if peer == SYN_SENT:
                    peer = ESTABLISHED
                ep = ESTABLISHED
        if fin:
            ep = CLOSED
        if rst:
            ep = RESET
        if ep == INACTIVE:
            if not is_orig and not data and peer == SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
            elif ack and peer == ESTABLISHED:
                ep = ESTABLISHED
            else:
                ep = PARTIAL
    elif ep in (SYN_SENT, SYN_ACK_SENT):
        if fin:
            ep = CLOSED
        if rst:
            ep = RESET
    elif ep in (ESTABLISHED, PARTIAL):
        if syn and ep == PARTIAL and peer == INACTIVE and not ack:
            ep = SYN_SENT
        if fin and not rst:
            ep = CLOSED
            if peer == RESET and peer_prev == CLOSED:
                peer = CLOSED
        if rst:
            ep = RESET
    elif ep == CLOSED:
        if rst and peer != CLOSED:
            ep = RESET
    return ep, peer, (old_ep if ep != old_ep else ep_prev), (old_peer if peer != old_peer else peer_prev)


def tcp_conn_state(f: Flow) -> str:
    """Zeek's conn_state for TCP (base/protocols/conn/main.zeek)."""
    os, rs = f.os, f.rs
    o_inactive = os in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os in (SYN_SENT, SYN_ACK_SENT) or (os == RESET and f.ob == 0 and f.rb == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os == RESET:
        if r_inactive:
            return "RSTOS0" if RSTOS0.match(f.hist) else "OTH"
        return "RSTO"
    if rs == CLOSED and os == CLOSED:
        return "SF"
    if os == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"
