"""Community ID v1 of each finding's evidence, so a SIEM can pivot from a finding to the Zeek and
Suricata records of the same flows.

A finding's evidence is a list of ``uids``: Zeek uids, Suricata flow ids as text, or (ids_alert)
community ids already. Each is looked up in the run's ``conn`` and ``alert`` tables; the
record's own ``community_id`` is used when the sensor wrote one, else it is computed from the
5-tuple: TCP, UDP and SCTP by ``readers.flow_ids.community_id`` (the spec's hash of the packed
tuple, ~3 µs a flow; on DuckDB by SQL over the whole evidence at once), ICMP by ``_icmp`` with
the type pairings of the ``communityid`` package (the reference implementation, which knows
every ICMP/ICMPv6 type pairing; ICMP as Zeek logs it: orig_p = type, resp_p = code). The
package itself takes ~160 µs a flow (it re-parses each address several times): on a noisy
network's 100 k evidence flows that was 16 s, more than the whole detection step. Ours and
the package agree on every tuple (``tests/unit/engine/test_community.py``, property tests).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
import struct

import communityid
from communityid import icmp, icmp6
import duckdb
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
        return _icmp(v6, orig_h, int(orig_p), resp_h, int(resp_p))
    except (ValueError, communityid.Error):
        return None


def _icmp(v6: bool, orig_h: str, mtype: int, resp_h: str, mcode: int) -> str | None:
    """What the package's ``calc(make_icmp[6](...))`` gives (``package_icmp``), without its
    ~140 µs a flow: its own type pairings, its order (a one-way type is never flipped) and
    its packing (an ICMPv6 number follows the originator's family, as there)."""
    try:
        oa, ra = _packed(orig_h), _packed(resp_h)
    except (OSError, ValueError, TypeError):
        return None
    if not (0 <= mtype <= 0xFFFF and 0 <= mcode <= 0xFFFF):
        return None
    sport, dport, one_way = (icmp6 if v6 else icmp).get_port_equivalents(mtype, mcode)
    if not (one_way or oa < ra or (oa == ra and sport < dport)):
        oa, ra, sport, dport = ra, oa, dport, sport
    packed = b"\0\0" + oa + ra + struct.pack("!BxHH", 58 if v6 else 1, sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(packed).digest()).decode()


def package_icmp(orig_h: str, orig_p, resp_h: str, resp_p) -> str | None:
    """The reference: the ``communityid`` package's id of an ICMP flow as Zeek logs it."""
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
    """Set ``community_ids`` (sorted, distinct) on every candidate from its evidence ``uids``.
    On DuckDB set-wise (``_attach_duckdb``); elsewhere (Spark) row by row in Python."""
    if isinstance(con, duckdb.DuckDBPyConnection):
        _attach_duckdb(con, candidates)
    else:
        _attach_rows(con, candidates)


def _attach_rows(con, candidates: list[Finding]) -> None:
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


# -- DuckDB: the same, set-wise -----------------------------------------------------------------
# The evidence records: ``cid`` the sensor's id (NULL when it wrote none); ``todo`` when it has
# to be computed from a complete tuple (``compute``'s first test).
_EVIDENCE = """
CREATE OR REPLACE TEMP TABLE zw_ev AS
SELECT *, (cid IS NULL OR cid = '') AND coalesce(proto <> '' AND orig_h <> '' AND resp_h <> '',
                                                 false) AS todo
FROM (SELECT uid, community_id AS cid, orig_h, orig_p, resp_h, resp_p, proto FROM conn
      WHERE uid IN (SELECT u FROM zw_cand_uids)
      UNION ALL
      SELECT CAST(flow_id AS VARCHAR), community_id, orig_h, orig_p, resp_h, resp_p, proto
      FROM alert WHERE CAST(flow_id AS VARCHAR) IN (SELECT u FROM zw_cand_uids)) x
"""

# Community ID v1 (seed 0) of a TCP/UDP/SCTP tuple, as ``flow_ids.community_id``: the smaller
# (address, port) side first, then the packed seed, addresses, protocol number and ports. In two
# statements: the join only on the addresses (a condition across both packed columns let the
# optimizer join the two address tables first, a cross product), then the hash.
_PORTED_JOIN = """
CREATE OR REPLACE TEMP TABLE zw_ported_in AS
SELECT e.uid, e.orig_p, e.resp_p, e.n, o.p AS op, r.p AS rp
FROM (SELECT *, CASE lower(proto) WHEN 'tcp' THEN 6 WHEN 'udp' THEN 17 ELSE 132 END AS n
      FROM zw_ev WHERE todo AND lower(proto) IN ('tcp', 'udp', 'sctp')
      AND orig_p BETWEEN 0 AND 65535 AND resp_p BETWEEN 0 AND 65535) e
JOIN zw_packed o ON o.a = e.orig_h JOIN zw_packed r ON r.a = e.resp_h
"""
_PORTED_SQL = """
CREATE OR REPLACE TEMP TABLE zw_ported AS
SELECT uid, '1:' || to_base64(unhex(sha1(CASE
    WHEN op > rp OR (op = rp AND orig_p > resp_p)
    THEN unhex('0000') || rp || op || unhex(printf('%02x00%04x%04x', n, resp_p, orig_p))
    ELSE unhex('0000') || op || rp || unhex(printf('%02x00%04x%04x', n, orig_p, resp_p))
    END))) AS cid
FROM zw_ported_in WHERE octet_length(op) = octet_length(rp)
"""

_PER_CANDIDATE = """
WITH found AS (SELECT uid, cid FROM zw_ev WHERE cid IS NOT NULL AND cid <> ''
               UNION ALL SELECT uid, cid FROM zw_ported
               UNION ALL SELECT uid, cid FROM zw_other_cids)
SELECT i, list_sort(list_distinct(list(cid))) FROM (
    SELECT c.i, f.cid FROM zw_cand_uids c JOIN found f ON f.uid = c.u
    UNION ALL SELECT i, u FROM zw_cand_uids WHERE starts_with(u, '1:')) x
GROUP BY i
"""


def _attach_duckdb(con, candidates: list[Finding]) -> None:
    """``attach`` in a few queries: the evidence records looked up once, the TCP/UDP/SCTP ids
    hashed by DuckDB (addresses packed once per distinct address, by ``_packed``), the rest
    (ICMP) by ``compute``; each candidate's ids gathered and sorted by one GROUP BY."""
    owner, uids = [], []
    for i, c in enumerate(candidates):
        owner += [i] * len(c.uids)
        uids += c.uids
        c.community_ids = []
    if not uids:
        return
    con.register("zw_cand_uids", pa.table({"i": pa.array(owner, pa.int32()),
                                           "u": pa.array(list(map(str, uids)), pa.string())}))
    try:
        con.execute(_EVIDENCE)
        con.register("zw_packed", _packed_table(con))
        con.register("zw_other_cids", _other_cids(con))
        con.execute(_PORTED_JOIN)
        con.execute(_PORTED_SQL)
        for i, ids in con.execute(_PER_CANDIDATE).fetchall():
            candidates[i].community_ids = ids
    finally:
        for name in ("zw_cand_uids", "zw_packed", "zw_other_cids"):
            con.unregister(name)
        for name in ("zw_ev", "zw_ported_in", "zw_ported"):
            con.execute(f"DROP TABLE IF EXISTS {name}")


def _packed_table(con) -> pa.Table:
    """Each address of a TCP/UDP/SCTP record to hash, packed (NULL when it is not one)."""
    rows = con.execute("SELECT DISTINCT a FROM (SELECT orig_h AS a FROM zw_ev WHERE todo "
                       "UNION ALL SELECT resp_h FROM zw_ev WHERE todo)").fetchall()
    addrs = [r[0] for r in rows]
    packed = []
    for a in addrs:
        try:
            packed.append(_packed(a))
        except (OSError, ValueError, TypeError):
            packed.append(None)
    return pa.table({"a": pa.array(addrs, pa.string()), "p": pa.array(packed, pa.binary())})


def _other_cids(con) -> pa.Table:
    """Ids of the records ``compute`` hashes in Python: ICMP (the package's type pairings)."""
    rows = con.execute("SELECT uid, proto, orig_h, orig_p, resp_h, resp_p FROM zw_ev WHERE todo "
                       "AND lower(proto) NOT IN ('tcp', 'udp', 'sctp')").fetchall()
    ids = {tuple(t): None for _, *t in rows}  # each distinct tuple once (repeated pings)
    ids = {t: compute(*t) for t in ids}
    out = [(uid, ids[tuple(t)]) for uid, *t in rows]
    out = [(u, c) for u, c in out if c]
    return pa.table({"uid": pa.array([u for u, _ in out], pa.string()),
                     "cid": pa.array([c for _, c in out], pa.string())})
