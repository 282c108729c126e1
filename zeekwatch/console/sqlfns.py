"""SQL functions the console's queries use, registered on each SQLite connection it opens."""

from __future__ import annotations

import functools
import ipaddress
import sqlite3

from zeekwatch.console.panels import family
from zeekwatch.timefmt import now_iso


@functools.lru_cache(maxsize=256)
def _network(text: str):
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def _address(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def in_net(address, cidr) -> int:
    """1 when ``address`` is inside ``cidr`` (a network or a single address), else 0. A value
    that is not an address or a network matches nothing (a typo shows an empty console, it
    does not fail the page)."""
    if not address or not cidr:
        return 0
    net, addr = _network(str(cidr)), _address(str(address))
    if net is None or addr is None or addr.version != net.version:
        return 0
    return int(addr in net)


def register(conn: sqlite3.Connection) -> None:
    conn.create_function("zw_in_net", 2, in_net, deterministic=True)
    conn.create_function("zw_family", 1, family, deterministic=True)
    conn.create_function("zw_now", 0, now_iso)
