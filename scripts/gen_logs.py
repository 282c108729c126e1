#!/usr/bin/env python3
"""Generate a realistic, deterministic Zeek dataset with planted infections and decoys.

    python scripts/gen_logs.py OUTDIR [--conn-rows 2000000] [--dns-rows 500000] [--seed 1] [--small]

Writes into OUTDIR:
  conn.log       Zeek TSV as Zeek writes it (header block, ``-`` for unset, ``#close``); rows in
                 log-write order (connection end + Zeek's removal delay), so ``ts`` is not sorted.
  conn.json      the same records as Zeek JSON lines (``id.orig_h`` keys, epoch ts, unset omitted)
  dns.log        Zeek TSV dns: every record's uid is a udp/53 row of conn.log
  truth.json     {"meta": {...}, "entries": [...]}: planted behaviours (expected=true) and benign
                 decoys (expected=false), one entry per (detector, host)
  zeekwatch.toml the configuration this network needs (internal CIDRs, mail/DNS servers,
                 VPN segment and gateway, time zone)

Same arguments -> identical bytes (numpy PCG64; no wall-clock input). The planted behaviours and
decoys (hosts, peers, times) are the same for every --seed and size; --seed varies the background.

The network: 10.20.0.0/16. 2,000 clients in 10.20.16.0-10.20.23.255 (active 06:30-21:30 local),
100 remote-access clients in 10.20.200.0/24 (the VPN segment; active evenings and nights too),
servers in 10.20.1.0/24 (DCs = DNS + NTP, mail, FTP, file servers, intranet, a database) and
public-facing servers in 10.20.2.0/24 that the internet scans. No internal host except the
planted off-hours one (and the VPN segment) starts a connection 22:00-06:00 local, so off_hours
is unambiguous. Every external address a client contacts in the background was resolved by
that client's own DNS lookup shortly before; all background outbound ports are common ones
(53, 80, 123, 443, 25 from the mail server), and no background connection lasts an hour.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import ipaddress
import json
import os
import sys
import time
import zoneinfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TZ = "Europe/Berlin"
DAY = dt.date(2024, 3, 12)  # a Tuesday, no DST change
START = int(dt.datetime.combine(DAY, dt.time(0), zoneinfo.ZoneInfo(TZ)).timestamp())  # local midnight
US = 1_000_000
SMALL = {"conn_rows": 20_000, "dns_rows": 5_000}
PLANT_SEED = 20240312  # planted behaviours are the same for every --seed and size

INTERNAL = ["10.20.0.0/16"]
VPN_SEGMENT = "10.20.200.0/24"
DCS = ["10.20.1.10", "10.20.1.11"]  # domain controllers: DNS, Kerberos, LDAP, NTP
MAIL_SERVER = "10.20.1.25"
FTP_SERVER = "10.20.1.21"
INTRANET = "10.20.1.40"
DB_SERVER = "10.20.1.50"
FILE_SERVERS = [f"10.20.1.{i}" for i in range(30, 40)]
DMZ = {"10.20.2.10": [80, 443], "10.20.2.25": [25], "10.20.2.30": [443]}  # public-facing: open ports
VPN_GATEWAY = "203.0.113.10"  # a partner's VPN concentrator, outside our networks
DOMAIN = "corp.example"

PROTOS = ["tcp", "udp", "icmp"]
TCP, UDP, ICMP = 0, 1, 2
STATES = ["S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"]
ST = {s: i for i, s in enumerate(STATES)}
QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN"}
SF_HISTORIES = ["ShADadFf", "ShADadfF", "ShAdDaFf", "ShADadFfR"]
SYL = ("ka lo mi ne ra to vu ze po li sa de fi go ha ju ki me no pu ri se ta vo wi xa yo zu bel cor dan "
       "fen gal hor kin lum mar nor pel quin rus sol tem ulm ver wen").split()
TLDS = ["com", "com", "com", "net", "org", "de", "io", "eu", "co.uk", "fr", "nl", "info"]

CONN_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes "
               "conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts "
               "resp_ip_bytes tunnel_parents").split()
CONN_TYPES = ("time string addr port addr port enum string interval count count string bool bool count "
              "string count count count count set[string]").split()
DNS_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id rtt query qclass qclass_name "
              "qtype qtype_name rcode rcode_name AA TC RD RA Z answers TTLs rejected").split()
DNS_TYPES = ("time string addr port addr port enum count interval string count string count string count "
             "string bool bool bool bool count vector[string] vector[interval] bool").split()


def ip2int(s: str) -> int:
    return int(ipaddress.IPv4Address(s))


def at(hms: str, day: int = 0) -> int:
    """Epoch microseconds of a local wall-clock time on the capture day."""
    h, m, *s = (float(x) for x in hms.split(":"))
    return int((START + day * 86400 + h * 3600 + m * 60 + (s[0] if s else 0)) * US)


def iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / US, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Vocab:
    """Interned values, stored as small integer codes in the row arrays."""

    def __init__(self, first):
        self.items, self.index = [first], {first: 0}

    def __call__(self, value) -> int:
        if value not in self.index:
            self.index[value] = len(self.items)
            self.items.append(value)
        return self.index[value]


CONN_COLS = ("ts orig_h orig_p resp_h resp_p proto service dur ob rb state hist op rp").split()
DNS_COLS = ("ts ref orig_h orig_p resp_h trans_id rtt query qtype rcode answers aa").split()


class Gen:
    """The random source, the interned vocabularies and the rows added so far."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.service, self.history = Vocab("-"), Vocab("-")
        self.names, self.answers = Vocab(""), Vocab(((), ()))
        self.conn_parts: list[dict] = []
        self.dns_parts: list[dict] = []
        self.nconn = 0
        self.truth: list[dict] = []

    # -- rows ---------------------------------------------------------------------------------
    def conns(self, n: int, **cols) -> np.ndarray:
        """Add n conn rows; scalars broadcast. Returns their global row indexes."""
        rng = self.rng
        cols.setdefault("orig_p", rng.integers(49152, 65536, n))
        cols.setdefault("service", 0)
        for k in ("dur", "ob", "rb"):
            cols.setdefault(k, -1)
        cols.setdefault("hist", 0)
        cols.setdefault("op", 1)
        cols.setdefault("rp", 0)
        if isinstance(cols["service"], str):
            cols["service"] = self.service(cols["service"])
        if isinstance(cols["hist"], str):
            cols["hist"] = self.history(cols["hist"])
        if isinstance(cols["state"], str):
            cols["state"] = ST[cols["state"]]
        for k in ("orig_h", "resp_h"):
            if isinstance(cols[k], str):
                cols[k] = ip2int(cols[k])
        part = {k: np.broadcast_to(np.asarray(cols[k], dtype=np.int64), (n,)) for k in CONN_COLS}
        self.conn_parts.append(part)
        self.nconn += n
        return np.arange(self.nconn - n, self.nconn)

    def dns(self, n: int, **cols) -> None:
        cols.setdefault("aa", 0)
        part = {k: np.broadcast_to(np.asarray(cols[k], dtype=np.int64), (n,)) for k in DNS_COLS}
        self.dns_parts.append(part)

    def lookups(self, host: str, ts, names, qtype: str, answers, ttl=300, server: str | None = None):
        """A host's DNS lookups, all answered: a dns record and its udp/53 conn each."""
        n = len(names)
        server = server or DCS[ip2int(host) % 2]
        qcode = np.array([self.names(q) for q in names], dtype=np.int64)
        acode = np.array([self.answers((tuple(a), (float(ttl),) * len(a))) for a in answers], dtype=np.int64)
        add_dns_bulk(self, np.full(n, ip2int(host)), np.full(n, ip2int(server)),
                     np.broadcast_to(np.asarray(ts, dtype=np.int64), (n,)), qcode, qtype, acode, loss=0)

    def fact(self, detector, host, peer_or_key, t0, t1, note, expected=True, secondary=False):
        self.truth.append({
            "detector": detector, "host": host, "peer_or_key": peer_or_key, "time": iso(t0),
            "until": iso(t1), "ts": t0 / US, "expected": expected, "secondary": secondary, "note": note})

    # -- random helpers ------------------------------------------------------------------------
    def outcome(self, n: int, mix: dict, ob=2000, rb=20000, dur=2.0, udp=False) -> dict:
        """Vectorised connection outcomes: state, history, duration, bytes, packets."""
        rng = self.rng
        kinds = list(mix)
        k = rng.choice(len(kinds), n, p=np.array(list(mix.values())) / sum(mix.values()))
        o = {"state": np.zeros(n, np.int64), "hist": np.zeros(n, np.int64), "dur": np.full(n, -1),
             "ob": np.full(n, -1), "rb": np.full(n, -1), "op": np.ones(n, np.int64), "rp": np.zeros(n, np.int64)}
        sf_ob = (ob * rng.lognormal(0, 0.8, n)).astype(np.int64) + 1
        sf_rb = (rb * rng.lognormal(0, 1.2, n)).astype(np.int64) + 1
        sf_dur = (dur * US * rng.lognormal(0, 1.0, n)).astype(np.int64).clip(500, 3000 * US)
        for i, kind in enumerate(kinds):
            m = k == i
            o["state"][m] = ST[kind]
            if kind == "SF":
                hist = ["Dd"] if udp else SF_HISTORIES
                o["hist"][m] = np.array([self.history(h) for h in hist])[rng.integers(0, len(hist), m.sum())]
                o["dur"][m], o["ob"][m], o["rb"][m] = sf_dur[m], sf_ob[m], sf_rb[m]
                o["op"][m] = (1 if udp else 3) + sf_ob[m] // 1400
                o["rp"][m] = (1 if udp else 2) + sf_rb[m] // 1400
            elif kind == "S0":
                o["hist"][m] = self.history("D" if udp else "S")
                retry = m & (rng.random(n) < (0.0 if udp else 0.4))
                o["op"][retry] = 3
                o["dur"][retry] = rng.integers(2_900_000, 3_100_000, retry.sum())
                o["ob"][retry], o["rb"][retry] = 0, 0
            elif kind == "REJ":
                o["hist"][m] = self.history("Sr")
                o["rp"][m] = 1
                o["dur"][m] = rng.integers(40, 400, m.sum())
                o["ob"][m], o["rb"][m] = 0, 0
            else:  # RSTO / RSTR: established, then reset
                o["hist"][m] = self.history("ShADadR" if kind == "RSTO" else "ShADadr")
                o["dur"][m], o["ob"][m], o["rb"][m] = sf_dur[m] // 4, sf_ob[m] // 2, sf_rb[m] // 3
                o["op"][m], o["rp"][m] = 3 + sf_ob[m] // 2800, 2 + sf_rb[m] // 4200
        return o

    def times(self, n: int, profile: str) -> np.ndarray:
        """Epoch microseconds over the capture day, with a diurnal shape per profile."""
        h = np.arange(96) / 4  # quarter-hour slots, local time
        if profile == "client":  # 06:30-21:30, peaks late morning and afternoon, lunch dip
            w = np.exp(-((h - 10.5) / 2.2) ** 2) + 0.9 * np.exp(-((h - 15) / 2.0) ** 2) + 0.15
            w[(h < 6.5) | (h >= 21.5)] = 0
            w[(h >= 12) & (h < 13)] *= 0.6
        elif profile == "vpn":  # remote staff: evenings and some nights
            w = 0.3 + np.exp(-((h - 20) / 2.5) ** 2) + 0.5 * np.exp(-((h - 11) / 3) ** 2)
            w[(h >= 3) & (h < 6)] = 0.05
        elif profile == "server":  # business hours only (see module docstring)
            w = np.where((h >= 7) & (h < 21), 1.0, 0.0)
        elif profile == "internet":  # inbound visitors: mild diurnal, never zero
            w = 0.5 + np.exp(-((h - 14) / 4) ** 2)
        else:  # "flat": internet background radiation
            w = np.ones(96)
        slot = self.rng.choice(96, n, p=w / w.sum())
        return (START * US + slot * 900 * US + self.rng.integers(0, 900 * US, n)).astype(np.int64)


# -- the network -------------------------------------------------------------------------------

RESERVED = [ipaddress.ip_network(c) for c in (
    "0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24 "
    "192.0.2.0/24 192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24 224.0.0.0/3 "
    "8.8.8.0/24").split()]


def public_ips(rng, n: int) -> np.ndarray:
    """n distinct public IPv4 addresses (as ints), in random order."""
    out = np.empty(0, np.int64)
    while len(out) < n:
        cand = rng.integers(1 << 24, 0xDF000000, 2 * n)
        ok = np.ones(len(cand), bool)
        for net in RESERVED:
            lo = int(net.network_address)
            ok &= ~((cand >= lo) & (cand < lo + net.num_addresses))
        out = np.concatenate([out, cand[ok]])
        _, first = np.unique(out, return_index=True)
        out = out[np.sort(first)]
    return out[:n]


class Pool:
    """Hands out fresh external addresses, each used by one role only."""

    def __init__(self, rng, n):
        self.ips, self.next = public_ips(rng, n), 0

    def take(self, n: int) -> np.ndarray:
        self.next += n
        if self.next > len(self.ips):
            raise RuntimeError("external address pool exhausted")
        return self.ips[self.next - n:self.next]


def domain_names(rng, n: int, prefixes=("www", "www", "api", "cdn", "static", "img", "login", "app", "")) -> list[str]:
    out, seen = [], set()
    while len(out) < n:
        base = "".join(rng.choice(SYL, rng.integers(2, 4)))
        name = f"{base}.{rng.choice(TLDS)}"
        pre = rng.choice(prefixes)
        full = f"{pre}.{name}" if pre else name
        if full not in seen:
            seen.add(full)
            out.append(full)
    return out


def int2ip(x) -> str:
    return str(ipaddress.IPv4Address(int(x)))


class Net:
    """Clients, domains and their addresses."""

    def __init__(self, g: Gen, n_domains: int, pool: Pool):
        rng = g.rng
        self.clients = np.array([ip2int(f"10.20.{s}.{h}") for s in range(16, 24) for h in range(5, 255)])
        self.vpn_clients = np.array([ip2int(f"10.20.200.{h}") for h in range(10, 110)])
        self.client_w = rng.lognormal(0, 0.8, len(self.clients))
        self.client_w /= self.client_w.sum()
        self.domains = domain_names(rng, n_domains)
        k = rng.choice([1, 2, 3, 4], n_domains, p=[0.45, 0.3, 0.15, 0.1])
        self.dom_start = np.concatenate([[0], np.cumsum(k)[:-1]])
        self.dom_count = k
        self.dom_ips = pool.take(int(k.sum()))
        rank = np.arange(1, n_domains + 1)
        self.dom_w = 1.0 / rank ** 1.05
        self.dom_w /= self.dom_w.sum()
        self.quic = rng.random(n_domains) < 0.15
        self.a_code = np.empty(n_domains, np.int64)
        self.aaaa_code = np.empty(n_domains, np.int64)
        for d, name in enumerate(self.domains):
            ips = [int2ip(x) for x in self.dom_ips[self.dom_start[d]:self.dom_start[d] + k[d]]]
            ttl = float(rng.choice([20, 60, 300, 3600]))
            ans, ttls = ips, [ttl] * len(ips)
            if rng.random() < 0.3:
                cname = f"{name.split('.')[0]}-{d}.edge.{rng.choice(['akadns.net', 'cdn-azur.net', 'fastly-edge.com'])}"
                ans, ttls = [cname] + ips, [300.0] + ttls
            self.a_code[d] = g.answers((tuple(ans), tuple(ttls)))
            v6 = [f"2a0{d % 9 + 1}:{d % 0xffff:x}:{rng.integers(1, 0xffff):x}::{i + 1:x}" for i in range(k[d])]
            self.aaaa_code[d] = g.answers((tuple(v6), (ttl,) * len(v6))) if rng.random() < 0.4 else 0
        self.dom_code = np.array([g.names(n) for n in self.domains])


# -- background traffic ------------------------------------------------------------------------

def sessions(g: Gen, net: Net, n_sessions: int, n_aaaa: int, conn_rows: int) -> None:
    """Clients look a name up, then connect to the answered addresses (80/443, some QUIC).

    Fills conn.log up to exactly ``conn_rows`` rows.
    """
    rng = g.rng
    n_web = conn_rows - g.nconn - n_sessions - n_aaaa
    n_vpn = n_sessions // 20
    hosts = np.concatenate([rng.choice(net.clients, n_sessions - n_vpn, p=net.client_w),
                            rng.choice(net.vpn_clients, n_vpn)])
    ts = np.concatenate([g.times(n_sessions - n_vpn, "client"), g.times(n_vpn, "vpn")])
    dom = rng.choice(len(net.domains), n_sessions, p=net.dom_w)
    server = np.array([ip2int(d) for d in DCS])[hosts % 2]
    # the A lookups are always answered (a lost one would be retried; connections need an answer)
    dns_ref_ts = add_dns_bulk(g, hosts, server, ts, net.dom_code[dom], "A", net.a_code[dom], loss=0)
    six = np.sort(rng.choice(n_sessions, n_aaaa, replace=False))  # the AAAA twin of some lookups
    add_dns_bulk(g, hosts[six], server[six], ts[six] + 150, net.dom_code[dom[six]], "AAAA", net.aaaa_code[dom[six]])
    # connections: each belongs to a session, starts after its answer arrived, within the TTL
    s = rng.choice(n_sessions, n_web, p=_normalised(rng.gamma(0.7, 1.0, n_sessions)))
    start = dns_ref_ts[s] + (rng.exponential(12, n_web).clip(0, 280) * US).astype(np.int64) + 2000
    d = dom[s]
    dst = net.dom_ips[net.dom_start[d] + rng.integers(0, 1 << 30, n_web) % net.dom_count[d]]
    port = np.where(rng.random(n_web) < 0.85, 443, 80)
    quic = (port == 443) & net.quic[d] & (rng.random(n_web) < 0.6)
    o = g.outcome(n_web, {"SF": 0.94, "S0": 0.015, "REJ": 0.005, "RSTO": 0.02, "RSTR": 0.02}, 900, 30000, 4.0)
    svc = confirmed(o, np.where(port == 443, g.service("ssl"), g.service("http")))
    proto = np.where(quic, UDP, TCP)
    svc[quic] = g.service("quic,ssl")
    o["hist"][quic], o["state"][quic], o["rp"][quic] = g.history("Dd"), ST["SF"], np.maximum(o["rp"][quic], 1)
    o["dur"][quic] = np.maximum(o["dur"][quic], 1000)
    o["ob"][quic], o["rb"][quic] = np.maximum(o["ob"][quic], 1250), np.maximum(o["rb"][quic], 1200)
    g.conns(n_web, ts=start, orig_h=hosts[s], resp_h=dst, resp_p=port, proto=proto, service=svc, **o)


def confirmed(o: dict, svc) -> np.ndarray:
    """Zeek names a service only once its analyzer saw the protocol: not for S0/REJ attempts."""
    return np.where(np.isin(o["state"], [ST["SF"], ST["RSTO"], ST["RSTR"]]), svc, 0)


def _normalised(w):
    return w / w.sum()


def add_dns_bulk(g: Gen, hosts, server, ts, qcode, qtype: str, acode, rcode=0, aa=0, loss=0.008):
    """Vectorised client lookups: dns records plus their udp/53 conns; returns answer times."""
    rng, n = g.rng, len(hosts)
    rtt = (rng.lognormal(np.log(3000), 1.0, n)).astype(np.int64).clip(150, 900_000)
    lost = rng.random(n) < loss  # no reply: S0 conn, rcode and rtt unset
    rcode = np.broadcast_to(np.asarray(rcode), (n,)).copy()
    acode = np.broadcast_to(np.asarray(acode), (n,)).copy()
    rcode[lost], acode[lost] = -1, 0
    ans_n = np.array([len(a[0]) for a in g.answers.items])[acode]
    qlen = np.array([len(q) for q in g.names.items])[qcode]
    oport = rng.integers(49152, 65536, n)
    ref = g.conns(n, ts=ts, orig_h=hosts, orig_p=oport, resp_h=server, resp_p=53, proto=UDP,
                  service="dns", state=np.where(lost, ST["S0"], ST["SF"]),  # Zeek: dns on the request alone
                  hist=np.where(lost, g.history("D"), g.history("Dd")), dur=np.where(lost, -1, rtt),
                  ob=np.where(lost, -1, qlen + 18), rb=np.where(lost, -1, qlen + 18 + ans_n * 16),
                  op=1, rp=np.where(lost, 0, 1))
    g.dns(n, ts=ts, ref=ref, orig_h=hosts, orig_p=oport, resp_h=server, trans_id=rng.integers(0, 65536, n),
          rtt=np.where(lost, -1, rtt), query=qcode, qtype=QTYPES[qtype], rcode=rcode, answers=acode, aa=aa)
    return ts + rtt


def other_dns(g: Gen, net: Net, n: int) -> None:
    """Lookups without web traffic: AD SRV records, internal names, PTR, NXDOMAIN noise."""
    rng = g.rng
    hosts = rng.choice(net.clients, n, p=net.client_w)
    server = np.array([ip2int(d) for d in DCS])[hosts % 2]
    ts = g.times(n, "client")
    internal = {f"intranet.{DOMAIN}": [INTRANET], f"mail.{DOMAIN}": [MAIL_SERVER],
                f"ftp.{DOMAIN}": [FTP_SERVER], **{f"fs{i}.{DOMAIN}": [ip] for i, ip in enumerate(FILE_SERVERS)}}
    kinds = [("SRV", f"_ldap._tcp.dc._msdcs.{DOMAIN}", [f"dc1.{DOMAIN}", f"dc2.{DOMAIN}"], 0, 1)]
    kinds += [("A", name, ips, 0, 1) for name, ips in internal.items()]
    kinds += [("A", f"wpad.{DOMAIN}", [], 3, 1), ("A", f"isatap.{DOMAIN}", [], 3, 1)]
    kinds += [("PTR", f"{i}.1.20.10.in-addr.arpa", [f"srv{i}.{DOMAIN}"], 0, 1) for i in (10, 11, 25, 30, 40)]
    kinds += [("A", t, [], 3, 0) for t in domain_names(rng, 200, ("", "www"))]  # typos, dead names
    pick = rng.choice(len(kinds), n, p=_normalised(np.array([8.0] + [3.0] * len(internal) + [4, 4] + [1.0] * 5 + [0.05] * 200)))
    for qtype in ("A", "SRV", "PTR"):
        idx = np.array([i for i, k in enumerate(kinds) if k[0] == qtype])
        m = np.isin(pick, idx)
        sel = [kinds[i] for i in pick[m]]
        qcode = np.array([g.names(k[1]) for k in sel], dtype=np.int64)
        acode = np.array([g.answers((tuple(k[2]), (600.0,) * len(k[2]))) for k in sel], dtype=np.int64)
        add_dns_bulk(g, hosts[m], server[m], ts[m], qcode, qtype, acode,
                     rcode=np.array([k[3] for k in sel], dtype=np.int64), aa=np.array([k[4] for k in sel], dtype=np.int64))


def infra(g: Gen, net: Net, n: int) -> None:
    """Clients and their servers: Kerberos, LDAP, SMB, RPC, NTP, Exchange, intranet, a ping."""
    rng = g.rng
    hosts = rng.choice(net.clients, n, p=net.client_w)
    dc = np.array([ip2int(d) for d in DCS])[hosts % 2]
    fs = np.array([ip2int(f) for f in FILE_SERVERS])[hosts % len(FILE_SERVERS)]
    ts = g.times(n, "client")
    # (weight, resp, port, proto, service, bytes orig/resp, duration)
    kinds = [(15, dc, 88, TCP, "krb_tcp", 1500, 1600, 0.01), (15, dc, 389, TCP, "ldap_tcp", 900, 4000, 0.3),
             (8, dc, 445, TCP, "smb", 3000, 9000, 2.0), (5, dc, 135, TCP, "dce_rpc", 300, 250, 0.05),
             (5, dc, -1, TCP, "dce_rpc", 1200, 900, 0.2), (8, dc, 123, UDP, "ntp", 48, 48, 0.001),
             (27, fs, 445, TCP, "smb", 40000, 200000, 30.0), (10, ip2int(MAIL_SERVER), 443, TCP, "ssl", 3000, 25000, 60.0),
             (6, ip2int(INTRANET), 443, TCP, "ssl", 1500, 40000, 5.0), (1, dc, 8, ICMP, "-", 32, 32, 0.001)]
    k = rng.choice(len(kinds), n, p=_normalised(np.array([x[0] for x in kinds], float)))
    for i, (_, resp, port, proto, svc, ob, rb, dur) in enumerate(kinds):
        m = k == i
        c = int(m.sum())
        if not c:
            continue
        resp_i = resp[m] if isinstance(resp, np.ndarray) else resp
        if proto == ICMP:
            o = g.outcome(c, {"SF": 1}, ob, rb, dur, udp=True)
            o.update(state=ST["OTH"], hist=0, ob=32, rb=32, op=1, rp=1)
            g.conns(c, ts=ts[m], orig_h=hosts[m], orig_p=8, resp_h=resp_i, resp_p=0, proto=ICMP, **o)
            continue
        rport = port if port > 0 else rng.choice([49667, 49668, 49670], c)  # the DC's RPC endpoints
        o = g.outcome(c, {"SF": 0.985, "RSTO": 0.01, "RSTR": 0.005} if proto == TCP else {"SF": 1},
                      ob, rb, dur, udp=proto == UDP)
        g.conns(c, ts=ts[m], orig_h=hosts[m], resp_h=resp_i, resp_p=rport, proto=proto, service=svc, **o)


def inbound(g: Gen, pool: Pool, n_scan: int, n_web: int, n_mail: int) -> None:
    """The internet at our public-facing servers: scanners, visitors, mail."""
    rng = g.rng
    dmz = list(DMZ)
    scanners = pool.take(max(50, n_scan // 6))
    who = scanners[np.minimum(rng.zipf(1.6, n_scan) - 1, len(scanners) - 1)]
    target = rng.integers(0, len(dmz), n_scan)
    ports = np.array([23, 22, 80, 443, 8080, 3389, 445, 5900, 6379, 1433, 3306, 8443, 2323, 25, 21, 81, 7547])
    port = np.where(rng.random(n_scan) < 0.8, ports[rng.integers(0, len(ports), n_scan)], rng.integers(1, 65536, n_scan))
    ts = g.times(n_scan, "flat")
    open_ = np.array([port[i] in DMZ[dmz[target[i]]] for i in range(n_scan)])
    o = g.outcome(n_scan, {"REJ": 0.6, "S0": 0.4})
    o["state"][open_], o["hist"][open_] = ST["RSTO"], g.history("ShR")
    o["rp"][open_], o["ob"][open_], o["rb"][open_] = 1, 0, 0
    o["dur"][open_] = rng.integers(50, 900, open_.sum())
    g.conns(n_scan, ts=ts, orig_h=who, orig_p=rng.integers(1024, 65536, n_scan),
            resp_h=np.array([ip2int(d) for d in dmz])[target], resp_p=port, proto=TCP, **o)
    visitors = pool.take(max(100, n_web // 5))
    who = visitors[rng.integers(0, len(visitors), n_web)]
    port = np.where(rng.random(n_web) < 0.8, 443, 80)
    o = g.outcome(n_web, {"SF": 0.97, "RSTR": 0.02, "S0": 0.01}, 700, 45000, 3.0)
    svc = np.where(port == 443, g.service("ssl"), g.service("http"))
    g.conns(n_web, ts=g.times(n_web, "internet"), orig_h=who, orig_p=rng.integers(32768, 61000, n_web),
            resp_h=ip2int("10.20.2.10"), resp_p=port, proto=TCP, service=confirmed(o, svc), **o)
    mtas = pool.take(max(20, n_mail // 10))
    o = g.outcome(n_mail, {"SF": 0.95, "RSTO": 0.05}, 25000, 900, 2.0)
    g.conns(n_mail, ts=g.times(n_mail, "internet"), orig_h=mtas[rng.integers(0, len(mtas), n_mail)],
            orig_p=rng.integers(32768, 61000, n_mail), resp_h="10.20.2.25", resp_p=25, proto=TCP,
            service=np.where(rng.random(n_mail) < 0.6, g.service("smtp,ssl"), g.service("smtp")), **o)


def mail_out(g: Gen, pool: Pool, n: int) -> None:
    """The mail server delivers outbound mail: MX lookup, A lookup, SMTP (business hours)."""
    rng = g.rng
    doms = domain_names(rng, max(10, n // 3), ("",))
    ips = pool.take(len(doms))
    d = rng.integers(0, len(doms), n)
    ts = np.sort(g.times(n, "server"))
    host = np.full(n, ip2int(MAIL_SERVER))
    server = np.full(n, ip2int(DCS[0]))
    mx = np.array([g.answers(((f"mx.{x}",), (3600.0,))) for x in doms])
    a = np.array([g.answers(((int2ip(ip),), (300.0,))) for ip in ips])
    t1 = add_dns_bulk(g, host, server, ts, np.array([g.names(x) for x in doms])[d], "MX", mx[d], loss=0)
    t2 = add_dns_bulk(g, host, server, t1 + 200, np.array([g.names(f"mx.{x}") for x in doms])[d], "A", a[d], loss=0)
    o = g.outcome(n, {"SF": 0.93, "REJ": 0.03, "S0": 0.02, "RSTR": 0.02}, 30000, 800, 2.0)
    g.conns(n, ts=t2 + 500, orig_h=host, orig_p=rng.integers(32768, 61000, n), resp_h=ips[d], resp_p=25,
            proto=TCP, service=np.where(o["state"] == ST["SF"], g.service("smtp"), 0), **o)


def ntp_sync(g: Gen, pool: Pool, n: int) -> None:
    """The DCs resolve pool.ntp.org hourly and poll those servers (business hours)."""
    rng = g.rng
    servers = pool.take(8)
    for i, dc in enumerate(DCS):
        mine = servers[4 * i:4 * i + 4]
        for hour in range(7, 21):
            g.lookups(dc, at(f"{hour}:00:{3 + i}"), [f"{i}.pool.ntp.org"], "A", [[int2ip(x) for x in mine]],
                      ttl=150, server=DCS[1 - i])
        m = max(2, n // 2)
        ts = at("7:00:10") + np.sort(rng.integers(0, 14 * 3600 * US - 20 * US, m))
        o = g.outcome(m, {"SF": 1}, 48, 48, 0.02, udp=True)
        o.update(ob=48, rb=48, op=1, rp=1)
        g.conns(m, ts=ts, orig_h=dc, orig_p=123, resp_h=mine[rng.integers(0, 4, m)], resp_p=123, proto=UDP,
                service="ntp", **o)


# -- planted behaviours (expected=true) ------------------------------------------------------------

def spread(t0: int, t1: int, n: int) -> np.ndarray:
    """n instants evenly from t0 to t1 (inclusive), microseconds."""
    return np.linspace(t0, t1, n).astype(np.int64)


def resolve_then(g: Gen, host: str, t: int, name: str, ips) -> int:
    g.lookups(host, t, [name], "A", [[int2ip(x) for x in np.atleast_1d(ips)]])
    return t + 40_000


def plant_mail(g: Gen, pool: Pool) -> None:
    """mass_mailer + mx_burst from a client; a standalone mx_burst; the real mail server's burst."""
    host, n = "10.20.18.77", 35
    doms = domain_names(g.rng, 2 * n + 25, ("",))
    ips = pool.take(n)
    t0 = at("10:14:10")
    g.lookups(host, spread(t0, t0 + 20 * US, n), doms[:n], "MX", [[f"mx.{d}"] for d in doms[:n]], ttl=3600)
    g.lookups(host, spread(t0 + 200_000, t0 + 21 * US, n), [f"mx.{d}" for d in doms[:n]], "A",
              [[int2ip(x)] for x in ips])
    # SMTP from hh:14:35 to hh:15:25: about 17 attempts in each calendar minute, 35 in the sliding 60 s
    ts = spread(at("10:14:35"), at("10:15:25"), n)
    state = np.array(["SF"] * 28 + ["REJ"] * 4 + ["S0"] * 3)[g.rng.permutation(n)]
    smtp_conns(g, host, ts, ips, state)
    g.fact("mass_mailer", host, f"tcp/25: {n} distinct external servers", ts[0], ts[-1],
           "35 SMTP attempts (28 SF, 4 REJ, 3 S0) in 50 s straddling 10:15:00 local: ~17 per calendar "
           "minute, so only an exact sliding window sees 35; every server came from its own MX+A lookups")
    g.fact("mx_burst", host, f"{n} MX lookups", t0, t0 + 20 * US, "35 MX lookups in 20 s just before the SMTP burst")
    g.fact("unusual_port", host, "tcp/25", ts[0], ts[-1], "SMTP out from a client, if 25 is not a common port",
           secondary=True)
    t1 = at("13:40:00")
    host2 = "10.20.21.140"
    g.lookups(host2, spread(t1, t1 + 40 * US, 25), doms[n:n + 25], "MX", [[f"mx.{d}"] for d in doms[n:n + 25]], ttl=3600)
    g.fact("mx_burst", host2, "25 MX lookups", t1, t1 + 40 * US, "25 MX lookups in 40 s, no SMTP follows")


def smtp_conns(g: Gen, host: str, ts, ips, state) -> None:
    n = len(ts)
    o = g.outcome(n, {"SF": 1}, 4000, 600, 1.5)
    for s in ("REJ", "S0"):
        m = state == s
        f = g.outcome(int(m.sum()), {s: 1})
        for k in o:
            o[k][m] = f[k]
    g.conns(n, ts=ts, orig_h=host, resp_h=ips, resp_p=25, proto=TCP,
            service=np.where(state == "SF", g.service("smtp"), 0), **o)


def plant_scans(g: Gen) -> None:
    """horizontal_scan (tcp/445 worm), vertical_scan (100 ports), ping_sweep (30 hosts)."""
    rng = g.rng
    host = "10.20.19.5"
    cand = np.array([ip2int(f"10.20.{s}.{h}") for s in range(16, 24) for h in range(1, 255)])
    targets = rng.choice(cand[cand != ip2int(host)], 60, replace=False)
    ts = spread(at("11:02:10"), at("11:03:00"), 60)
    o = g.outcome(60, {"S0": 42, "REJ": 14, "RSTO": 4})
    g.conns(60, ts=ts, orig_h=host, resp_h=targets, resp_p=445, proto=TCP,
            service=np.where(o["state"] == ST["RSTO"], g.service("smb"), 0), **o)
    g.fact("horizontal_scan", host, "tcp/445", ts[0], ts[-1],
           "SYNs to 60 distinct internal addresses it never resolved in 50 s (42 S0, 14 REJ, 4 answered)")
    host, server = "10.20.20.200", DB_SERVER
    ports = np.sort(rng.choice(np.arange(1, 1025), 100, replace=False))
    ports[:3] = [22, 443, 1433]
    ts = spread(at("15:21:00"), at("15:21:12"), 100)
    o = g.outcome(100, {"REJ": 1})
    o["state"][:3], o["hist"][:3], o["rp"][:3] = ST["RSTO"], g.history("ShAR"), 1
    g.conns(100, ts=ts, orig_h=host, resp_h=server, resp_p=ports, proto=TCP, **o)
    g.fact("vertical_scan", host, server, ts[0], ts[-1], "100 distinct ports of the database server in 12 s, 97 REJ")
    host = "10.20.22.31"
    targets = np.array([ip2int(f"10.20.22.{h}") for h in range(1, 32) if h != 31])
    ts = spread(at("09:47:50"), at("09:48:10"), 30)
    reply = rng.random(30) < 0.7
    g.conns(30, ts=ts, orig_h=host, orig_p=8, resp_h=targets, resp_p=0, proto=ICMP, state="OTH",
            dur=np.where(reply, rng.integers(200, 2000, 30), -1), ob=np.where(reply, 32, -1),
            rb=np.where(reply, 32, -1), op=1, rp=reply.astype(int))
    g.fact("ping_sweep", host, "icmp echo: 30 hosts", ts[0], ts[-1], "echo to 30 internal hosts in 20 s (21 answer)")


def plant_outbound(g: Gen, pool: Pool) -> None:
    """outbound_ping, c2_port (6667 and 6697), rare_destination."""
    rng = g.rng
    t = at("14:05:00")
    g.conns(1, ts=t, orig_h="10.20.16.99", orig_p=8, resp_h="8.8.8.8", resp_p=0, proto=ICMP, state="OTH",
            dur=3_012_000, ob=128, rb=128, op=4, rp=4)
    g.fact("outbound_ping", "10.20.16.99", "8.8.8.8", t, t, "ping 8.8.8.8 (4 echoes, one Zeek conn)")
    g.fact("rare_destination", "10.20.16.99", "8.8.8.8", t, t, "only host to contact it; never resolved", secondary=True)
    irc, ircs, rare = pool.take(3)
    for host, peer, port, svc, n, t0, t1 in (("10.20.17.180", irc, 6667, "irc", 8, "12:00", "15:30"),
                                             ("10.20.23.66", ircs, 6697, "ssl", 6, "14:00", "17:00")):
        ts = spread(at(t0), at(t1), n) + rng.integers(0, 60 * US, n)
        o = g.outcome(n, {"SF": 1}, 2500, 9000, 1500.0)
        o["dur"] = rng.integers(1200, 1500, n) * US
        g.conns(n, ts=ts, orig_h=host, resp_h=peer, resp_p=port, proto=TCP, service=svc, **o)
        g.fact("c2_port", host, f"{int2ip(peer)}:{port}", ts[0], ts[-1], f"{n} connections to tcp/{port} ({svc}), ~25 min each")
        for det in ("unusual_port", "rare_destination"):
            g.fact(det, host, f"{int2ip(peer)}:{port}", ts[0], ts[-1], "same C2 peer (never resolved)", secondary=True)
    host = "10.20.16.45"
    ts = np.sort(at("08:30:00") + rng.integers(0, 8 * 3600 * US, 6))
    o = g.outcome(6, {"SF": 1}, 1800, 2400, 0.8)
    g.conns(6, ts=ts, orig_h=host, resp_h=rare, resp_p=443, proto=TCP, service="ssl", **o)
    g.fact("rare_destination", host, f"{int2ip(rare)}:443", ts[0], ts[-1],
           "6 TLS connections to an address no other host contacts and nobody resolved")


def plant_channels(g: Gen, pool: Pool) -> None:
    """non_web_on_web_port (443 service '-', 80 service ssh) and a 3 h long_connection."""
    rng = g.rng
    a, b, c = pool.take(3)
    host = "10.20.18.12"
    ts = np.sort(at("09:00:00") + rng.integers(0, 8 * 3600 * US, 16))
    resolve_then(g, host, ts[0] - 2 * US, "sync.tarnovel.net", a)
    o = g.outcome(16, {"SF": 1}, 60000, 8000, 40.0)
    g.conns(16, ts=ts, orig_h=host, resp_h=a, resp_p=443, proto=TCP, service="-", **o)
    g.fact("non_web_on_web_port", host, f"{int2ip(a)}:443", ts[0], ts[-1],
           "16 established tcp/443 connections with no TLS (service '-'), resolved name")
    host = "10.20.21.9"
    t = resolve_then(g, host, at("13:15:00"), "files.morvenko.io", b)
    ts = np.array([t, t + 2400 * US, t + 2500 * US, t + 3000 * US])
    o = g.outcome(4, {"SF": 1}, 5000, 90000, 30.0)
    o["dur"][0] = 2350 * US
    g.conns(4, ts=ts, orig_h=host, resp_h=b, resp_p=80, proto=TCP, service="ssh", **o)
    g.fact("non_web_on_web_port", host, f"{int2ip(b)}:80", ts[0], ts[-1], "SSH on tcp/80 (service ssh), 4 connections")
    host = "10.20.19.150"
    t = resolve_then(g, host, at("12:10:00"), "relay.quintaro.com", c)
    o = g.outcome(1, {"SF": 1}, 9_000_000, 40_000_000, 1.0)
    o["dur"][:] = (3 * 3600 + 300) * US
    g.conns(1, ts=t, orig_h=host, resp_h=c, resp_p=443, proto=TCP, service="ssl", **o)
    g.fact("long_connection", host, f"{int2ip(c)}:443", t, t + o["dur"][0], "one TLS connection of 3 h 05 min (tier 1 h)")


def night_browsing(g: Gen, pool: Pool, host: str, t0: str, t1: str, n_names: int, n_conns: int) -> tuple[int, int]:
    rng = g.rng
    names = domain_names(rng, n_names)
    ips = pool.take(n_names)
    ts = np.sort(at(t0) + rng.integers(0, at(t1) - at(t0) - 120 * US, n_names))
    g.lookups(host, ts, names, "A", [[int2ip(x)] for x in ips])
    k = rng.integers(0, n_names, n_conns)
    start = ts[k] + rng.integers(100_000, 90 * US, n_conns)
    o = g.outcome(n_conns, {"SF": 1}, 900, 25000, 3.0)
    g.conns(n_conns, ts=start, orig_h=host, resp_h=ips[k], resp_p=443, proto=TCP, service="ssl", **o)
    return int(ts[0]), int(start.max())


def plant_night(g: Gen, pool: Pool) -> None:
    host = "10.20.22.210"
    t0, t1 = night_browsing(g, pool, host, "02:00:00", "04:00:00", 12, 40)
    g.fact("off_hours", host, f"02:00-04:00 {TZ}", t0, t1, "a client (not VPN) browsing 12 names, 40 connections at night")
    host = "10.20.200.17"
    t0, t1 = night_browsing(g, pool, host, "01:00:00", "02:30:00", 8, 20)
    g.fact("off_hours", host, f"01:00-02:30 {TZ}", t0, t1, "remote-access client in the VPN segment: exempt",
           expected=False)


# -- benign look-alikes (expected=false) -------------------------------------------------------------

def decoy_mail_server(g: Gen, pool: Pool) -> None:
    n = 50
    doms = domain_names(g.rng, n, ("",))
    ips = pool.take(n)
    t0 = at("10:30:05")
    g.lookups(MAIL_SERVER, spread(t0, t0 + 25 * US, n), doms, "MX", [[f"mx.{d}"] for d in doms], ttl=3600)
    g.lookups(MAIL_SERVER, spread(t0 + 300_000, t0 + 26 * US, n), [f"mx.{d}" for d in doms], "A", [[int2ip(x)] for x in ips])
    ts = spread(at("10:30:32"), at("10:31:20"), n)
    smtp_conns(g, MAIL_SERVER, ts, ips, np.array(["SF"] * 46 + ["REJ"] * 4))
    for det, what in (("mass_mailer", f"tcp/25: {n} servers in 48 s"), ("mx_burst", f"{n} MX lookups in 25 s")):
        g.fact(det, MAIL_SERVER, what, t0, ts[-1], "the configured mail server (networks.mail_servers)", expected=False)


def decoy_browser(g: Gen, pool: Pool) -> None:
    host, n = "10.20.17.42", 30
    names = domain_names(g.rng, n)
    ips = pool.take(2 * n).reshape(n, 2)
    t0 = at("16:10:00")
    g.lookups(host, spread(t0, t0 + 20 * US, n), names, "A", [[int2ip(a), int2ip(b)] for a, b in ips])
    tl = np.repeat(spread(t0, t0 + 20 * US, n), 2)  # each name: one conn per address, 0.1 s and 30 s later
    ts = tl + np.tile([100_000, 30 * US], n)
    o = g.outcome(2 * n, {"SF": 1}, 900, 30000, 2.0)
    g.conns(2 * n, ts=ts, orig_h=host, resp_h=ips.reshape(-1), resp_p=443, proto=TCP, service="ssl", **o)
    g.fact("horizontal_scan", host, "tcp/443", int(ts.min()), int(ts.max()),
           "browser: tcp/443 to 60 distinct addresses in 50 s, all resolved by its own lookups, all SF", expected=False)


def decoy_ftp(g: Gen) -> None:
    rng = g.rng
    for client, t0, active in (("10.20.18.140", "14:30:00", True), ("10.20.19.60", "14:45:00", False)):
        start = at(t0)
        o = g.outcome(1, {"SF": 1}, 800, 3000, 1.0)
        o["dur"][:] = 75 * US
        g.conns(1, ts=start, orig_h=client, resp_h=FTP_SERVER, resp_p=21, proto=TCP, service="ftp", **o)
        ts = spread(start + 3 * US, start + 58 * US, 60)
        ports = np.sort(rng.choice(np.arange(50000, 51000) if not active else np.arange(52000, 60000), 60, replace=False))
        o = g.outcome(60, {"SF": 0.9, "RSTR": 0.1}, 200, 400000, 0.5)
        if active:  # the server connects from port 20 to the client's announced ports
            g.conns(60, ts=ts, orig_h=FTP_SERVER, orig_p=20, resp_h=client, resp_p=ports, proto=TCP, service="ftp-data", **o)
            g.fact("vertical_scan", FTP_SERVER, client, ts[0], ts[-1],
                   "active FTP: server port 20 -> 60 ports of its client in 55 s (ftp-data)", expected=False)
        else:
            g.conns(60, ts=ts, orig_h=client, resp_h=FTP_SERVER, resp_p=ports, proto=TCP, service="ftp-data", **o)
            g.fact("vertical_scan", client, FTP_SERVER, ts[0], ts[-1],
                   "passive FTP: 60 data ports of the server in 55 s after a tcp/21 control conn", expected=False)


def decoy_backscatter(g: Gen, pool: Pool) -> None:
    """A DDoS victim answers spoofed SYNs that carried our public server's address."""
    rng, n, host = g.rng, 70, "10.20.2.10"
    victims = pool.take(n)
    ts = spread(at("19:20:00"), at("19:20:50"), n) + rng.integers(0, 300_000, n)
    kind = rng.choice(3, n, p=[0.7, 0.15, 0.15])
    hist = np.array([g.history(h) for h in ("^hR", "^h", "^r")])[kind]
    state = np.array([ST[s] for s in ("RSTO", "OTH", "RSTRH")])[kind]
    g.conns(n, ts=ts, orig_h=host, orig_p=rng.integers(1024, 65536, n), resp_h=victims,
            resp_p=rng.choice([80, 443], n), proto=TCP, state=state, hist=hist,
            dur=np.where(kind == 0, rng.integers(30, 120, n), -1), ob=np.where(kind == 0, 0, -1),
            rb=np.where(kind == 0, 0, -1), op=(kind == 0).astype(int), rp=1)
    for det in ("horizontal_scan", "rare_destination"):
        g.fact(det, host, "backscatter", ts[0], ts[-1], "70 flipped conns (^hR RSTO, ^h OTH, ^r RSTRH) from 70 "
               "external hosts in 51 s: SYN-ACK/RST our server never asked for", expected=False)


def decoy_thresholds(g: Gen) -> None:
    """Just below the horizontal_scan threshold: 19 hosts in 50 s; 20 hosts spread over 80 s."""
    for host, n, t0, span in (("10.20.20.77", 19, "11:30:00", 50), ("10.20.20.78", 20, "11:40:00", 80)):
        targets = [f"10.20.1.{100 + i}" for i in range(n)]
        ts = spread(at(t0), at(t0) + span * US, n)
        o = g.outcome(n, {"SF": 1}, 3000, 4000, 20.0)
        g.conns(n, ts=ts, orig_h=host, resp_h=np.array([ip2int(t) for t in targets]), resp_p=22, proto=TCP,
                service="ssh", **o)
        g.fact("horizontal_scan", host, "tcp/22", ts[0], ts[-1],
               f"admin ssh loop: {n} never-resolved servers over {span} s; at most "
               f"{n if span <= 60 else int(60 // (span / (n - 1))) + 1} in any 60 s window (threshold 20)", expected=False)


def decoy_misc(g: Gen, pool: Pool) -> None:
    """A long tunnel to the configured VPN gateway; source port 6667; inbound scanning; QUIC."""
    rng = g.rng
    host = "10.20.21.33"
    t = resolve_then(g, host, at("08:05:00"), "vpn.partner-corp.example", ip2int(VPN_GATEWAY))
    o = g.outcome(1, {"SF": 1}, 50_000_000, 200_000_000, 1.0)
    o["dur"][:] = 6 * 3600 * US
    g.conns(1, ts=t, orig_h=host, resp_h=VPN_GATEWAY, resp_p=443, proto=TCP, service="ssl", **o)
    g.fact("long_connection", host, f"{VPN_GATEWAY}:443", t, t + o["dur"][0], "6 h to the configured VPN gateway",
           expected=False)
    host, peer = "10.20.16.200", pool.take(1)
    t = resolve_then(g, host, at("09:12:00"), "www.salvenor.com", peer)
    o = g.outcome(1, {"SF": 1}, 900, 20000, 2.0)
    g.conns(1, ts=t, orig_h=host, orig_p=6667, resp_h=peer, resp_p=443, proto=TCP, service="ssl", **o)
    g.fact("c2_port", host, "source port 6667", t, t, "ephemeral source port 6667 to a resolved :443", expected=False)
    scanners = pool.take(60)
    ts = spread(at("03:12:00"), at("03:12:50"), 60)
    o = g.outcome(60, {"S0": 1})
    g.conns(60, ts=ts, orig_h=scanners, orig_p=rng.integers(1024, 65536, 60), resp_h="10.20.2.10", resp_p=23,
            proto=TCP, **o)
    for det in ("horizontal_scan", "vertical_scan", "off_hours"):
        g.fact(det, "10.20.2.10", "inbound scanning", ts[0], ts[-1], "60 external scanners hit tcp/23 in 50 s at night "
               "(plus all-day internet scanning of 10.20.2.0/24): the internal host is the target", expected=False)
    g.fact("non_web_on_web_port", "*", "udp/443 quic,ssl", at("06:30"), at("21:30"),
           "QUIC (service 'quic,ssl') from many clients to resolved web servers", expected=False)


# -- beacons (planted and look-alikes) ---------------------------------------------------------------

def jittered(rng, t0: int, t1: int, lo: float, hi: float, missed: float) -> np.ndarray:
    """Check-in times from t0 to t1: a uniform lo..hi s sleep between them; ``missed`` of the
    check-ins are lost (the host was busy, the packet dropped): the next one comes a sleep later."""
    n = int((t1 - t0) / (lo * US)) + 2
    ts = t0 + np.cumsum(rng.uniform(lo, hi, n) * US).astype(np.int64)
    ts = ts[ts <= t1]
    return ts[rng.random(len(ts)) >= missed]


def beacon_conns(g: Gen, host: str, ts, ips, port: int, svc: str, ob: int, rb: int, udp=False) -> None:
    n = len(ts)
    rng = g.rng
    o = g.outcome(n, {"SF": 1}, ob, rb, 0.3, udp=udp)
    o["ob"] = (ob * rng.uniform(0.95, 1.05, n)).astype(np.int64)
    o["rb"] = (rb * rng.uniform(0.9, 1.1, n)).astype(np.int64)
    o["op"], o["rp"] = (1, 1) if udp else (4 + o["ob"] // 1400, 3 + o["rb"] // 1400)
    g.conns(n, ts=ts, orig_h=host, resp_h=ips, resp_p=port, proto=UDP if udp else TCP, service=svc, **o)


def resolved_every(g: Gen, host: str, ts, name: str, ips, every: int) -> None:
    """The host looks ``name`` up before its first connection and again every ``every`` s."""
    looks = np.arange(ts[0] - 2 * US, ts[-1], every * US)
    g.lookups(host, looks, [name] * len(looks), "A", [[int2ip(x) for x in ips]] * len(looks), ttl=every)


def plant_beacons(g: Gen, pool: Pool) -> None:
    """beacon: a TLS implant behind a rotating CDN name (uniform 200-350 s, 5 % missed) and an
    HTTP implant calling a hard-coded address every 600 s +- 10 %; both while the PC is on."""
    rng = g.rng
    host, name, ips = "10.20.17.23", "cdn-sync.velmora.net", pool.take(3)
    ts = jittered(rng, at("07:05:00"), at("20:55:00"), 200, 350, 0.05)
    resolved_every(g, host, ts, name, ips, 3600)
    beacon_conns(g, host, ts, ips[rng.integers(0, 3, len(ts))], 443, "ssl", 620, 1500)
    g.fact("beacon", host, name, ts[0], ts[-1], f"{len(ts)} TLS check-ins to a name on 3 rotating addresses, "
           "uniform 200-350 s sleep, 5 % missed")
    host, ip = "10.20.22.140", pool.take(1)
    ts = jittered(rng, at("07:00:00"), at("21:00:00"), 540, 660, 0.05)
    beacon_conns(g, host, ts, ip, 80, "http", 310, 220)
    g.fact("beacon", host, int2ip(ip[0]), ts[0], ts[-1], f"{len(ts)} HTTP check-ins to a hard-coded address, "
           "every 600 s +- 10 %")
    g.fact("rare_destination", host, int2ip(ip[0]), ts[0], ts[-1], "same C2 address (never resolved)", secondary=True)


def decoy_periodic(g: Gen, pool: Pool) -> None:
    """Periodic by design: an NTP client (64-1024 s polls), Windows telemetry every 15 min;
    and a browser visiting one news site irregularly all day."""
    rng = g.rng
    host, ntp = "10.20.19.88", pool.take(1)
    gaps = np.minimum(64 * 2.0 ** np.arange(60), 1024.0) * rng.uniform(0.97, 1.03, 60)  # ntpd: 64 s doubling to 1024 s
    ts = at("07:00:00") + np.cumsum(gaps * US).astype(np.int64)
    ts = ts[ts <= at("21:00:00")]
    resolved_every(g, host, ts, "ntp.ubuntu.com", ntp, 3600)
    beacon_conns(g, host, ts, ntp, 123, "ntp", 48, 48, udp=True)
    g.fact("beacon", host, "ntp.ubuntu.com", ts[0], ts[-1], "NTP client polling every 64-1024 s: suppressed "
           "(periodic by design)", expected=False)
    host, name, ips = "10.20.20.15", "settings-win.data.microsoft.com", pool.take(2)
    ts = jittered(rng, at("07:10:00"), at("20:50:00"), 870, 930, 0.0)
    resolved_every(g, host, ts, name, ips, 3600)
    beacon_conns(g, host, ts, ips[rng.integers(0, 2, len(ts))], 443, "ssl", 2200, 5400)
    g.fact("beacon", host, name, ts[0], ts[-1], "Windows telemetry every 15 min: suppressed (periodic_domains)",
           expected=False)
    host, name, ips = "10.20.18.33", "www.ostravel-news.com", pool.take(2)
    visits = np.sort(at("07:30:00") + rng.integers(0, 13 * 3600 * US, 70))
    g.lookups(host, visits - 2 * US, [name] * len(visits), "A", [[int2ip(x) for x in ips]] * len(visits))
    per = rng.integers(2, 9, len(visits))
    ts = np.repeat(visits, per) + (rng.exponential(4, per.sum()) * US).astype(np.int64)
    o = g.outcome(len(ts), {"SF": 1}, 900, 40000, 3.0)
    g.conns(len(ts), ts=ts, orig_h=host, resp_h=ips[rng.integers(0, 2, len(ts))], resp_p=443, proto=TCP,
            service="ssl", **o)
    g.fact("beacon", host, name, int(ts.min()), int(ts.max()), "a browser visiting one site 70 times at "
           "random, 2-8 connections per visit", expected=False)


# -- assembly -------------------------------------------------------------------------------------

def ndns(g: Gen) -> int:
    return sum(len(p["ts"]) for p in g.dns_parts)


def generate(conn_rows: int, dns_rows: int, seed: int) -> Gen:
    """All rows, planted first, then background sized so the totals are exact."""
    g = Gen(PLANT_SEED)  # plants and the address pool do not depend on --seed or the sizes
    pool = Pool(g.rng, 60_000 + conn_rows // 8)
    plant_mail(g, pool)
    plant_scans(g)
    plant_outbound(g, pool)
    plant_channels(g, pool)
    plant_night(g, pool)
    decoy_mail_server(g, pool)
    decoy_browser(g, pool)
    decoy_ftp(g)
    decoy_backscatter(g, pool)
    decoy_thresholds(g)
    decoy_misc(g, pool)
    plant_beacons(g, pool)
    decoy_periodic(g, pool)
    g.rng = np.random.default_rng(seed)  # the background
    mail_out(g, pool, max(10, conn_rows // 500))
    ntp_sync(g, pool, max(4, conn_rows // 5000))
    dns_left = dns_rows - ndns(g)
    n_other = int(dns_left * 0.22)
    n_sessions = int(np.ceil((dns_left - n_other) / 1.5))
    if n_sessions < 50 or conn_rows - g.nconn < dns_left + 2000:
        raise SystemExit(f"--conn-rows {conn_rows} / --dns-rows {dns_rows} leave no room for background traffic "
                         f"(planted rows: {g.nconn} conn, {ndns(g)} dns); try --small or larger values")
    net = Net(g, int(np.clip(n_sessions // 30, 300, 8000)), pool)
    other_dns(g, net, n_other)
    inbound(g, pool, int(conn_rows * 0.025), int(conn_rows * 0.03), int(conn_rows * 0.005))
    infra(g, net, int(conn_rows * 0.2))
    sessions(g, net, n_sessions, dns_rows - ndns(g) - n_sessions, conn_rows)
    return g


def finalize(g: Gen) -> tuple[dict, dict, int]:
    """Concatenate; order conn rows as Zeek writes them (at connection removal); give uids."""
    conn = {k: np.concatenate([p[k] for p in g.conn_parts]) for k in CONN_COLS}
    dns = {k: np.concatenate([p[k] for p in g.dns_parts]) for k in DNS_COLS}
    g.conn_parts, g.dns_parts = [], []
    closed = np.isin(conn["state"], [ST[s] for s in ("SF", "REJ", "RSTO", "RSTR")])
    linger = np.where(conn["proto"] == TCP, np.where(closed, 5, 300), 60) * US  # Zeek's removal delays
    written = conn["ts"] + np.maximum(conn["dur"], 0) + linger
    order = np.lexsort((conn["ts"], written))
    conn = {k: v[order] for k, v in conn.items()}
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    dns["ref"] = where[dns["ref"]]
    dorder = np.lexsort((dns["ts"], dns["ts"] + np.maximum(dns["rtt"], 0)))
    dns = {k: v[dorder] for k, v in dns.items()}
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
    raw = np.empty((len(order), 18), np.uint8)
    raw[:, 0] = ord("C")
    raw[:, 1:] = alphabet[g.rng.integers(0, 62, (len(order), 17), dtype=np.uint8)]
    n = len(order)
    conn["uid"] = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(np.arange(0, 18 * n + 1, 18, dtype=np.int32)),
                                                         pa.py_buffer(raw.tobytes())])
    dns["uid"] = conn["uid"].take(pa.array(dns["ref"]))
    return conn, dns, int(written.max())


# -- formatting (vectorised with Arrow compute) ----------------------------------------------------

def s_time(us: np.ndarray) -> pa.Array:
    """Zeek's %.6f for times and intervals; negative (unset) -> null."""
    mask = us < 0
    u = np.maximum(us, 0)
    sec = pc.cast(pa.array(u // US), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(u % US), pa.string()), 6, "0")
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), pc.binary_join_element_wise(sec, frac, "."))


def s_int(a: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(a < 0), pa.scalar(None, pa.string()), pc.cast(pa.array(a), pa.string()))


def s_ip(a: np.ndarray) -> pa.Array:
    u, inv = np.unique(a, return_inverse=True)
    return pa.array([f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}" for x in u.tolist()]).take(pa.array(inv))


def s_vocab(items, codes: np.ndarray, unset0=True) -> pa.Array:
    arr = pa.array([None if (unset0 and i == 0) else str(v) for i, v in enumerate(items)], pa.string())
    return arr.take(pa.array(codes))


def s_bool(a: np.ndarray, t="T", f="F") -> pa.Array:
    return pc.if_else(pa.array(a.astype(bool)), t, f)


def json_num(s: pa.Array) -> pa.Array:
    """Shortest form of a %.6f number as Zeek's JSON writer prints doubles (1.500000 -> 1.5)."""
    s = pc.replace_substring_regex(s, r"0+$", "")
    return pc.replace_substring_regex(s, r"\.$", ".0")


def tsv_lines(cols: list[pa.Array]) -> bytes:
    cols = [pc.fill_null(c, "-") for c in cols]
    line = pc.binary_join_element_wise(*cols, "\t")
    return _buffer(pc.binary_join_element_wise(line, pa.scalar(""), "\n"))


def _buffer(arr: pa.Array) -> bytes:
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + len(arr) + 1]
    return arr.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]


def header(path: str, fields: list[str], types: list[str], opened: int) -> bytes:
    return ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
            f"#path\t{path}\n#open\t{zeek_stamp(opened)}\n#fields\t" + "\t".join(fields) +
            "\n#types\t" + "\t".join(types) + "\n").encode()


def zeek_stamp(us: int) -> str:
    return dt.datetime.fromtimestamp(us // US, dt.timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")


def conn_columns(g: Gen, c: dict) -> dict[str, pa.Array]:
    internal = lambda a: (a >> 16) == 0x0A14  # noqa: E731  (10.20.0.0/16)
    proto, state = c["proto"], c["state"]
    hdr_o = np.where(proto == TCP, np.where(np.isin(state, [ST["S0"], ST["REJ"]]), 60, 52), 28)
    hdr_r = np.where(proto == TCP, np.where(state == ST["REJ"], 40, 52), 28)
    out = {
        "ts": s_time(c["ts"]), "uid": c["uid"], "id.orig_h": s_ip(c["orig_h"]), "id.orig_p": s_int(c["orig_p"]),
        "id.resp_h": s_ip(c["resp_h"]), "id.resp_p": s_int(c["resp_p"]),
        "proto": pa.array(PROTOS).take(pa.array(proto)), "service": s_vocab(g.service.items, c["service"]),
        "duration": s_time(c["dur"]), "orig_bytes": s_int(c["ob"]), "resp_bytes": s_int(c["rb"]),
        "conn_state": pa.array(STATES).take(pa.array(state)),
        "local_orig": internal(c["orig_h"]), "local_resp": internal(c["resp_h"]),
        "missed_bytes": pa.array(["0"] * len(proto)), "history": s_vocab(g.history.items, c["hist"]),
        "orig_pkts": s_int(c["op"]), "orig_ip_bytes": s_int(np.maximum(c["ob"], 0) + hdr_o * c["op"]),
        "resp_pkts": s_int(c["rp"]), "resp_ip_bytes": s_int(np.maximum(c["rb"], 0) + hdr_r * c["rp"]),
    }
    return out


def conn_tsv(cols: dict) -> bytes:
    order = [cols[f] if f not in ("local_orig", "local_resp") else s_bool(cols[f]) for f in CONN_FIELDS[:-1]]
    return tsv_lines(order + [pa.nulls(len(cols["ts"]), pa.string())])


QUOTED = {"uid", "id.orig_h", "id.resp_h", "proto", "service", "conn_state", "history"}


def conn_json(cols: dict) -> bytes:
    frags = []
    for f in CONN_FIELDS[:-1]:  # tunnel_parents is always unset: omitted
        v = cols[f]
        if f in ("local_orig", "local_resp"):
            v = s_bool(v, "true", "false")
        elif f in ("ts", "duration"):
            v = json_num(v)
        elif f in QUOTED:
            v = pc.binary_join_element_wise(pa.scalar('"'), v, pa.scalar('"'), "")
        frags.append(pc.binary_join_element_wise(pa.scalar(f'"{f}":'), v, ""))
    body = pc.binary_join_element_wise(*frags, ",", null_handling="skip")
    line = pc.binary_join_element_wise(pa.scalar("{"), body, pa.scalar("}\n"), "")
    return _buffer(line)


def dns_tsv(g: Gen, d: dict) -> bytes:
    n = len(d["ts"])
    answered = d["rcode"] >= 0
    qnames = {v: k for k, v in QTYPES.items()}
    ans = [(",".join(a) if a else None, ",".join(f"{t:.6f}" for t in ttl) if ttl else None) for a, ttl in g.answers.items]
    rname = np.array([RCODES.get(int(r), "-") for r in range(4)])
    cols = [s_time(d["ts"]), d["uid"], s_ip(d["orig_h"]), s_int(d["orig_p"]), s_ip(d["resp_h"]),
            pa.array(["53"] * n), pa.array(["udp"] * n), s_int(d["trans_id"]), s_time(d["rtt"]),
            s_vocab(g.names.items, d["query"], unset0=False), pa.array(["1"] * n), pa.array(["C_INTERNET"] * n),
            s_int(d["qtype"]), pa.array([qnames.get(i) for i in range(256)], pa.string()).take(pa.array(d["qtype"])),
            s_int(d["rcode"]), pc.if_else(pa.array(answered), pa.array(rname).take(pa.array(np.maximum(d["rcode"], 0))),
                                          pa.scalar(None, pa.string())),
            s_bool(d["aa"] & answered), pa.array(["F"] * n), pa.array(["T"] * n), s_bool(answered),
            pa.array(["0"] * n), pa.array([a for a, _ in ans], pa.string()).take(pa.array(d["answers"])),
            pa.array([t for _, t in ans], pa.string()).take(pa.array(d["answers"])), pa.array(["F"] * n)]
    return tsv_lines(cols)


# -- files ---------------------------------------------------------------------------------------

CHUNK = 250_000


def write_conn(g: Gen, conn: dict, outdir: str, closed: int) -> None:
    n = len(conn["ts"])
    with open(os.path.join(outdir, "conn.log"), "wb") as tsv, open(os.path.join(outdir, "conn.json"), "wb") as js:
        tsv.write(header("conn", CONN_FIELDS, CONN_TYPES, START * US))
        for lo in range(0, n, CHUNK):
            part = {k: v[lo:lo + CHUNK] for k, v in conn.items()}
            cols = conn_columns(g, part)
            tsv.write(conn_tsv(cols))
            js.write(conn_json(cols))
        tsv.write(f"#close\t{zeek_stamp(closed)}\n".encode())


def write_dns(g: Gen, dns: dict, outdir: str, closed: int) -> None:
    n = len(dns["ts"])
    with open(os.path.join(outdir, "dns.log"), "wb") as tsv:
        tsv.write(header("dns", DNS_FIELDS, DNS_TYPES, START * US))
        for lo in range(0, n, CHUNK):
            tsv.write(dns_tsv(g, {k: v[lo:lo + CHUNK] for k, v in dns.items()}))
        tsv.write(f"#close\t{zeek_stamp(closed)}\n".encode())


CONFIG = f'''# zeekwatch configuration for the dataset written by scripts/gen_logs.py
# (use: zeekwatch --config zeekwatch.toml analyze conn.log dns.log)

[networks]
internal = {json.dumps(INTERNAL)}
# the site's mail server: its bursts of MX lookups and SMTP deliveries are its job
mail_servers = ["{MAIL_SERVER}"]
# the domain controllers answer the clients' DNS
dns_servers = {json.dumps(DCS)}
# remote-access (VPN) clients: exempt from off_hours
vpn = ["{VPN_SEGMENT}"]
# a partner's VPN concentrator: long tunnels to it are expected
vpn_gateways = ["{VPN_GATEWAY}"]

[time]
timezone = "{TZ}"
'''


def source_digest() -> str:
    """Identifies this generator's version: a cache of its output is stale when this changes."""
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def write_truth(g: Gen, outdir: str, args: dict, conn_rows: int, dns_rows: int, closed: int) -> None:
    entries = sorted(g.truth, key=lambda e: (not e["expected"], e["secondary"], e["ts"], e["detector"]))
    for i, e in enumerate(entries, 1):
        e["id"] = f"{'P' if e['expected'] else 'D'}{i:02d}"
    meta = {
        "generator": "scripts/gen_logs.py", "generator_sha256": source_digest(), "args": args, "conn_rows": conn_rows, "dns_rows": dns_rows,
        "start": iso(START * US), "end": iso((START + 86400) * US), "closed": iso(closed), "timezone": TZ,
        "networks": {"internal": INTERNAL, "mail_servers": [MAIL_SERVER], "dns_servers": DCS,
                     "vpn": [VPN_SEGMENT], "vpn_gateways": [VPN_GATEWAY], "dmz": list(DMZ)},
        "matching": "a finding matches an entry when detector and host are equal ('*' = any host); "
                    "expected=true, secondary=false entries are the recall set; secondary entries are "
                    "findings that are also right (they do not count against precision); expected=false "
                    "entries are decoys that must not be flagged",
        "not_planted": {"new_listener": "needs a known-services baseline (an earlier run or config); "
                                        "one day of data has none, so nothing is planted",
                        "ids_alert": "needs Suricata EVE input", "unusual_port": "only as secondary of plants",
                        "anomaly": "no ground truth for pattern-less hunting"},
        "background": "no internal host outside the VPN segment starts a connection 22:00-06:00 local except "
                      "the off_hours plant; every external address a client contacts was resolved by it; "
                      "outbound ports are 53/80/123/443 (and 25 from the mail server); nothing lasts 1 h",
    }
    with open(os.path.join(outdir, "truth.json"), "w") as f:
        json.dump({"meta": meta, "entries": entries}, f, indent=1)
        f.write("\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--conn-rows", type=int, default=2_000_000)
    ap.add_argument("--dns-rows", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--small", action="store_true", help=f"preset: {SMALL['conn_rows']} conn / {SMALL['dns_rows']} dns rows")
    ap.add_argument("--quiet", "-q", action="store_true")
    a = ap.parse_args(argv)
    if a.small:
        a.conn_rows, a.dns_rows = SMALL["conn_rows"], SMALL["dns_rows"]
    t0 = time.perf_counter()
    os.makedirs(a.outdir, exist_ok=True)
    g = generate(a.conn_rows, a.dns_rows, a.seed)
    conn, dns, closed = finalize(g)
    write_conn(g, conn, a.outdir, closed)
    write_dns(g, dns, a.outdir, closed)
    with open(os.path.join(a.outdir, "zeekwatch.toml"), "w") as f:
        f.write(CONFIG)
    args = {"conn_rows": a.conn_rows, "dns_rows": a.dns_rows, "seed": a.seed}
    write_truth(g, a.outdir, args, len(conn["ts"]), len(dns["ts"]), closed)  # last: marks a complete dataset
    if not a.quiet:
        print(f"{a.outdir}: {len(conn['ts']):,} conn rows, {len(dns['ts']):,} dns rows, "
              f"{len(g.truth)} truth entries in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
