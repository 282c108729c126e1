"""Community ID v1 of each finding's evidence, so a SIEM can pivot from a finding to the Zeek and
Suricata records of the same flows.

A finding's evidence is a list of ``uids``: Zeek uids, Suricata flow ids as text, or (ids_alert)
community ids already. Each is looked up in the run's ``conn`` and ``alert`` tables; the
record's own ``community_id`` is used when the sensor wrote one, else it is computed from the
5-tuple: TCP, UDP and SCTP by ``readers.flow_ids.community_id`` (the spec's hash of the packed
tuple, ~3 µs a flow), ICMP with the ``communityid`` package (the reference implementation,
which knows every ICMP/ICMPv6 type pairing; ICMP as Zeek logs it: orig_p = type, resp_p =
code). The package takes ~160 µs a flow (it re-parses each address several times): on a
noisy network's 100 k evidence flows that was 16 s, more than the whole detection step. The
two agree on every tuple (``tests/unit/engine/test_community.py``, a property test).
"""

from __future__ import annotations

import ipaddress
import socket

import communityid
import pyarrow as pa

from zeekwatch.finding import Finding
from zeekwatch.readers.flow_ids import community_id

_CID = communityid.CommunityID()
PORTED = {"tcp", "udp", "sctp"}  # computed here; ICMP by the package


def _packed(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)


def _ported(proto: str, orig_h: str, orig_p, resp_h: str, resp_p) -> str | None:
    try:
        oa, ra, op, rp = _packed(orig_h), _packed(resp_h), int(orig_p), int(resp_p)
    except (OSError, ValueError, TypeError):
        return None
    if len(oa) != len(ra) or not (0 <= op <= 0xFFFF and 0 <= rp <= 0xFFFF):
        return None
    return community_id(proto, oa, ra, op, rp)


def compute(proto: str | None, orig_h: str | None, orig_p, resp_h: str | None, resp_p) -> str | None:
    """Community ID v1 (seed 0) of a flow as Zeek logs it; None when the tuple is incomplete
    or not an IP flow (an unknown protocol, an unparsable address)."""
    if not (proto and orig_h and resp_h):
        return None
    proto = proto.lower()
    if proto in PORTED:
        return _ported(proto, orig_h, orig_p, resp_h, resp_p)
    if proto != "icmp" or orig_p is None or resp_p is None:
        return None
    try:
        v6 = ipaddress.ip_address(orig_h).version == 6
        make = communityid.FlowTuple.make_icmp6 if v6 else communityid.FlowTuple.make_icmp
        return _CID.calc(make(orig_h, resp_h, int(orig_p), int(resp_p)))
    except (ValueError, communityid.Error):
        return None


_LOOKUP = """
SELECT uid, community_id, orig_h, orig_p, resp_h, resp_p, proto FROM conn
WHERE uid IN (SELECT u FROM zw_evidence_uids)
UNION ALL
SELECT CAST(flow_id AS VARCHAR) AS uid, community_id, orig_h, orig_p, resp_h, resp_p, proto
FROM alert WHERE CAST(flow_id AS VARCHAR) IN (SELECT u FROM zw_evidence_uids)
"""


def attach(con, candidates: list[Finding]) -> None:
    """Set ``community_ids`` (sorted, distinct) on every candidate from its evidence ``uids``."""
    uids = sorted({str(u) for c in candidates for u in c.uids})
    found: dict[str, set[str]] = {}
    if uids:
        con.register("zw_evidence_uids", pa.table({"u": pa.array(uids, pa.string())}))
        try:
            rows = con.execute(_LOOKUP).fetchall()
        finally:
            con.unregister("zw_evidence_uids")
        for uid, cid, oh, op, rh, rp, proto in rows:
            cid = cid or compute(proto, oh, op, rh, rp)
            if cid:
                found.setdefault(uid, set()).add(cid)
    for c in candidates:
        ids: set[str] = set()
        for u in c.uids:
            u = str(u)
            if u.startswith("1:"):  # ids_alert cites flows by community id already
                ids.add(u)
            ids |= found.get(u, set())
        c.community_ids = sorted(ids)
