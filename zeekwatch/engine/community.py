"""Community ID v1 of each finding's evidence, so a SIEM can pivot from a finding to the Zeek and
Suricata records of the same flows.

A finding's evidence is a list of ``uids``: Zeek uids, Suricata flow ids as text, or (ids_alert)
community ids already. Each is looked up in the run's ``conn`` and ``alert`` tables; the
record's own ``community_id`` is used when the sensor wrote one, else it is computed from the
5-tuple with the ``communityid`` package (the reference implementation of the Community ID
spec; ICMP as Zeek logs it: orig_p = type, resp_p = code).
"""

from __future__ import annotations

import ipaddress

import communityid
import pyarrow as pa

from zeekwatch.finding import Finding

_CID = communityid.CommunityID()
PROTOS = {"tcp": communityid.PROTO_TCP, "udp": communityid.PROTO_UDP,
          "icmp": communityid.PROTO_ICMP, "sctp": communityid.PROTO_SCTP}


def compute(proto: str | None, orig_h: str | None, orig_p, resp_h: str | None, resp_p) -> str | None:
    """Community ID v1 (seed 0) of a flow as Zeek logs it; None when the tuple is incomplete
    or not an IP flow (an unknown protocol, an unparsable address)."""
    if not (proto and orig_h and resp_h):
        return None
    try:
        v6 = ipaddress.ip_address(orig_h).version == 6
        number = PROTOS.get(proto.lower())
        if number is None:
            return None
        if number == communityid.PROTO_ICMP:
            if orig_p is None or resp_p is None:
                return None
            make = communityid.FlowTuple.make_icmp6 if v6 else communityid.FlowTuple.make_icmp
            return _CID.calc(make(orig_h, resp_h, int(orig_p), int(resp_p)))
        if orig_p is None or resp_p is None:
            return None
        return _CID.calc(communityid.FlowTuple(number, orig_h, resp_h, int(orig_p), int(resp_p)))
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
