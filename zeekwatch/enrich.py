"""The enriched conn table ``cx``: every conn row with the facts detectors test, decided once.

Most detectors ask the same questions of a connection: is the originator internal, is the
responder a mail or DNS server, a special address; did the attempt fail, was it established,
did the originator really initiate it (not backscatter), did the responder answer. Asked
inside every detector query, each question costs a pass over all the rows (string tests on
``conn_state`` and ``history``, a semi-join per address class); on 2 M rows, 14 detectors
spent about 2 s on them. Here they are columns, computed while the rows are loaded:

    t                    epoch seconds of ts (DOUBLE; NULL when ts is)
    orig_<class>         the originator is in the address class (internal, mail, dns,
    resp_<class>         vpn, vpngw: ``nets.NET_CLASSES``); never NULL
    resp_special         the responder is multicast, broadcast, link-local, loopback or
                         unspecified: never a host on the Internet; never NULL
    failed               conn_state says the attempt got no usable answer (NULL without a state)
    established          the connection was answered (see ``established``); never NULL
    initiated            the originator really initiated (a SYN, or no history): not
                         backscatter; never NULL
    answered             the responder answered (conn_state or a SYN-ACK 'h'); never NULL

Address classes come from the ``zw_addr`` table (one row per distinct address, classified
once: IPv4 by integer range tests in SQL, IPv6 in Python), kept up to date as rows arrive
(``classify``). The SQL is plain (joins, CASE, LIKE), so Spark runs it unchanged.
"""

from __future__ import annotations

import pyarrow as pa

from . import schema
from .nets import Nets, ipv4_int
from .sql import sql_list

# Zeek conn_state values of an attempt that got no usable answer. S0: no reply; REJ: refused;
# RSTOS0: originator SYN then RST, no SYN-ACK; SH: originator SYN then FIN, no SYN-ACK.
FAILED_STATES = ("S0", "REJ", "RSTOS0", "SH")
# States that mean the "originator" never sent a SYN: backscatter or mid-stream pickup.
BACKSCATTER_STATES = ("SHR", "RSTRH", "OTH")
# States of a connection the responder answered (SYN-ACK seen or data both ways).
ESTABLISHED_STATES = ("SF", "S1", "S2", "S3", "RSTO", "RSTR")
# IPv4 ranges that are never a host on the Internet: this-network, loopback, link-local,
# multicast, reserved + limited broadcast.
SPECIAL_V4 = [(0, 0x00FFFFFF), (0x7F000000, 0x7FFFFFFF), (0xA9FE0000, 0xA9FEFFFF),
              (0xE0000000, 0xFFFFFFFF)]

FLAGS = ("failed", "established", "initiated", "answered")


def failed(a: str = "c") -> str:
    """SQL: the attempt got no usable answer (NULL when conn_state is NULL)."""
    return f"{a}.conn_state IN {sql_list(FAILED_STATES)}"


def initiated(a: str = "c") -> str:
    """SQL: the originator really initiated (a TCP SYN is in the history, or no history);
    False for backscatter (SYN-ACK/RST sent by a host that never sent a SYN)."""
    return (f"NOT coalesce({a}.proto = 'tcp' AND ({a}.conn_state IN "
            f"{sql_list(BACKSCATTER_STATES)} OR ({a}.history IS NOT NULL AND "
            f"{a}.history NOT LIKE '%S%')), FALSE)")


def established(a: str = "c") -> str:
    """SQL: the connection was answered: conn_state SF, S1, S2, S3, RSTO, RSTR; or a TCP
    history with the originator's SYN (S) and the responder's SYN-ACK (h); or, for records
    without a state (flows from other sensors), responder payload (TCP) or packets (UDP)."""
    return (f"coalesce({a}.conn_state IN {sql_list(ESTABLISHED_STATES)}"
            f" OR ({a}.proto = 'tcp' AND {a}.history LIKE '%S%' AND {a}.history LIKE '%h%')"
            f" OR ({a}.conn_state IS NULL AND (coalesce({a}.resp_bytes, 0) > 0"
            f" OR ({a}.proto <> 'tcp' AND coalesce({a}.resp_pkts, 0) > 0))), FALSE)")


def answered(a: str = "c") -> str:
    """SQL: the responder answered (an established state, or a SYN-ACK 'h' in the history)."""
    return (f"coalesce({a}.conn_state IN {sql_list(ESTABLISHED_STATES)} "
            f"OR {a}.history LIKE '%h%', FALSE)")


def special_expr(col: str) -> str:
    """SQL boolean over an address text: multicast, broadcast, link-local, loopback or
    unspecified (never NULL)."""
    n = ipv4_int(col)
    v4 = " OR ".join(f"{n} BETWEEN {lo} AND {hi}" for lo, hi in SPECIAL_V4)
    low = f"lower({col})"
    v6 = (f"{low} LIKE 'ff__:%' OR {low} LIKE 'fe8_:%' OR {low} LIKE 'fe9_:%' "
          f"OR {low} LIKE 'fea_:%' OR {low} LIKE 'feb_:%' OR {col} IN ('::', '::1')")
    return f"coalesce(({v4}) OR {v6}, FALSE)"


def address_columns(nets: Nets) -> list[str]:
    return list(nets.classes) + ["special"]


def enriched_select(src: str, nets: Nets, epoch=lambda c: f"epoch({c})") -> str:
    """SQL: the rows of ``src`` (conn's schema) with the enrichment columns appended."""
    cols = [f"{epoch('c.ts')} AS t"]
    for name in nets.classes:
        cols.append(f"coalesce(o.{name}, FALSE) AS orig_{name}")
    for name in nets.classes:
        cols.append(f"coalesce(r.{name}, FALSE) AS resp_{name}")
    cols.append("coalesce(r.special, FALSE) AS resp_special")
    cols += [f"{failed()} AS failed", f"{established()} AS established",
             f"{initiated()} AS initiated", f"{answered()} AS answered"]
    names = ", ".join(f"c.{f.name}" for f in schema.CONN)
    return (f"SELECT {names}, {', '.join(cols)} FROM {src} c "
            f"LEFT JOIN zw_addr o ON o.a = c.orig_h LEFT JOIN zw_addr r ON r.a = c.resp_h")


def create_addr_table(con, nets: Nets) -> None:
    cols = ", ".join(f"{n} BOOLEAN" for n in address_columns(nets))
    con.execute(f"CREATE OR REPLACE TABLE zw_addr (a VARCHAR, {cols})")


def classify(con, nets: Nets, addresses_sql: str) -> int:
    """Add the addresses of ``addresses_sql`` (a query with column ``a``) that ``zw_addr``
    does not hold yet, classified; return how many were new."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE zw_new_addr AS
SELECT DISTINCT x.a FROM ({addresses_sql}) x
WHERE x.a IS NOT NULL AND NOT EXISTS (SELECT 1 FROM zw_addr z WHERE z.a = x.a)""")
    v6 = [a for (a,) in con.execute("SELECT a FROM zw_new_addr WHERE a LIKE '%:%'").fetchall()]
    rows = nets.addr6_rows(v6)
    names = list(nets.classes)
    zw_v6 = pa.Table.from_pydict(  # noqa: F841  (scanned by DuckDB by name)
        {n: [r[n] for r in rows] for n in ["a"] + names},
        schema=pa.schema([("a", pa.string())] + [(n, pa.bool_()) for n in names]))
    cols = [f"CASE WHEN x.a LIKE '%:%' THEN coalesce(v6.{n}, FALSE) ELSE {nets.v4_test('x.a', n)} END"
            for n in names]
    cols.append(special_expr("x.a"))
    con.execute(f"INSERT INTO zw_addr SELECT x.a, {', '.join(cols)} FROM zw_new_addr x "
                f"LEFT JOIN zw_v6 v6 ON v6.a = x.a")
    n = con.execute("SELECT count(*) FROM zw_new_addr").fetchone()[0]
    con.execute("DROP TABLE zw_new_addr")
    return n


def addresses_of(src: str) -> str:
    """SQL: the originator and responder addresses of ``src`` as column ``a``."""
    return f"SELECT orig_h AS a FROM {src} UNION ALL SELECT resp_h FROM {src}"
