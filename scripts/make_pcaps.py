#!/usr/bin/env python3
"""Write zeekwatch's scenario captures (``pcaps/``) and, for benchmarks, large bulk captures.

    python scripts/make_pcaps.py OUTDIR            # the scenario captures, described in pcaps/README.md
    python scripts/make_pcaps.py --bulk FILE N F   # N packets over F flows (write_bulk)

Scenarios are built with scapy from a fixed seed and fixed base timestamps (a Tuesday in
business hours, UTC), with every field that scapy would otherwise guess (MAC addresses, IP ids,
sequence numbers) set explicitly, so two runs write identical bytes. Inside addresses are in
10.0.0.0/8 and 192.168.0.0/16; outside ones in the documentation ranges 192.0.2.0/24,
198.51.100.0/24 and 203.0.113.0/24. Each scenario uses its own inside /16 (office 10.1, mass
mailer 10.2, ...), so reading the whole folder at once does not mix their hosts.
"""

from __future__ import annotations

import os
import random
import struct
import sys
from datetime import datetime, timezone

from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter

SEED = 20240312
BASE = datetime(2024, 3, 12, 9, 0, tzinfo=timezone.utc).timestamp()  # Tuesday 09:00 UTC
ROUTER_MAC = "02:00:00:00:00:01"
DNS_TTL = 300


def mac(addr: str) -> str:
    """A fixed locally administered MAC address per IPv4 address."""
    return "02:00:" + ":".join(f"{int(x):02x}" for x in addr.split("."))


class Capture:
    """Packets of one scenario, kept in time order and written as one pcap."""

    def __init__(self, seed: int = SEED):
        self.packets: list = []
        self.rnd = random.Random(seed)
        self.ip_id = 1

    def add(self, t: float, src: str, dst: str, l4) -> None:
        self.ip_id = self.ip_id % 65535 + 1
        pkt = Ether(src=mac(src), dst=ROUTER_MAC) / IP(src=src, dst=dst, id=self.ip_id, ttl=64) / l4
        pkt.time = round(t, 6)
        self.packets.append(pkt)

    def dns(self, t: float, client: str, server: str, name: str, qtype: str, answers: list, rcode: int = 0) -> float:
        """A query and its answer; returns the time of the answer."""
        txid = self.rnd.randrange(1, 65536)
        sport = self.rnd.randrange(20000, 60000)
        qd = [DNSQR(qname=name, qtype=qtype)]
        self.add(t, client, server, UDP(sport=sport, dport=53) / DNS(id=txid, rd=1, qd=qd))
        records = []
        for value in answers:
            if qtype == "MX":
                records.append(DNSRRMX(rrname=name, exchange=value, preference=10, ttl=DNS_TTL))
            else:
                records.append(DNSRR(rrname=name, type=qtype, rdata=value, ttl=DNS_TTL))
        reply = DNS(id=txid, qr=1, rd=1, ra=1, rcode=rcode, qd=qd, an=records or None)
        self.add(t + 0.004, server, client, UDP(sport=53, dport=sport) / reply)
        return t + 0.004

    def session(self, t: float, client: str, server: str, dport: int, exchange: list, rtt: float = 0.02,
                sport: int | None = None, close: bool = True) -> float:
        """A full TCP connection: handshake, ``exchange`` [(from_client, bytes, gap)], FIN."""
        sport = sport or self.rnd.randrange(32768, 61000)
        cseq, sseq = self.rnd.randrange(1 << 31), self.rnd.randrange(1 << 31)
        self.add(t, client, server, TCP(sport=sport, dport=dport, flags="S", seq=cseq, window=64240))
        self.add(t + rtt / 2, server, client, TCP(sport=dport, dport=sport, flags="SA", seq=sseq, ack=cseq + 1))
        t += rtt
        self.add(t, client, server, TCP(sport=sport, dport=dport, flags="A", seq=cseq + 1, ack=sseq + 1))
        cseq, sseq = cseq + 1, sseq + 1
        for from_client, data, gap in exchange:
            t += gap
            if from_client:
                self.add(t, client, server, TCP(sport=sport, dport=dport, flags="PA", seq=cseq, ack=sseq) / Raw(data))
                cseq += len(data)
                self.add(t + rtt / 2, server, client, TCP(sport=dport, dport=sport, flags="A", seq=sseq, ack=cseq))
            else:
                self.add(t, server, client, TCP(sport=dport, dport=sport, flags="PA", seq=sseq, ack=cseq) / Raw(data))
                sseq += len(data)
                self.add(t + rtt / 2, client, server, TCP(sport=sport, dport=dport, flags="A", seq=cseq, ack=sseq))
            t += rtt / 2
        if close:
            t += rtt
            self.add(t, client, server, TCP(sport=sport, dport=dport, flags="FA", seq=cseq, ack=sseq))
            self.add(t + rtt / 2, server, client, TCP(sport=dport, dport=sport, flags="FA", seq=sseq, ack=cseq + 1))
            t += rtt
            self.add(t, client, server, TCP(sport=sport, dport=dport, flags="A", seq=cseq + 1, ack=sseq + 1))
        return t

    def attempt(self, t: float, client: str, server: str, dport: int, answer: str, sport: int | None = None) -> float:
        """A connection attempt: 'none' (SYN and two retries), 'rst' (refused) or 'synack' then RST."""
        sport = sport or self.rnd.randrange(32768, 61000)
        seq = self.rnd.randrange(1 << 31)
        self.add(t, client, server, TCP(sport=sport, dport=dport, flags="S", seq=seq, window=64240))
        if answer == "none":
            self.add(t + 1.0, client, server, TCP(sport=sport, dport=dport, flags="S", seq=seq, window=64240))
            self.add(t + 3.0, client, server, TCP(sport=sport, dport=dport, flags="S", seq=seq, window=64240))
        elif answer == "rst":
            self.add(t + 0.01, server, client, TCP(sport=dport, dport=sport, flags="RA", seq=0, ack=seq + 1))
        else:
            sseq = self.rnd.randrange(1 << 31)
            self.add(t + 0.01, server, client, TCP(sport=dport, dport=sport, flags="SA", seq=sseq, ack=seq + 1))
            self.add(t + 0.02, client, server, TCP(sport=sport, dport=dport, flags="R", seq=seq + 1))
        return t + 0.02

    def write(self, path: str) -> None:
        self.packets.sort(key=lambda p: p.time)
        with PcapWriter(path, linktype=1, sync=False) as writer:
            for pkt in self.packets:
                writer.write(pkt)


# -- application payloads ------------------------------------------------------------------


def http_get(host: str, uri: str = "/") -> bytes:
    return (f"GET {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)\r\n"
            f"Accept: */*\r\n\r\n").encode()


def http_ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def client_hello(server_name: str, rnd: random.Random) -> bytes:
    """A minimal TLS 1.2 ClientHello record with a server_name extension."""
    name = server_name.encode()
    sni = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = (b"\x03\x03" + bytes(rnd.randrange(256) for _ in range(32)) + b"\x00"
            + b"\x00\x04\xc0\x2f\x00\x9c" + b"\x01\x00" + struct.pack("!H", len(sni)) + sni)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def server_hello(rnd: random.Random) -> bytes:
    body = b"\x03\x03" + bytes(rnd.randrange(256) for _ in range(32)) + b"\x00\xc0\x2f\x00"
    handshake = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(handshake)) + handshake


def tls_data(rnd: random.Random, n: int) -> bytes:
    return b"\x17\x03\x03" + struct.pack("!H", n) + bytes(rnd.randrange(256) for _ in range(n))


# -- scenarios -----------------------------------------------------------------------------

OFFICE_SITES = {  # name -> (address, port)
    "www.example.com": ("192.0.2.80", 80), "intranet-cdn.example.net": ("192.0.2.81", 443),
    "mail.example.org": ("198.51.100.25", 443), "news.example.com": ("198.51.100.80", 80),
    "docs.example.net": ("203.0.113.44", 443), "api.example.org": ("203.0.113.45", 443),
}


def office(cap: Capture, t0: float) -> None:
    """Four clients resolve names at the office resolver, then browse HTTP/HTTPS."""
    resolver = "10.1.0.53"
    clients = [f"10.1.0.{i}" for i in (10, 11, 12, 13)]
    names = sorted(OFFICE_SITES)
    for k in range(24):
        client = clients[k % len(clients)]
        name = names[(k * 5) % len(names)]
        addr, port = OFFICE_SITES[name]
        t = t0 + k * 47.0 + cap.rnd.random() * 5
        t = cap.dns(t, client, resolver, name, "A", [addr]) + 0.01
        if port == 80:
            body = b"<html>" + b"x" * cap.rnd.randrange(200, 900) + b"</html>"
            cap.session(t, client, addr, 80, [(True, http_get(name, f"/page{k}.html"), 0.0), (False, http_ok(body), 0.03)])
        else:
            cap.session(t, client, addr, 443, [(True, client_hello(name, cap.rnd), 0.0),
                                               (False, server_hello(cap.rnd), 0.03),
                                               (True, tls_data(cap.rnd, 300), 0.01),
                                               (False, tls_data(cap.rnd, 1200), 0.05)])


def _mailer(cap: Capture, t0: float, host: str, resolver: str, domains: list[str], refused: set[int]) -> None:
    for i, domain in enumerate(domains):
        t = t0 + i * 1.2
        server = f"203.0.113.{i + 10}" if i < 80 else f"198.51.100.{i}"
        mx = f"mx.{domain}"
        t = cap.dns(t, host, resolver, domain, "MX", [mx]) + 0.01
        t = cap.dns(t, host, resolver, mx, "A", [server]) + 0.01
        if i in refused:
            cap.attempt(t, host, server, 25, "rst")
            continue
        dialog = [(False, b"220 %s ESMTP ready\r\n" % mx.encode(), 0.02),
                  (True, b"EHLO %s\r\n" % host.encode(), 0.01), (False, b"250 OK\r\n", 0.01),
                  (True, b"MAIL FROM:<billing@invoices.example>\r\n", 0.01), (False, b"250 OK\r\n", 0.01),
                  (True, b"RCPT TO:<user%d@%s>\r\n" % (i, domain.encode()), 0.01), (False, b"250 OK\r\n", 0.01),
                  (True, b"DATA\r\n", 0.01), (False, b"354 go ahead\r\n", 0.01),
                  (True, b"Subject: Invoice\r\n\r\nPlease open the attachment.\r\n.\r\n", 0.01),
                  (False, b"250 queued\r\n", 0.01), (True, b"QUIT\r\n", 0.01), (False, b"221 bye\r\n", 0.01)]
        cap.session(t, host, server, 25, dialog)


def mass_mailer(cap: Capture, t0: float) -> None:
    """A spam bot (10.2.0.66) and the real mail server (10.2.0.25) each mail 35 domains in ~45 s."""
    resolver = "10.2.0.53"
    domains = [f"customer{i:02d}.example" for i in range(35)]
    _mailer(cap, t0, "10.2.0.66", resolver, domains, refused={3, 9, 17, 28})
    _mailer(cap, t0 + 600, "10.2.0.25", resolver, domains, refused=set())


def horizontal_scan(cap: Capture, t0: float) -> None:
    """A worm (10.3.0.99) sweeps 40 outside addresses on tcp/445 in 40 s; no DNS lookups."""
    for i in range(40):
        target = f"198.51.100.{100 + i}"
        answer = "synack" if i in (7, 21) else "rst" if i % 4 == 1 else "none"
        cap.attempt(t0 + i * 1.0, "10.3.0.99", target, 445, answer)


def vertical_scan(cap: Capture, t0: float) -> None:
    """10.4.0.13 probes 100 ports of 10.4.0.200 in 20 s; closed ports answer RST, 22 and 80 are open."""
    ports = sorted(cap.rnd.sample(range(1, 1024), 98) + [22, 80])
    ports = sorted(set(ports))
    for i, port in enumerate(ports):
        answer = "synack" if port in (22, 80) else "rst"
        cap.attempt(t0 + i * 0.2, "10.4.0.13", "10.4.0.200", port, answer, sport=44321)


def ping_sweep(cap: Capture, t0: float) -> None:
    """192.168.5.23 sends one echo request to each of 30 neighbours; 12 answer."""
    for i in range(30):
        target = f"192.168.5.{100 + i}"
        t = t0 + i * 0.5
        payload = bytes(range(32))
        cap.add(t, "192.168.5.23", target, ICMP(type=8, id=0x4D2, seq=i + 1) / Raw(payload))
        if i % 5 in (0, 2):
            cap.add(t + 0.001, target, "192.168.5.23", ICMP(type=0, id=0x4D2, seq=i + 1) / Raw(payload))


def irc_bot(cap: Capture, t0: float) -> None:
    """10.6.0.12 joins a channel on 203.0.113.66:6667 and takes commands for ten minutes."""
    server = "203.0.113.66"
    exchange = [
        (False, b":irc.botnet.example NOTICE * :*** Looking up your hostname\r\n", 0.05),
        (True, b"NICK bot-3f9a2c\r\nUSER bot 0 * :bot\r\n", 0.2),
        (False, b":irc.botnet.example 001 bot-3f9a2c :Welcome\r\n", 0.1),
        (True, b"JOIN #cmd secret\r\n", 0.3),
        (False, b":herder!h@example PRIVMSG #cmd :!update http://198.51.100.7/x.exe\r\n", 5.0),
    ]
    for k in range(20):
        exchange.append((False, b"PING :irc.botnet.example\r\n", 30.0))
        exchange.append((True, b"PONG :irc.botnet.example\r\n", 0.05))
    exchange.append((True, b"PRIVMSG #cmd :done update\r\n", 2.0))
    cap.session(t0, "10.6.0.12", server, 6667, exchange)


def bittorrent(cap: Capture, t0: float) -> None:
    """192.168.7.40 exchanges BitTorrent handshakes with 36 peers on 36 different ports in 50 s."""
    info_hash = bytes(cap.rnd.randrange(256) for _ in range(20))
    handshake = b"\x13BitTorrent protocol" + bytes(8) + info_hash
    for i in range(36):
        peer = f"{'198.51.100' if i % 2 else '203.0.113'}.{150 + i}"
        port = cap.rnd.randrange(10000, 65000)
        t = t0 + i * 1.4
        if i % 6 == 5:
            cap.attempt(t, "192.168.7.40", peer, port, "none" if i % 12 == 5 else "rst")
            continue
        peer_id = b"-qB4620-" + bytes(cap.rnd.randrange(48, 58) for _ in range(12))
        cap.session(t, "192.168.7.40", peer, port, [(True, handshake + peer_id, 0.0),
                                                    (False, handshake + peer_id[::-1], 0.05),
                                                    (True, b"\x00\x00\x00\x05\x02", 0.02)])


def skype_stun(cap: Capture, t0: float) -> None:
    """192.168.8.50 sends STUN binding requests to 32 peers on UDP ports; 20 answer."""
    for i in range(32):
        peer = f"{'203.0.113' if i % 2 else '198.51.100'}.{200 + i % 50}"
        port = cap.rnd.randrange(1025, 65000)
        txid = bytes(cap.rnd.randrange(256) for _ in range(12))
        request = struct.pack("!HH", 0x0001, 8) + b"\x21\x12\xa4\x42" + txid + b"\x80\x22\x00\x04skyp"
        t = t0 + i * 1.5
        cap.add(t, "192.168.8.50", peer, UDP(sport=3478, dport=port) / Raw(request))
        if i % 8 < 5:
            mapped = struct.pack("!HHBBH4s", 0x0020, 8, 0, 1, 3478 ^ 0x2112, bytes([192 ^ 0x21, 168 ^ 0x12, 8 ^ 0xA4, 50 ^ 0x42]))
            response = struct.pack("!HH", 0x0101, len(mapped)) + b"\x21\x12\xa4\x42" + txid + mapped
            cap.add(t + 0.05, peer, "192.168.8.50", UDP(sport=port, dport=3478) / Raw(response))


def tunnel(cap: Capture, t0: float) -> None:
    """10.9.0.77 keeps one TCP connection to 198.51.100.200:443 open for 75 minutes, a small
    non-TLS, non-HTTP message every 30 s (a covert tunnel on the web port)."""
    exchange = []
    for k in range(150):
        blob = b"\x00\x01" + bytes(cap.rnd.randrange(256) for _ in range(cap.rnd.randrange(20, 60)))
        exchange.append((k % 2 == 0, blob, 30.0))
    cap.session(t0, "10.9.0.77", "198.51.100.200", 443, exchange)


SCENARIOS = {  # file -> (builder, base time offset in seconds from BASE)
    "office.pcap": (office, 3600.0),
    "mass_mailer.pcap": (mass_mailer, 0.0),
    "horizontal_scan.pcap": (horizontal_scan, 1800.0),
    "vertical_scan.pcap": (vertical_scan, 2400.0),
    "ping_sweep.pcap": (ping_sweep, 3000.0),
    "irc_bot.pcap": (irc_bot, 5400.0),
    "bittorrent.pcap": (bittorrent, 7200.0),
    "skype_stun.pcap": (skype_stun, 9000.0),
    "tunnel.pcap": (tunnel, 10800.0),
}


def make_all(outdir: str) -> list[str]:
    """Write every scenario capture into ``outdir``; returns the paths written."""
    os.makedirs(outdir, exist_ok=True)
    written = []
    for i, (name, (build, offset)) in enumerate(SCENARIOS.items()):
        cap = Capture(SEED + i)
        build(cap, BASE + offset)
        path = os.path.join(outdir, name)
        cap.write(path)
        written.append(path)
    return written


# -- bulk captures for benchmarks ------------------------------------------------------------


def _checksum(data: bytes) -> int:
    """The Internet checksum: the one's complement sum of 16-bit words is the value mod 0xFFFF."""
    if len(data) % 2:
        data += b"\x00"
    total = int.from_bytes(data, "big") % 0xFFFF
    return 0xFFFF - total if total else 0xFFFF if data.strip(b"\x00") else 0xFFFF


class _BulkFlow:
    __slots__ = ("client", "server", "cport", "sport", "cseq", "sseq", "step", "total", "udp")

    def __init__(self, client: bytes, server: bytes, cport: int, sport: int, total: int, udp: bool):
        self.client, self.server, self.cport, self.sport = client, server, cport, sport
        self.cseq, self.sseq, self.step, self.total, self.udp = 1000, 5000, 0, total, udp


def _ip(src: bytes, dst: bytes, proto: int, l4: bytes, ident: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident & 0xFFFF, 0x4000, 64, proto, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    cs = _checksum(pseudo + l4)
    at = 16 if proto == 6 else 6
    return header + l4[:at] + struct.pack("!H", cs) + l4[at + 2:]


def _tcp(src, dst, sport, dport, seq, ack, flags, payload, ident) -> bytes:
    l4 = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 64240, 0, 0) + payload
    return _ip(src, dst, 6, l4, ident)


def _bulk_tcp_packet(f: _BulkFlow, payload_size: int, ident: int) -> bytes:
    """The next packet of a TCP flow: handshake, GET, data/ACK pairs, FIN exchange at its end."""
    c, s, step, left = f.client, f.server, f.step, f.total - f.step
    f.step += 1
    if step == 0:
        return _tcp(c, s, f.cport, f.sport, f.cseq, 0, 0x02, b"", ident)
    if step == 1:
        return _tcp(s, c, f.sport, f.cport, f.sseq, f.cseq + 1, 0x12, b"", ident)
    if step == 2:
        f.cseq += 1
        f.sseq += 1
        return _tcp(c, s, f.cport, f.sport, f.cseq, f.sseq, 0x10, b"", ident)
    if left <= 3 and f.total >= 6:
        flags = (0x11, 0x11, 0x10)[3 - left]
        if left == 3:
            return _tcp(c, s, f.cport, f.sport, f.cseq, f.sseq, flags, b"", ident)
        if left == 2:
            return _tcp(s, c, f.sport, f.cport, f.sseq, f.cseq + 1, flags, b"", ident)
        return _tcp(c, s, f.cport, f.sport, f.cseq + 1, f.sseq + 1, flags, b"", ident)
    if step == 3:
        data = b"GET /bulk HTTP/1.1\r\nHost: bulk.example\r\n\r\n"
        pkt = _tcp(c, s, f.cport, f.sport, f.cseq, f.sseq, 0x18, data, ident)
        f.cseq += len(data)
        return pkt
    if step % 2 == 0:
        data = bytes(payload_size)
        pkt = _tcp(s, c, f.sport, f.cport, f.sseq, f.cseq, 0x18, data, ident)
        f.sseq += len(data)
        return pkt
    return _tcp(c, s, f.cport, f.sport, f.cseq, f.sseq, 0x10, b"", ident)


def _bulk_dns_packet(f: _BulkFlow, ident: int) -> bytes:
    """Alternating query and answer (one A record) on a long-lived resolver flow."""
    txid = (f.step // 2) & 0xFFFF
    question = b"\x04bulk\x07example\x00\x00\x01\x00\x01"
    f.step += 1
    if f.step % 2:
        dns = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + question
        src, dst, sport, dport = f.client, f.server, f.cport, f.sport
    else:
        answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + bytes((192, 0, 2, txid % 250 + 1))
        dns = struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question + answer
        src, dst, sport, dport = f.server, f.client, f.sport, f.cport
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(dns), 0) + dns
    return _ip(src, dst, 17, l4, ident)


def write_bulk(path: str, packets: int, flows: int, rate: float = 20_000.0, payload_size: int = 200,
               dns_share: float = 0.02) -> None:
    """Write a benchmark capture: ``packets`` packets over ``flows`` concurrent flows.

    TCP flows (HTTP-like: handshake, a GET, ``payload_size``-byte answers with ACKs, FIN
    exchange) take turns, so all of them stay active for the whole capture; ``dns_share`` of
    the packets are DNS queries and answers on a few resolver flows (part of ``flows``).
    Packets are ``rate`` per second of capture time. Checksums are valid, bytes are the same on
    every run, and more packets with the same ``flows`` make longer flows, not more of them
    (what a memory test needs). About 1.2 M packets/minute are written.
    """
    n_dns = max(1, round(flows * 0.01)) if dns_share > 0 else 0
    n_tcp = max(1, flows - n_dns)
    every = int(round(1 / dns_share)) if dns_share > 0 else 0
    n_dns_packets = (packets // every) * 2 if every else 0
    tcp_packets = packets - n_dns_packets
    table = []
    for j in range(n_tcp):
        total = tcp_packets // n_tcp + (1 if j < tcp_packets % n_tcp else 0)
        client = bytes((10, 100 + j // 65536 % 100, j // 256 % 256, j % 256))
        server = bytes((198, 51, 100, j % 200 + 1)) if j % 2 else bytes((203, 0, 113, j % 200 + 1))
        table.append(_BulkFlow(client, server, 20000 + j % 40000, 80 if j % 3 else 443, total, False))
    resolvers = [_BulkFlow(bytes((10, 99, 0, i % 250 + 1)), bytes((10, 99, 255, 53)), 33333 + i, 53, 0, True)
                 for i in range(n_dns)]
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    eth = bytes.fromhex("020000000001020000000002") + b"\x08\x00"
    start = int(BASE) * 1_000_000
    tcp_next = dns_next = 0
    with open(path, "wb") as out:
        out.write(header)
        for k in range(packets):
            if every and k % every < 2 and n_dns_packets:
                f = resolvers[(dns_next // 2) % n_dns]
                dns_next += 1
                pkt = eth + _bulk_dns_packet(f, k)
            else:
                f = table[tcp_next % n_tcp]
                tcp_next += 1
                pkt = eth + _bulk_tcp_packet(f, payload_size, k)
            us = start + int(k * 1_000_000 / rate)
            out.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(pkt), len(pkt)) + pkt)


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "--bulk":
        write_bulk(argv[1], int(argv[2]), int(argv[3]))
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write(__doc__)
        return 2
    for path in make_all(argv[0]):
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
