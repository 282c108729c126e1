"""Address classes (internal, mail servers, DNS servers, VPN...) as SQL predicates.

Addresses are text in the normalized tables. Each distinct address is classified once into the
engine's ``zw_addr`` table (``enrich.AddressBook``: IPv4 by integer range tests, IPv6 with
``ipaddress``). Detectors read conn's classes as columns of the enriched rows ``cx``; ``member``
is the semi-join for the other tables.
Both forms are plain SQL that DuckDB and Spark accept.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from zeekwatch.config import Config, internal_networks
from zeekwatch.errors import ConfigError

# config.networks attribute -> short name used in SQL (zw_addr columns, cx orig_/resp_ columns)
NET_CLASSES = {
    "internal": "internal", "mail_servers": "mail", "dns_servers": "dns",
    "vpn": "vpn", "vpn_gateways": "vpngw",
}


def ipv4_int(col: str) -> str:
    """SQL: the IPv4 address in ``col`` as an integer (NULL for IPv6/NULL)."""
    parts = [f"CAST(split_part({col}, '.', {i}) AS BIGINT)" for i in (1, 2, 3, 4)]
    expr = f"(({parts[0]} * 256 + {parts[1]}) * 256 + {parts[2]}) * 256 + {parts[3]}"
    return f"(CASE WHEN {col} LIKE '%.%.%.%' AND {col} NOT LIKE '%:%' THEN {expr} END)"


@dataclass
class NetClass:
    name: str
    v4: list[tuple[int, int]]
    v6: list[ipaddress.IPv6Network]

    @classmethod
    def from_cidrs(cls, name: str, cidrs) -> "NetClass":
        v4, v6 = [], []
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            if net.version == 4:
                v4.append((int(net.network_address), int(net.broadcast_address)))
            else:
                v6.append(net)
        return cls(name, v4, v6)

    def contains(self, addr) -> bool:
        """``addr``: text, or an ``ipaddress`` address already parsed."""
        ip = addr if not isinstance(addr, str) else parse_address(addr)
        if ip is None:
            return False
        if ip.version == 4:
            n = int(ip)
            return any(lo <= n <= hi for lo, hi in self.v4)
        return any(ip in net for net in self.v6)


@functools.lru_cache(maxsize=1 << 16)
def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``ipaddress.ip_address(text)``, None when ``text`` is not an address. Memoized:
    triage asks about the same few hosts once per finding (20 k findings, 1 k hosts)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def classes(config: Config) -> dict[str, NetClass]:
    out = {}
    for attr, name in NET_CLASSES.items():
        cidrs = getattr(config.networks, attr)
        if attr == "internal":
            cidrs = internal_networks(config.networks)[0]
        out[name] = NetClass.from_cidrs(name, cidrs)
    return out


def summarize(addresses) -> list[str]:
    """Learned addresses as the /24 (IPv4) and /64 (IPv6) networks that hold them, with how
    many addresses each: ``"10.1.2.0/24 (5 addresses)"`` (for the run summary)."""
    count: dict = {}
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            continue
        net = ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False)
        count[net] = count.get(net, 0) + 1
    return [f"{n} ({c} address{'es' if c > 1 else ''})"
            for n, c in sorted(count.items(), key=lambda x: (x[0].version, x[0]))]


# -- Suricata HOME_NET syntax -------------------------------------------------------------------


def parse_home_net(text: str) -> list[str]:
    """Suricata's address-group syntax as CIDRs: ``"[10.0.0.0/8,!10.9.0.0/16,192.168.1.5]"``,
    nested groups, ``!`` negating an address or a group, ``any``. The result is the included
    networks minus the excluded ones (``ipaddress.address_exclude``), IPv4 and IPv6."""
    items, rest = _group(str(text).strip(), 0)
    if rest != len(str(text).strip()):
        raise ConfigError(f"--home-net: unexpected {str(text).strip()[rest:]!r}")
    nets = _evaluate(items)
    if not nets:
        raise ConfigError(f"--home-net {text!r}: no network left after the negations")
    return [str(n) for n in nets]


def _group(s: str, i: int):
    """Parse a comma list starting at ``i`` (inside or without brackets): items are
    (negated, network or list); returns (items, end index)."""
    items, bracket = [], s.startswith("[", i)
    i += bracket
    while i < len(s):
        while i < len(s) and s[i] in " ,":
            i += 1
        if i < len(s) and s[i] == "]":
            if not bracket:
                raise ConfigError(f"--home-net: unbalanced ']' in {s!r}")
            return items, i + 1
        neg = False
        while i < len(s) and s[i] == "!":
            neg, i = not neg, i + 1
        if i < len(s) and s[i] == "[":
            sub, i = _group(s, i)
            items.append((neg, sub))
            continue
        j = i
        while j < len(s) and s[j] not in ",]":
            j += 1
        items.append((neg, _network(s[i:j].strip())))
        i = j
    if bracket:
        raise ConfigError(f"--home-net: missing ']' in {s!r}")
    return items, i


def _network(tok: str):
    if tok.lower() == "any":
        return [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    if tok.startswith("$"):
        raise ConfigError(f"--home-net: variables ({tok}) are not expanded; give the networks")
    try:
        return [ipaddress.ip_network(tok, strict=False)]
    except ValueError:
        raise ConfigError(f"--home-net: {tok!r} is not an address or CIDR") from None


def _collapse(nets) -> list:
    return [n for v in (4, 6) for n in ipaddress.collapse_addresses([x for x in nets if x.version == v])]


def _evaluate(items) -> list:
    """The networks of a parsed group: the union of its positive items minus the union of
    its negated ones (a negated group is evaluated first, its own negations included)."""
    inc, exc = [], []
    for neg, value in items:
        nets = _evaluate(value) if value and isinstance(value[0], tuple) else list(value)
        (exc if neg else inc).extend(nets)
    exc = _collapse(exc)
    return [part for n in _collapse(inc) for part in _minus(n, [x for x in exc if x.version == n.version])]


def _minus(net, excluded) -> list:
    """``net`` without every network in ``excluded``."""
    parts = [net]
    for x in excluded:
        nxt = []
        for p in parts:
            if x.subnet_of(p) if x.prefixlen >= p.prefixlen else p.subnet_of(x):
                nxt.extend([] if p.subnet_of(x) else p.address_exclude(x))
            else:
                nxt.append(p)
        parts = nxt
    return sorted(parts)


class Nets:
    """Builds SQL predicates for the address classes of one config.

    Classification happens once per distinct address, into the ``zw_addr`` table (a,
    internal, mail, dns, vpn, vpngw, special; see ``enrich``), and ``member`` is a semi-join
    against it, cheap on millions of rows.
    """

    def __init__(self, config: Config):
        self.classes = classes(config)
        # networks.internal "auto": addresses the logs mark local are internal too
        self.auto = internal_networks(config.networks)[1]

    def member(self, col: str, name: str) -> str:
        """SQL boolean: ``col`` belongs to class ``name`` (never NULL)."""
        if name not in self.classes:
            raise KeyError(name)
        if not (self.classes[name].v4 or self.classes[name].v6):
            return "FALSE"
        return f"coalesce({col} IN (SELECT a FROM zw_addr WHERE {name}), FALSE)"

    def internal(self, col: str) -> str:
        return self.member(col, "internal")
