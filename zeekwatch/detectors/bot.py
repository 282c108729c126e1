"""Bots and command-and-control channels: known C2 ports, unusual ports, rare destinations,
and non-web traffic on web ports.

None of these needs a time window: each is a property of the connections in the batch
(a port, a peer, a service), aggregated per entity with t_first/t_last over the evidence.
Timestamps may be NULL (masked or unset); the findings are still reported, with NULL times.

Shared rules (docs/detectors/*.md repeat them per detector):
- *Established*: ``conn_state`` SF, S1, S2, S3, RSTO, RSTR; or a TCP history with the
  originator's SYN (``S``) and the responder's SYN-ACK (``h``); or, for records without a
  state (flows from other sensors), responder payload (TCP) or responder packets (UDP).
  (The ``established``, ``initiated`` and address-class columns of the enriched table ``cx``:
  ``zeekwatch/engine/enrich.py`` defines them once.)
- *Port lists* take ``443`` or ``"6660-6669"`` (TCP) and ``"udp/500"`` / ``"tcp/7000-7001"``.
- *Services* are matched as tokens of the comma-separated ``service`` field ("http,ssl"),
  case-insensitively; a token never matches a longer one ("irc" is not "irc-dcc-data").
- *Special addresses* (multicast, broadcast, link-local, loopback, unspecified) are never
  an "external host".
All SQL is plain (``instr``, ``replace``, ``lower``, ``||``) so Spark runs it unchanged.
"""

from __future__ import annotations

from zeekwatch.detectors.base import (
    Param,
    UIDS_LIMIT,
    VALUES_LIMIT,
    Context,
    Detector,
    has_service,
    in_list,
    only_services,
    register,
    service_known,
    service_token,
)
from zeekwatch.errors import ConfigError

# A passive FTP data connection follows its control connection within the control's
# duration plus this slack (seconds); control connections still open have no duration.
FTP_SLACK = 3600


# -- shared SQL building blocks ------------------------------------------------------------

def port_specs(values, where: str) -> list[tuple[str, int, int]]:
    """Parse a port list (443, "6660-6669", "udp/500") into (proto, lo, hi) ranges."""
    out = []
    for v in values:
        text = str(v).strip().lower()
        proto, _, rng = text.rpartition("/")
        lo, _, hi = rng.partition("-")
        try:
            if isinstance(v, bool):
                raise ValueError
            lo_i = int(lo)
            hi_i = int(hi) if hi else lo_i
        except ValueError:
            lo_i = hi_i = -1
        if (proto or "tcp") not in ("tcp", "udp") or not 0 <= lo_i <= hi_i <= 65535:
            raise ConfigError(f"detectors.{where}: {v!r} is not a port (443), a range "
                              f"(\"6660-6669\") or a proto/port (\"udp/500\")")
        out.append((proto or "tcp", lo_i, hi_i))
    return out


def port_match(specs: list[tuple[str, int, int]], a: str = "c") -> str:
    """SQL boolean: the destination port of ``a`` is in the parsed port list.

    One proto test per protocol and its single ports as one IN list (``proto = 'tcp' AND
    resp_p IN (...)``), not one (proto AND port) term per entry: the same truth value (AND
    distributes over OR, also with NULLs), but unusual_port's 25 common ports tested on
    every connection cost 0.055 s instead of 0.035 (2 M rows, wall on 2 cores)."""
    by_proto: dict[str, list[tuple[int, int]]] = {}
    for proto, lo, hi in specs:
        by_proto.setdefault(proto, []).append((lo, hi))
    terms = []
    for proto, ranges in by_proto.items():
        single = sorted({lo for lo, hi in ranges if lo == hi})
        ports = ([f"{a}.resp_p = {single[0]}"] if len(single) == 1 else
                 [f"{a}.resp_p IN ({', '.join(map(str, single))})"] if single else [])
        ports += [f"{a}.resp_p BETWEEN {lo} AND {hi}" for lo, hi in ranges if lo != hi]
        terms.append(f"({a}.proto = '{proto}' AND ({' OR '.join(ports)}))")
    return "(" + " OR ".join(terms) + ")" if terms else "FALSE"


def _key(a: str = "c") -> str:
    return f"{a}.proto || '/' || CAST({a}.resp_p AS VARCHAR)"


def _n(f: dict, k: str) -> int:
    return int(f.get(k) or 0)


# -- c2_port -------------------------------------------------------------------------------

def _c2_failed(p: dict, ctx: Context) -> tuple[str, str]:
    """CTEs of scan-like failed attempts, and the SQL condition under which a connection
    ``c`` counts: established, or a failed attempt (``count_failed``) that is not part of a
    scan (≥ ``scan_min`` distinct ports of that peer, or distinct peers on that port)."""
    n = int(p["scan_min"])
    # only hosts that touched a C2 port or IRC at all (``cand``) need their failures counted
    ctes = f"""
att AS (
  SELECT c.orig_h, c.resp_h, c.proto, c.resp_p FROM cx c
  WHERE c.proto IN ('tcp', 'udp') AND c.resp_p IS NOT NULL
    AND c.orig_h IN (SELECT orig_h FROM cand) AND c.orig_internal
    AND c.initiated AND NOT c.established),
vscan AS (SELECT orig_h, resp_h FROM att GROUP BY orig_h, resp_h HAVING count(DISTINCT resp_p) >= {n}),
hscan AS (SELECT orig_h, proto, resp_p FROM att GROUP BY orig_h, proto, resp_p
          HAVING count(DISTINCT resp_h) >= {n}),"""
    if not p["count_failed"]:
        return ctes, "c.established"
    return ctes, """(c.established OR (
      NOT EXISTS (SELECT 1 FROM vscan v WHERE v.orig_h = c.orig_h AND v.resp_h = c.resp_h)
      AND NOT EXISTS (SELECT 1 FROM hscan h WHERE h.orig_h = c.orig_h AND h.proto = c.proto
                                             AND h.resp_p = c.resp_p)))"""


def _c2_query(p: dict, ctx: Context) -> str:
    specs = port_specs(p["ports"], "c2_port.ports") + port_specs(p["extra_ports"], "c2_port.extra_ports")
    by_port, irc = port_match(specs), has_service("c.service", ["irc"])
    peer_ok = "NOT c.resp_special" + ("" if p["include_internal_peers"] else " AND NOT c.resp_internal")
    ctes, counts = _c2_failed(p, ctx)
    d = ctx.dialect
    return f"""
WITH cand AS {d.materialized()} (  -- the cheap, selective test first: a C2 port or IRC
  SELECT * FROM cx c
  WHERE c.proto IN ('tcp', 'udp') AND c.resp_p IS NOT NULL AND c.resp_h IS NOT NULL
    AND ({by_port} OR {irc})),
{ctes}
ev AS (
  SELECT c.orig_h AS host, c.resp_h AS peer, {_key()} AS key, c.t, c.uid,
         c.service, c.orig_bytes, c.resp_bytes,
         CASE WHEN {by_port} THEN 1 ELSE 0 END AS by_port,
         CASE WHEN {irc} THEN 1 ELSE 0 END AS by_service,
         CASE WHEN c.established THEN 1 ELSE 0 END AS est
  FROM cand c
  WHERE c.orig_internal AND c.initiated
    AND {counts}
    AND (({by_port} AND {peer_ok}) OR {irc}))
SELECT host, peer, key, min(t) AS t_first, max(t) AS t_last, count(*) AS observed,
       1 AS threshold, count(DISTINCT key) AS distinct_total,
       {d.distinct_list('key', VALUES_LIMIT)} AS distinct_values,
       {d.first_list('uid', UIDS_LIMIT)} AS uids, count(*) AS evidence_total,
       sum(est) AS established, max(by_port) AS known_port, max(by_service) AS irc_service,
       {d.distinct_list('service', VALUES_LIMIT)} AS services,
       sum(orig_bytes) AS bytes_out, sum(resp_bytes) AS bytes_in
FROM ev GROUP BY host, peer, key"""


def _c2_summary(f: dict, p: dict) -> str:
    why = [w for w, k in (("known bot/C2 port", "known_port"), ("service identified as IRC",
                                                                   "irc_service")) if _n(f, k)]
    return (f"{f['host']} connected to {f['peer']} on {f['key']}: {int(f['observed'])} "
            f"connection(s), {_n(f, 'established')} established ({', '.join(why)})")


register(Detector(
    id="c2_port",
    attack=("T1571", "T1071"),
    title="Connection to a known bot/C2 port or to IRC",
    threat="c2",
    needs=("conn",),
    params=(
        Param('ports', ["6660-6669", 6697, 7000], 'ports', "known bot/C2 destination ports (IRC)"),
        Param('extra_ports', [], 'ports', "more ports, e.g. [4444, \"udp/53413\"] (your threat intelligence)"),
        Param('include_internal_peers', False, 'bool', "the port rule also fires for internal peers (the IRC rule always does)"),
        Param('count_failed', True, 'bool', "unanswered/refused attempts count too"),
        Param('scan_min', 5, 'int', "failed attempts to ≥ this many ports of one peer, or peers on one port, are a scan and do not count", min=1),
    ),
    false_positives="People who really use IRC (chat, open-source projects); internal IRC "
                    "servers linking to other servers; other software on tcp/7000 (e.g. some "
                    "game and media services). The IRC service rule also catches internal peers.",
    query=_c2_query,
    summary=_c2_summary,
    doc="An internal host connects to a destination port in `ports` + `extra_ports` of an "
        "external host (internal peers too with include_internal_peers), or to any peer on "
        "any port when the service is identified as IRC ('irc' token; 'irc-dcc-data' is not "
        "IRC control). Destination port only. One finding per (host, peer, proto/port); "
        "observed = connections (attempts too unless count_failed = false; not attempts "
        "that belong to a scan, see scan_min). "
        "Needs conn: ts, uid, orig_h, resp_h, resp_p, proto, service, conn_state, history.",
))


# -- unusual_port --------------------------------------------------------------------------

def _ftp_control(p: dict, m: str) -> str:
    """CTEs ``ftp_ctl`` and ``ftp_control``: the FTP control connections, then as (x, y)
    address-id pairs in both directions, with their times (a data channel follows its
    control connection between the same two hosts, either way round). ``m``: the dialect's
    ``materialized()``.

    Found by two selective scans (a control port; an 'ftp' service, a semi-join) instead of
    one test ``port OR service`` on every TCP connection, which costs a mark join over all
    of them. Both directions are listed so that the data channel's test is one equi-join on
    (x, y): an OR of the two directions in the join condition leaves DuckDB a nested loop
    over every rare connection times every control connection (noisy data: 1.2 s)."""
    cols = "f.orig_id, f.resp_id, f.t, f.ts, f.duration"
    return (f"ftp_ctl AS {m} (SELECT {cols} FROM cx f WHERE f.proto = 'tcp' "
            f"AND {in_list('f.resp_p', p['ftp_control_ports'])} "
            f"UNION ALL SELECT {cols} FROM cx f WHERE f.proto = 'tcp' AND f.service IN "
            f"(SELECT s.s FROM zw_services s WHERE {service_token('s.s', ['ftp'])})),\n"
            "ftp_control AS (SELECT f.orig_id AS x, f.resp_id AS y, f.t, f.ts, f.duration FROM ftp_ctl f "
            "UNION ALL SELECT f.resp_id, f.orig_id, f.t, f.ts, f.duration FROM ftp_ctl f),")


def _ftp_data(a: str, control: str) -> str:
    """SQL: ``a`` is an FTP data channel (labelled, or a high port after a control connection
    between the same two hosts, either direction; ``control`` names the ``ftp_control``
    CTE of ``_ftp_control``). ``a`` needs orig_id and resp_id."""
    e, f = f"{a}.t", "f.t"
    return f"""({has_service(f'{a}.service', ['ftp-data'])} OR ({a}.proto = 'tcp' AND {a}.resp_p >= 1024
  AND EXISTS (SELECT 1 FROM {control} f
    WHERE f.x = {a}.orig_id AND f.y = {a}.resp_id
      AND ({a}.ts IS NULL OR f.ts IS NULL
           OR {e} BETWEEN {f} - 60 AND {f} + coalesce(f.duration, 0) + {FTP_SLACK}))))"""


def _unusual_query(p: dict, ctx: Context) -> str:
    common = port_match(port_specs(p["common_ports"], "unusual_port.common_ports"), "o")
    p2p = has_service("x.service", p["p2p_services"])
    d = ctx.dialect
    m = d.materialized()
    # prevalence over integer address ids first; the text columns only for the rare ports
    return f"""
WITH prev AS (
  SELECT c.proto, c.resp_p, count(DISTINCT c.orig_id) AS prevalence
  FROM cx c WHERE c.outbound AND c.established GROUP BY c.proto, c.resp_p
  HAVING count(DISTINCT c.orig_id) <= {int(p['max_hosts'])}),
rare AS {m} (
  SELECT c.orig_h, c.orig_id, c.resp_h, c.resp_id, c.resp_p, c.proto, c.service, c.uid, c.ts, c.t,
         c.orig_bytes, c.resp_bytes, p.prevalence
  FROM cx c JOIN prev p ON p.proto = c.proto AND p.resp_p = c.resp_p
  WHERE c.outbound AND c.established),
p2p AS (SELECT DISTINCT {ctx.dialect.unnest('x.orig_id', 'x.resp_id')} AS h FROM cx x WHERE {p2p}),
{_ftp_control(p, m)}
ev AS (
  SELECT o.* FROM rare o
  WHERE NOT {common} AND NOT {has_service('o.service', p['common_services'])}
    AND NOT {_ftp_data('o', 'ftp_control')}
    AND NOT EXISTS (SELECT 1 FROM p2p WHERE p2p.h = o.orig_id))
SELECT e.orig_h AS host, NULL AS peer, {_key('e')} AS key,
       min(e.t) AS t_first, max(e.t) AS t_last, e.prevalence AS observed,
       {int(p['max_hosts'])} AS threshold, count(DISTINCT e.resp_h) AS distinct_total,
       {d.distinct_list('e.resp_h', VALUES_LIMIT)} AS distinct_values,
       {d.first_list('e.uid', UIDS_LIMIT)} AS uids, count(*) AS evidence_total,
       e.prevalence AS prevalence, {d.distinct_list('e.service', VALUES_LIMIT)} AS services,
       sum(e.orig_bytes) AS bytes_out, sum(e.resp_bytes) AS bytes_in
FROM ev e
GROUP BY e.orig_h, e.proto, e.resp_p, e.prevalence"""


def _unusual_summary(f: dict, p: dict) -> str:
    peers = ", ".join(f["values"][:3]) + (", ..." if f["distinct_total"] > 3 else "")
    return (f"{f['host']} talked to {f['distinct_total']} external host(s) on unusual port "
            f"{f['key']} ({peers}; {f['evidence_total']} established connection(s)); "
            f"{int(f['observed'])} internal host(s) use this port (at most {int(f['threshold'])})")


register(Detector(
    id="unusual_port",
    attack=("T1571",),
    title="Traffic to an external host on an unusual port",
    threat="suspicious",
    needs=("conn",),
    params=(
        Param('common_ports', [20, 21, 22, 25, 53, 80, 110, 123, 143, 443, 465, 587, 853, 993, 995, 3389, 5223, 5228, 8080, 8443, "udp/53", "udp/123", "udp/443", "udp/500", "udp/4500"], 'ports', "never unusual (bare numbers are TCP; 5223/5228 are Apple/Google push)"),
        Param('common_services', [], 'texts', "services normal on any port here, e.g. [\"ssh\"] if admins use SSH on 2222"),
        Param('max_hosts', 2, 'int', "report a port only when at most this many internal hosts use it", min=0),
        Param('p2p_services', ["bittorrent", "bittorrenttracker", "bittorrent-dht", "stun", "skype", "gnutella", "edonkey"], 'texts', "a host with one of these services is P2P/Skype and excluded"),
        Param('ftp_control_ports', [21, 2121], 'ports', "FTP control ports that make later high-port connections data channels"),
    ),
    whole_data=True,
    false_positives="Business applications on their own ports (VPN clients, games, trading "
                    "and video software; Apple/Google push tcp/5223 and tcp/5228 are common); "
                    "unlabelled P2P; small networks where every port is 'rare'.",
    query=_unusual_query,
    summary=_unusual_summary,
    doc="An internal host has established connections to external hosts on a (proto, port) "
        "outside `common_ports` whose service is not in `common_services`, and at most "
        "`max_hosts` internal hosts use that (proto, port) at all (prevalence). FTP data "
        "channels and hosts with a P2P/Skype service (`p2p_services`) are excluded. One "
        "finding per (host, proto/port); observed = prevalence, threshold = max_hosts. "
        "Needs conn: ts, uid, orig_h, resp_h, resp_p, proto, service, conn_state, history, duration.",
))


# -- rare_destination ----------------------------------------------------------------------

def _rare_query(p: dict, ctx: Context) -> str:
    """The tests of a destination that need no row (prevalence, its share of the active
    hosts) are made once per destination address id (``dest``) and its prevalence comes
    with its rows, not from a second join (noisy data: a 110 k-row join, ~0.06-0.1 s CPU).
    The rows are grouped by address ids, the texts fetched per finding.

    The never-resolved test stays per row, after the join: the anti-join hands the rows on
    clustered by destination, and the ordered ``uids`` aggregate then costs ~0.07 s less
    than over rows in scan order (noisy data; tested once per destination instead, the
    aggregate cost 0.14 s instead of 0.06)."""
    d = ctx.dialect
    svc = f"CASE WHEN {service_known('c.service')} THEN lower(c.service) ELSE {_key()} END"
    ignored = (f"({port_match(port_specs(p['ignore_ports'], 'rare_destination.ignore_ports'), 'c')}"
               f" OR {has_service('c.service', p['ignore_services'])}"
               " OR c.resp_dns)")
    dns_ok = "(SELECT count(*) FROM dns) > 0" if p["require_dns"] else "TRUE"
    mx = int(p['max_hosts'])
    return f"""
WITH active AS (SELECT count(DISTINCT c.orig_id) AS n FROM cx c WHERE c.orig_internal),
prev AS (  -- over integer address ids; the text columns only for the rare destinations
  SELECT c.resp_id, count(DISTINCT c.orig_id) AS prevalence
  FROM cx c WHERE c.outbound AND c.established GROUP BY c.resp_id
  HAVING count(DISTINCT c.orig_id) <= {mx}),
dest AS (
  SELECT q.resp_id, q.prevalence, a.n FROM prev q CROSS JOIN active a
  WHERE a.n >= {int(p['min_internal_hosts'])} AND {dns_ok}
    AND q.prevalence * 100 <= {float(p['max_percent'])} * a.n
),
ev AS (
  SELECT c.orig_id, c.resp_id, c.uid, c.t, c.orig_bytes, c.resp_bytes, {svc} AS svc,
         {_key()} AS port, q.prevalence, q.n
  FROM cx c JOIN dest q ON q.resp_id = c.resp_id
  WHERE c.outbound AND c.established AND NOT {ignored}
    AND NOT EXISTS (SELECT 1 FROM resolved r WHERE r.addr_id = c.resp_id)),
agg AS (
  SELECT e.orig_id, e.resp_id, e.svc AS key, min(e.t) AS t_first, max(e.t) AS t_last,
         count(*) AS observed, count(DISTINCT e.port) AS distinct_total,
         {d.distinct_list('e.port', VALUES_LIMIT)} AS distinct_values,
         {d.first_list('e.uid', UIDS_LIMIT)} AS uids, e.prevalence AS prevalence, e.n AS active_hosts,
         sum(e.orig_bytes) AS bytes_out, sum(e.resp_bytes) AS bytes_in
  FROM ev e
  GROUP BY e.orig_id, e.resp_id, e.svc, e.prevalence, e.n
  HAVING count(*) >= {int(p['min_connections'])})
SELECT o.a AS host, r.a AS peer, g.key, g.t_first, g.t_last, g.observed,
       {int(p['min_connections'])} AS threshold, g.distinct_total, g.distinct_values, g.uids,
       g.observed AS evidence_total, g.prevalence, g.active_hosts,
       round(CAST(100 * g.prevalence AS DOUBLE) / g.active_hosts, 2) AS prevalence_percent,
       g.key AS service, g.bytes_out, g.bytes_in,
       rank() OVER (PARTITION BY g.key ORDER BY g.prevalence, g.observed) AS service_rank
FROM agg g JOIN zw_addr o ON o.id = g.orig_id JOIN zw_addr r ON r.id = g.resp_id"""


def _rare_summary(f: dict, p: dict) -> str:
    return (f"{f['host']} reached {f['peer']} ({f['key']}) {int(f['observed'])} time(s); "
            f"{_n(f, 'prevalence')} of {_n(f, 'active_hosts')} active internal hosts did "
            f"({f.get('prevalence_percent')}% ≤ {p['max_percent']}%) and no DNS answer named it")


register(Detector(
    id="rare_destination",
    attack=("T1071",),
    title="Rare, never-resolved external destination",
    threat="suspicious",
    needs=("conn",),
    params=(
        Param('max_hosts', 1, 'int', "at most this many internal hosts reached the destination", min=0),
        Param('max_percent', 2, 'float', "...and at most this % of the active internal hosts", min=0, max=100, unit='%'),
        Param('min_internal_hosts', 10, 'int', "below this many active internal hosts nothing fires", min=0),
        Param('min_connections', 1, 'int', "established connections needed per (host, destination, service)", min=1),
        Param('require_dns', True, 'bool', "nothing fires when the data has no DNS records"),
        Param('ignore_ports', [53, "udp/53", "udp/123"], 'ports', "destination ports never reported (bare numbers are TCP)"),
        Param('ignore_services', ["dns", "ntp"], 'texts', "services never reported"),
    ),
    whole_data=True,
    false_positives="Software with hard-coded addresses (NTP/DNS on IoT devices, update "
                    "services, licence servers); DNS answers not captured by the sensor "
                    "(DoH, another resolver path); P2P and VoIP media relays.",
    query=_rare_query,
    summary=_rare_summary,
    doc="An external destination that at most `max_hosts` internal hosts reached with an "
        "established connection, that is at most `max_percent` % of the active internal hosts "
        "(those that originated any connection), and whose address was never in any DNS "
        "answer. Nothing fires below `min_internal_hosts` active hosts or without DNS records "
        "(`require_dns`). One finding per (host, destination, service); observed = "
        "connections; details: prevalence, service, service_rank (1 = rarest in that service). "
        "Needs conn: ts, uid, orig_h, resp_h, resp_p, proto, service, conn_state, history; "
        "dns: answers.",
))


# -- non_web_on_web_port -------------------------------------------------------------------

def _nonweb_query(p: dict, ctx: Context) -> str:
    ports = port_match(port_specs(p["ports"], "non_web_on_web_port.ports"))
    known = service_known("c.service")
    non_web = f"({known} AND NOT {only_services('c.service', p['web_services'])})"
    m = int(p["unknown_min_bytes"])
    unknown = (f"(NOT {known} AND coalesce(c.orig_bytes, 0) >= {m} AND coalesce(c.resp_bytes, 0) >= {m})"
               if p["unknown_service_counts"] else "FALSE")
    # outbound (enrich): internal -> external, initiated; with internal peers, any responder
    # that is not special
    scope = ("c.outbound" if not p["include_internal_peers"] else
             "c.resp_h IS NOT NULL AND c.orig_internal AND NOT c.resp_special AND c.initiated")
    d = ctx.dialect
    label = f"CASE WHEN {known} THEN lower(c.service) ELSE '(unidentified)' END"
    b = int(p["c2_min_bytes"])
    strong = (f"(count(*) >= {int(p['c2_min_connections'])}"
              f" OR coalesce(sum(duration), 0) >= {float(p['c2_min_seconds'])!r}"
              f" OR (coalesce(sum(orig_bytes), 0) >= {b} AND coalesce(sum(resp_bytes), 0) >= {b}))")
    return f"""
WITH ev AS (
  SELECT c.orig_h AS host, c.resp_h AS peer, {_key()} AS key, c.t, c.uid,
         {label} AS label, CASE WHEN {known} THEN 0 ELSE 1 END AS unidentified,
         c.orig_bytes, c.resp_bytes, c.duration
  FROM cx c
  WHERE {ports} AND {scope} AND c.established
    AND coalesce(c.orig_bytes, 0) > 0 AND coalesce(c.resp_bytes, 0) > 0
    AND ({non_web} OR {unknown}))
SELECT host, peer, key, min(t) AS t_first, max(t) AS t_last, count(*) AS observed,
       1 AS threshold, count(DISTINCT label) AS distinct_total,
       {d.distinct_list('label', VALUES_LIMIT)} AS distinct_values,
       {d.first_list('uid', UIDS_LIMIT)} AS uids, count(*) AS evidence_total,
       sum(unidentified) AS unidentified, sum(orig_bytes) AS bytes_out, sum(resp_bytes) AS bytes_in,
       round(coalesce(sum(duration), 0), 3) AS seconds,
       CASE WHEN {strong} THEN 'c2' ELSE 'suspicious' END AS threat
FROM ev GROUP BY host, peer, key"""


def _nonweb_summary(f: dict, p: dict) -> str:
    weak = ""
    if f.get("threat") == "suspicious":
        weak = (f"; weak evidence ({_n(f, 'bytes_out')}/{_n(f, 'bytes_in')} bytes, "
                f"{float(f.get('seconds') or 0):g} s): not scored as C2")
    return (f"{f['host']} exchanged data with {f['peer']} on web port {f['key']} in "
            f"{int(f['observed'])} established connection(s) that are not HTTP/TLS "
            f"(service: {', '.join(f['values'])}){weak}")


register(Detector(
    id="non_web_on_web_port",
    attack=("T1571", "T1001.003"),
    title="Non-web protocol on a web port",
    threat="c2",
    needs=("conn",),
    params=(
        Param('ports', [80, 443, 8080], 'ports', "web ports (bare numbers are TCP)"),
        Param('web_services', ["http", "ssl", "tls", "quic", "http2", "websocket", "spdy"], 'texts', "service tokens that are web"),
        Param('unknown_service_counts', True, 'bool', "connections with no identified service count too"),
        Param('unknown_min_bytes', 64, 'int', "...when each direction carried at least this many bytes", min=0, unit='bytes'),
        Param('include_internal_peers', False, 'bool', "also internal peers (internal proxies and servers)"),
        Param('c2_min_connections', 3, 'int', "threat c2 needs this many connections...", min=1),
        Param('c2_min_seconds', 300, 'float', "...or this much connection time in all...", min=0, unit='s'),
        Param('c2_min_bytes', 4096, 'int', "...or this many bytes each way in all; below "
              "all three the finding is `suspicious`", min=0, unit='bytes'),
    ),
    false_positives="Remote-support and VPN software that uses 443 with its own protocol "
                    "(TeamViewer, some SSL VPNs, SSH on 443 for admins); traffic the sensor "
                    "could not classify (missed packets, unusual TLS); streaming over raw TCP/80.",
    query=_nonweb_query,
    summary=_nonweb_summary,
    doc="An internal host's established connection with payload both ways to a web port "
        "(`ports`) of an external host whose service has a token outside `web_services`, or "
        "(with `unknown_service_counts`) no service at all and at least `unknown_min_bytes` "
        "each way. One finding per (host, peer, proto/port); observed = connections. Its threat "
        "is c2 only with minimum evidence (c2_min_connections, c2_min_seconds or c2_min_bytes "
        "each way), else suspicious: one short exchange of a few hundred bytes is what an "
        "unparsed HTTP request looks like. "
        "Needs conn: ts, uid, orig_h, resp_h, resp_p, proto, service, conn_state, history, "
        "orig_bytes, resp_bytes.",
))
