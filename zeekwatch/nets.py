"""Address classes (internal, mail servers, DNS servers, VPN...) as SQL predicates.

Addresses are text in the normalized tables. Each distinct address is classified once into the
engine's ``zw_addr`` table (``enrich.AddressBook``: IPv4 by integer range tests, IPv6 with
``ipaddress``). Detectors read conn's classes as columns of the enriched rows ``cx``; ``member``
is the semi-join for the other tables.
Both forms are plain SQL that DuckDB and Spark accept.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from zeekwatch.config import Config

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
        try:
            ip = addr if not isinstance(addr, str) else ipaddress.ip_address(addr)
        except ValueError:
            return False
        if ip.version == 4:
            n = int(ip)
            return any(lo <= n <= hi for lo, hi in self.v4)
        return any(ip in net for net in self.v6)


def classes(config: Config) -> dict[str, NetClass]:
    return {name: NetClass.from_cidrs(name, getattr(config.networks, attr))
            for attr, name in NET_CLASSES.items()}


class Nets:
    """Builds SQL predicates for the address classes of one config.

    Classification happens once per distinct address, into the ``zw_addr`` table (a,
    internal, mail, dns, vpn, vpngw, special; see ``enrich``), and ``member`` is a semi-join
    against it, cheap on millions of rows.
    """

    def __init__(self, config: Config):
        self.classes = classes(config)

    def member(self, col: str, name: str) -> str:
        """SQL boolean: ``col`` belongs to class ``name`` (never NULL)."""
        if name not in self.classes:
            raise KeyError(name)
        if not (self.classes[name].v4 or self.classes[name].v6):
            return "FALSE"
        return f"coalesce({col} IN (SELECT a FROM zw_addr WHERE {name}), FALSE)"

    def internal(self, col: str) -> str:
        return self.member(col, "internal")
