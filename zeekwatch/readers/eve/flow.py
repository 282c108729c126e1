"""Suricata EVE ``flow`` events → Zeek-like conn rows.

Differences from Zeek's conn.log that a reader of the table should know:

- ``orig_bytes`` / ``resp_bytes`` are Suricata's ``bytes_toserver`` / ``bytes_toclient``, which
  count whole packets (IP and transport headers included); Zeek counts payload bytes only
  (its ``*_ip_bytes`` are the closer match). Packet counts are the same notion.
- ``ts`` is ``flow.start`` and ``duration`` is ``flow.end - flow.start``.
- ``uid`` is Suricata's ``flow_id`` as text, so alert, flow and app-layer rows of one flow join.
- ``service`` is ``app_proto`` with Suricata's names turned into Zeek's where they differ
  (tls → ssl, dcerpc → dce_rpc, krb5 → krb); "failed"/"unknown" become NULL.
- ``conn_state`` is derived from the TCP flags each side sent (``tcp.tcp_flags_ts`` /
  ``tcp_flags_tc``) with Zeek's definitions (S0, REJ, SF, S1, RSTO, ...); without flags from
  ``flow.state`` ("new" without a reply → S0, "established" → S1, "closed" → SF). UDP is SF
  with packets both ways, S0 with the originator's only (Zeek's rule); ICMP is OTH as in Zeek.
- ICMP follows Zeek: ``orig_p`` = ICMP type, ``resp_p`` = ICMP code.
"""

from __future__ import annotations

from zeekwatch.readers.eve.values import Common, as_int, as_str

FIN, SYN, RST = 0x01, 0x02, 0x04
CONN_COLUMNS = ("ts", "end", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "service",
                "orig_bytes", "resp_bytes", "conn_state", "orig_pkts", "resp_pkts", "community_id",
                "sensor")  # the order of ``conn_row``'s tuple; "end" becomes duration
SERVICE_NAMES = {"tls": "ssl", "dcerpc": "dce_rpc", "krb5": "krb", "failed": None, "unknown": None}


def service(app_proto) -> str | None:
    name = as_str(app_proto)
    if name is None:
        return None
    name = name.lower()
    return SERVICE_NAMES.get(name, name)


def _flags(tcp: dict, key: str) -> int | None:
    value = tcp.get(key)
    if not isinstance(value, str):
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def _tcp_state(orig: int, resp: int) -> str:
    if orig & SYN:
        if not resp & SYN:
            if resp & RST:
                return "REJ"
            if orig & RST:
                return "RSTOS0"
            return "SH" if orig & FIN else "S0"
        if orig & RST:
            return "RSTO"
        if resp & RST:
            return "RSTR"
        if orig & FIN and resp & FIN:
            return "SF"
        if orig & FIN:
            return "S2"
        return "S3" if resp & FIN else "S1"
    if resp & SYN:
        if resp & RST:
            return "RSTRH"
        return "SHR" if resp & FIN else "OTH"
    return "OTH"


def conn_state(proto: str | None, flow: dict, tcp: dict | None, pkts_ts, pkts_tc) -> str | None:
    if proto == "icmp":
        return "OTH"
    if proto == "tcp":
        if isinstance(tcp, dict):
            orig, resp = _flags(tcp, "tcp_flags_ts"), _flags(tcp, "tcp_flags_tc")
            if orig is not None or resp is not None:
                return _tcp_state(orig or 0, resp or 0)
        state = flow.get("state")
        if state == "new":
            return "S0" if not pkts_tc else "OTH"
        return {"established": "S1", "closed": "SF"}.get(state)
    if pkts_ts and pkts_tc:
        return "SF"
    if pkts_ts:
        return "S0"
    return "SHR" if pkts_tc else None


def conn_row(event: dict, c: Common) -> tuple:
    flow = event.get("flow")
    flow = flow if isinstance(flow, dict) else {}
    pkts_ts, pkts_tc = as_int(flow.get("pkts_toserver")), as_int(flow.get("pkts_toclient"))
    return (
        as_str(flow.get("start")) or c.ts, as_str(flow.get("end")), c.uid, c.src_ip, c.src_port, c.dest_ip,
        c.dest_port, c.proto, service(event.get("app_proto")),
        as_int(flow.get("bytes_toserver")), as_int(flow.get("bytes_toclient")),
        conn_state(c.proto, flow, event.get("tcp"), pkts_ts, pkts_tc), pkts_ts, pkts_tc,
        c.community_id, as_str(event.get("host")),
    )
