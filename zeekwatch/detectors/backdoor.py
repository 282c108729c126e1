"""Backdoors, tunnels and policy: long connections, off-hours activity, new listeners.

- ``long_connection``: an outbound connection held open for hours (a tunnel, a reverse shell,
  a C2 channel that keeps one session open).
- ``off_hours``: a workstation that starts connections at night or on a weekend.
- ``new_listener``: an internal host answering on a (port, proto) outside its baseline of
  known services (a bind shell, a planted service).

Plain SQL over ``conn`` (plus the engine's ``known_services`` and ``addr6`` tables); every
engine-specific function goes through the ``Dialect`` hooks.
"""

from __future__ import annotations

import ipaddress
import re

from zeekwatch.detectors.base import (
    Param,
    UIDS_LIMIT,
    VALUES_LIMIT,
    Context,
    Detector,
    register,
    sql_list,
)
from zeekwatch.errors import ConfigError
from zeekwatch.nets import NetClass, ipv4_int

# -- address ranges given as detector parameters (IPv4 and IPv6 CIDRs) ---------------------


def ipv6_hex(col: str) -> str:
    """SQL: the IPv6 text address in ``col`` as 32 lowercase hex digits (fixed width, so
    text order is numeric order). Expands ``::`` with plain string functions that DuckDB and
    Spark share; meaningless for IPv4 or IPv4-embedded forms (callers guard)."""
    a = f"lower({col})"
    b = f"(CASE WHEN {a} LIKE '::%' THEN '0' || {a} ELSE {a} END)"
    b = f"(CASE WHEN {b} LIKE '%::' THEN {b} || '0' ELSE {b} END)"
    colons = f"(length({b}) - length(replace({b}, ':', '')))"
    full = f"replace({b}, '::', ':' || repeat('0:', 8 - {colons}))"
    return "(" + " || ".join(f"lpad(split_part({full}, ':', {i}), 4, '0')" for i in range(1, 9)) + ")"


def cidr_match(col: str, cidrs, where: str, key: str = "a", within: str = "TRUE",
               also: str = "FALSE") -> str:
    """SQL boolean (never NULL): the address in ``col`` lies in one of ``cidrs``.

    ``col`` holds address text (``key`` "a") or address ids (``key`` "id", cheaper);
    ``within`` narrows the ``zw_addr`` rows (alias ``h``) tested, when the ranges are known
    to lie inside a class (e.g. ``h.special``); ``also`` is a further SQL test on ``h``
    that counts as a match."""
    try:
        net = NetClass.from_cidrs("param", cidrs)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    terms = []
    a = "h.a"  # tested once per distinct address of the engine's ``zw_addr`` table
    if net.v4:
        n = ipv4_int(a)
        terms.append("(" + " OR ".join(f"{n} BETWEEN {lo} AND {hi}" for lo, hi in net.v4) + ")")
    if net.v6:
        h = ipv6_hex(a)
        ranges = " OR ".join(f"{h} BETWEEN '{int(n.network_address):032x}' "
                             f"AND '{int(n.broadcast_address):032x}'" for n in net.v6)
        terms.append(f"({a} LIKE '%:%' AND {a} NOT LIKE '%.%' AND ({ranges}))")
    if also != "FALSE":
        terms.append(f"({also})")
    if not terms:
        return "FALSE"
    # decided once per distinct address (semi-join against the engine's ``zw_addr`` table)
    return (f"coalesce({col} IN (SELECT h.{key} FROM zw_addr h WHERE ({within}) AND "
            f"({' OR '.join(terms)})), FALSE)")


def _hours(h: float) -> str:
    return f"{float(h):g} h"


# -- long_connection --------------------------------------------------------------------------


def _long_query(p: dict, ctx: Context) -> str:
    """An internal host holds a connection to an external host (not a configured VPN gateway,
    ``networks.vpn_gateways``) open for ≥ ``min_hours`` (1). Zeek logs a long-lived connection
    several times (open_conn / conn_long while it lasts, conn when it ends), all with one uid:
    per uid the longest duration and the earliest ts count, so one connection is one piece of
    evidence. One finding per (host, peer, proto/resp_p); ``observed`` is the longest duration
    in hours, ``tier`` (details, summary) the highest of ``tiers`` [1, 4, 8, 12] (or
    ``min_hours``) it reached. Needs conn: ts, uid, orig_h, resp_h, resp_p, proto, duration.

    False positives: VPN clients to an unlisted gateway, remote-desktop and SSH sessions,
    long downloads and streams, chat/push/telemetry channels that keep one TLS session open.
    """
    d, ep = ctx.dialect, "c.t"
    min_s = float(p["min_hours"]) * 3600
    levels = sorted({float(t) for t in p["tiers"] if float(t) >= float(p["min_hours"])}
                    | {float(p["min_hours"])}, reverse=True)
    tier = ("CASE " + " ".join(f"WHEN max(dur) >= {t * 3600!r} THEN CAST({t!r} AS DOUBLE)"
                               for t in levels) + " END")
    cid = (f"coalesce(c.uid, concat_ws('|', c.orig_h, CAST(c.orig_p AS VARCHAR), c.resp_h, "
           f"CAST(c.resp_p AS VARCHAR), c.proto, CAST({ep} AS VARCHAR)))")
    return f"""
WITH per_conn AS (
  SELECT cid, orig_h, resp_h, resp_p, proto, min(t0) AS t0, max(duration) AS dur,
         max(service) AS service, max(orig_bytes) AS orig_bytes, max(resp_bytes) AS resp_bytes
  FROM (SELECT {cid} AS cid, c.orig_h, c.resp_h, c.resp_p, c.proto, {ep} AS t0, c.duration,
               c.service, c.orig_bytes, c.resp_bytes
        FROM cx c
        WHERE c.duration >= {min_s!r} AND c.resp_h IS NOT NULL
          AND c.orig_internal AND NOT c.resp_internal AND NOT c.resp_vpngw) x
  GROUP BY cid, orig_h, resp_h, resp_p, proto)
SELECT orig_h AS host, resp_h AS peer,
       proto || '/' || coalesce(CAST(resp_p AS VARCHAR), '-') AS key,
       min(t0) AS t_first, max(t0 + dur) AS t_last, max(dur) / 3600.0 AS observed,
       CAST({float(p['min_hours'])!r} AS DOUBLE) AS threshold,
       count(*) AS distinct_total, {d.distinct_list('cid', VALUES_LIMIT)} AS distinct_values,
       {d.first_list('cid', UIDS_LIMIT)} AS uids, count(*) AS evidence_total,
       {tier} AS tier, count(*) AS connections, max(service) AS service,
       sum(orig_bytes) AS orig_bytes, sum(resp_bytes) AS resp_bytes
FROM per_conn
WHERE dur >= {min_s!r}
GROUP BY orig_h, resp_h, proto, resp_p"""


def _long_summary(f: dict, p: dict) -> str:
    n = int(f.get("connections") or 1)
    more = f" ({n} connections)" if n > 1 else ""
    return (f"{f['host']} kept {f['key']} to {f['peer']} open for {f['observed']:.2f} h{more}: "
            f"tier {_hours(f['tier'])} (threshold {_hours(f['threshold'])}); possible tunnel")


register(Detector(
    id="long_connection",
    attack=("T1572",),
    title="Long outbound connection",
    threat="tunnel",
    needs=("conn",),
    params=(
        Param('min_hours', 1, 'float', "shortest duration that counts, hours (fractions allowed: 0.5)", min=0.01, unit='h'),
        Param('tiers', [1, 4, 8, 12], 'ints', "duration levels reported as `details.tier`, hours", min=0, unit='h'),
    ),
    false_positives="VPN clients (list the gateways in networks.vpn_gateways), remote desktop "
                    "and SSH sessions, long downloads and media streams, push/chat/telemetry "
                    "channels that keep one TLS session open.",
    query=_long_query,
    summary=_long_summary,
    doc=_long_query.__doc__ or "",
))


# -- off_hours --------------------------------------------------------------------------------

MULTICAST = "224.0.0.0/4"


def _minutes(hhmm: str) -> int:
    h, m = str(hhmm).split(":")
    return int(h) * 60 + int(m)


def _off_tests(ls: str, tm) -> tuple[str, str, str]:
    """SQL over local wall-clock seconds ``ls``: (night, weekend, the period's local day
    number) for the business hours and weekends of ``tm`` (the config's ``time``)."""
    start, end = _minutes(tm.business_start), _minutes(tm.business_end)
    anchor = start if start < end else end  # a period's day runs anchor..anchor (local)
    m = f"(CAST(floor({ls} / 60) AS BIGINT) % 1440 + 1440) % 1440"
    day = f"CAST(floor(({ls} - {anchor * 60}) / 86400) AS BIGINT)"  # the period's local day
    if start < end:
        night = f"({m} >= {end} OR {m} < {start})"
    elif start > end:
        night = f"({m} >= {end} AND {m} < {start})"
    else:
        night = "FALSE"  # business_start == business_end: no weekday off-hours
    # ISO day of week of that day (1970-01-01 was a Thursday, 4): Saturday 6, Sunday 7
    weekend = f"(({day} + 3) % 7 + 7) % 7 + 1 IN (6, 7)" if tm.weekends_off else "FALSE"
    return night, weekend, day


def _quarter_may_be_off(tm) -> str:
    """SQL over a ``zone`` row (q, off, off_end): its quarter hour may hold an off-hours
    connection. Most connections are in business hours; testing night/weekend per row cost
    ~0.06 s of ~0.25 s CPU (quiet data: 1.1 M rows tested, 40 pass), so quarters wholly in
    business hours are dropped before the rows are joined to them.

    Exact only where the test is constant over a quarter: business_start/business_end on
    quarter hours, and the quarter's offset constant and a whole number of quarter hours
    (local quarters are then aligned); otherwise the quarter is kept and its rows tested as
    before. Rounding (floor(t / 900) of a time a hair before a quarter, t + off) can move a
    row's local time just outside its quarter, so the local quarters before and after (at
    this offset, as the row is converted) must be business hours too."""
    if _minutes(tm.business_start) % 15 or _minutes(tm.business_end) % 15:
        return "TRUE"
    tests = [" OR ".join(_off_tests(f"(z.q * 900.0 + z.off{k})", tm)[:2])
             for k in ("", " - 900.0", " + 900.0")]
    return f"(z.off <> z.off_end OR z.off % 900 <> 0 OR {' OR '.join(tests)})"


def _off_query(p: dict, ctx: Context) -> str:
    """An internal host outside the VPN/RAS segments (``networks.vpn``) and outside
    ``exclude_hosts`` starts ≥ ``min_connections`` (5) connections during one off-hours period
    (``time.business_end`` to ``time.business_start`` local time, default 22:00–06:00, plus
    whole weekend days when ``time.weekends_off``; zone ``time.timezone``). Connections to
    ``ignore_ports`` (tcp/udp; default 53, 123), to internal DNS servers
    (``networks.dns_servers``) and, with ``ignore_multicast``, to multicast/broadcast
    addresses do not count. A period is named by the local date it starts: a night is
    ``'2024-04-19 night'`` (22:00 on the 19th to 06:00 on the 20th), a weekend day
    ``'2024-04-20 weekend'`` (06:00 to 06:00). Details list ``rare_destinations``: the
    destinations, rarest first (fewest internal hosts contacting them in all the data).
    Needs conn: ts, uid, orig_h, resp_h, resp_p, proto (conn_state, history to skip backscatter).

    False positives: servers and always-on machines (exclude_hosts), scheduled backups, patch
    and antivirus updates, cloud sync clients, machines left on with open browsers (tabs that
    refresh), shift workers, hosts in other time zones.
    """
    d, ep = ctx.dialect, "c.t"
    tm = ctx.config.time
    tz = tm.timezone
    night, weekend, day = _off_tests("c.ls", tm)
    skip = ["NOT c.resp_dns", "c.initiated",
            f"NOT (c.proto IN ('tcp', 'udp') AND coalesce(c.resp_p, -1) IN {sql_list(p['ignore_ports'])})"
            if p["ignore_ports"] else "TRUE"]
    if p["ignore_multicast"]:
        # multicast and broadcast are special addresses (``zw_addr.special``): only those
        # are tested, by id; IPv6 multicast is ff00::/8
        multicast = cidr_match("c.resp_id", [MULTICAST, "255.255.255.255/32"], "multicast",
                               key="id", within="h.special", also="h.a LIKE 'ff%:%'")
        skip.append(f"NOT {multicast}")
    if p["exclude_hosts"]:
        where = "detectors.off_hours.exclude_hosts"
        skip.append(f"NOT {cidr_match('c.orig_id', p['exclude_hosts'], where, key='id')}")
    # The zone's offset per quarter hour of the data, looked up per row (a time-zone conversion
    # per row costs more than the rest of the detector). Offsets change at whole quarter hours
    # in every zone in use; a quarter whose start and end offsets differ anyway falls back to
    # the exact per-row conversion.
    q = "CAST(floor(x.t / 900) AS BIGINT)"
    zone = f"""zone AS {d.materialized()} (
  SELECT * FROM (
    SELECT q, {d.utc_offset('q * 900.0', tz)} AS off, {d.utc_offset('q * 900.0 + 899.999999', tz)} AS off_end
    FROM (SELECT DISTINCT {q} AS q FROM cx x WHERE x.t IS NOT NULL) u) z
  WHERE {_quarter_may_be_off(tm)}),"""
    local = (f"CASE WHEN z.off = z.off_end THEN x.t + z.off "
             f"ELSE x.t + {d.utc_offset('x.t', tz)} END")
    return f"""
WITH {zone}
off AS {ctx.dialect.materialized()} (
  SELECT c.orig_h AS host, c.resp_h AS dest, c.resp_id AS dest_id, c.uid, {ep} AS t,
         {d.date_text(day)} || ' ' || CASE WHEN {weekend} THEN 'weekend' ELSE 'night' END AS period
  FROM (SELECT x.*, {local} AS ls FROM cx x JOIN zone z ON z.q = {q}) c
  WHERE c.ts IS NOT NULL AND c.resp_h IS NOT NULL
    AND c.orig_internal AND NOT c.orig_vpn
    AND {' AND '.join(skip)}
    AND ({night} OR {weekend})),
prevalence AS (  -- over address ids: no text per connection
  SELECT c.resp_id AS dest_id, count(DISTINCT c.orig_id) AS hosts
  FROM cx c WHERE c.orig_internal AND c.resp_id IN (SELECT dest_id FROM off)
  GROUP BY c.resp_id),
dests AS (
  SELECT o.host, o.period, o.dest, coalesce(max(p.hosts), 0) AS hosts
  FROM off o LEFT JOIN prevalence p ON p.dest_id = o.dest_id
  GROUP BY o.host, o.period, o.dest),
rare AS (
  SELECT host, period, min(hosts) AS rarest_prevalence,
         {d.ordered_list("dest || ' (' || CAST(hosts AS VARCHAR) || CASE WHEN hosts = 1 THEN ' host)' ELSE ' hosts)' END",
                         'hosts, dest', VALUES_LIMIT)} AS rare_destinations
  FROM dests GROUP BY host, period),
agg AS (
  SELECT host, period, min(t) AS t_first, max(t) AS t_last, count(*) AS connections,
         count(DISTINCT dest) AS distinct_total,
         {d.distinct_list('dest', VALUES_LIMIT)} AS distinct_values,
         {d.first_list('uid', UIDS_LIMIT)} AS uids
  FROM off GROUP BY host, period
  HAVING count(*) >= {int(p['min_connections'])})
SELECT a.host, NULL AS peer, a.period AS key, a.t_first, a.t_last,
       CAST(a.connections AS DOUBLE) AS observed,
       CAST({int(p['min_connections'])} AS DOUBLE) AS threshold,
       a.distinct_total, a.distinct_values, a.uids, a.connections AS evidence_total,
       r.rare_destinations, r.rarest_prevalence
FROM agg a JOIN rare r ON r.host = a.host AND r.period = a.period"""


def _off_summary(f: dict, p: dict) -> str:
    rare = list(f.get("rare_destinations") or [])
    more = f", ... ({f['distinct_total']} in all)" if f["distinct_total"] > 3 else ""
    return (f"{f['host']} started {int(f['observed'])} connections to {f['distinct_total']} "
            f"destination(s) during off-hours ({f['key']}; threshold {int(f['threshold'])}); "
            f"rarest first: {', '.join(rare[:3])}{more}")


register(Detector(
    id="off_hours",
    attack=("T1029",),
    title="Activity outside business hours",
    threat="policy",
    needs=("conn",),
    params=(
        Param('min_connections', 5, 'int', "connections started in one period", min=1),
        Param('ignore_ports', [53, 123], 'ports', "tcp/udp destination ports that never count"),
        Param('ignore_multicast', True, 'bool', "skip multicast and broadcast destinations"),
        Param('exclude_hosts', [], 'networks', "CIDRs/addresses of machines that run 24/7 (servers), IPv4 and IPv6"),
    ),
    whole_data=True,
    false_positives="Servers and always-on machines (list them in exclude_hosts), backups, "
                    "patch and antivirus updates, cloud sync, machines left on with open "
                    "browsers, shift workers, users in other time zones.",
    query=_off_query,
    summary=_off_summary,
    doc=_off_query.__doc__ or "",
))


# -- new_listener -----------------------------------------------------------------------------

KNOWN_RE = re.compile(r"\s*(?:\[(?P<h6>[^\]]+)\]|(?P<h>[^\s]+)):(?P<port>\d+)/(?P<proto>tcp|udp)\s*",
                      re.IGNORECASE)


def parse_known(entries) -> list[tuple[str, int, str]]:
    """``known`` entries "host:port/proto" (host: address, CIDR, [IPv6] or *) as tuples."""
    out = []
    for e in entries:
        mt = KNOWN_RE.fullmatch(str(e))
        host = mt and (mt.group("h6") or mt.group("h"))
        try:
            if not mt or not 0 <= int(mt.group("port")) <= 65535:
                raise ValueError("expected host:port/proto, e.g. 10.0.0.5:22/tcp or *:443/tcp")
            if host != "*":
                ipaddress.ip_network(host, strict=False)
        except ValueError as exc:
            raise ConfigError(f"detectors.new_listener.known: {e!r}: {exc}") from None
        out.append((host, int(mt.group("port")), mt.group("proto").lower()))
    return out


def _ftp_control(client: str, server: str, p: dict, ctx: Context) -> str:
    """SQL: an FTP control connection client -> server (address ids) open around the outer
    row ``c``."""
    return f"""EXISTS (
    SELECT 1 FROM cx f
    WHERE f.orig_id = {client} AND f.resp_id = {server} AND f.proto = 'tcp'
      AND f.resp_p IN {sql_list(p['ftp_control_ports'])}
      AND f.t <= c.t + 1 AND f.t + coalesce(f.duration, 0) + 3600 >= c.t)"""


def _answered_events(p: dict, ctx: Context, cols: str = "") -> str:
    """SQL: connections an internal host answered on a port below max_port, FTP data and
    (with ignore_udp_replies) misoriented UDP replies excluded: hid (the host's address id),
    port, proto, t, ts, and the cx columns listed in ``cols`` (e.g. ", c.uid")."""
    udp_reply = ("NOT (c.proto = 'udp' AND coalesce(c.orig_p, 1024) < 1024 AND c.resp_p >= 1024)"
                 if p["ignore_udp_replies"] else "TRUE")
    # passive FTP: client -> server's data port; active FTP: server (port 20) -> client
    ftp = (f"({_ftp_control('c.orig_id', 'c.resp_id', p, ctx)} OR "
           f"{_ftp_control('c.resp_id', 'c.orig_id', p, ctx)})")
    base = f"""
FROM cx c
WHERE c.ts IS NOT NULL AND c.proto IN ('tcp', 'udp') AND c.resp_p IS NOT NULL
  AND c.resp_p < {int(p['max_port'])} AND c.resp_internal AND c.answered
  AND coalesce(c.service, '') NOT LIKE '%ftp-data%' AND {udp_reply}"""
    sel = f"SELECT c.resp_id AS hid, c.resp_p AS port, c.proto, c.t, c.ts{cols}"
    # the FTP control check (a correlated lookup) only runs on TCP to high ports
    return f"""
{sel} {base} AND NOT (c.proto = 'tcp' AND c.resp_p >= 1024)
UNION ALL
{sel} {base} AND c.proto = 'tcp' AND c.resp_p >= 1024 AND NOT {ftp}"""


def _known_predicate(p: dict, alias: str) -> str:
    terms = []
    for host, port, proto in parse_known(p["known"]):
        where = "detectors.new_listener.known"
        hmatch = "TRUE" if host == "*" else cidr_match(f"{alias}.host", [host], where)
        terms.append(f"({alias}.port = {port} AND {alias}.proto = '{proto}' AND {hmatch})")
    return "(" + " OR ".join(terms) + ")" if terms else "FALSE"


def _listener_query(p: dict, ctx: Context) -> str:
    """An internal host answers connections (it is the responder and the connection was
    established: conn_state SF/S1/S2/S3/RSTO/RSTR, or a SYN-ACK 'h' in the history) on a
    (port, proto) outside its baseline, after it had been seen answering for a while.
    Baseline: the stored known services (learned by earlier runs into the database) plus
    ``known`` ("host:port/proto"; host an address, a CIDR or *). Learning is per sensor and per
    server: a service is new only when its server had been seen answering (any service, by
    the same sensor) at least ``learn_hours`` (24) before the service first answered, or when
    the server is in the stored baseline. Services of a server seen for less than that are
    its baseline, so a capture shorter than the learning period gives no findings, and
    unrelated captures analysed together do not make each other's servers "new". Ports ≥
    ``max_port`` (49152, the IANA dynamic range) are ignored, and so are FTP data channels
    (service ftp-data, or a control connection on ``ftp_control_ports`` between the same
    hosts) and, with ``ignore_udp_replies``, UDP from a port < 1024 to a port ≥ 1024 (a reply
    Zeek took for a new flow after its UDP timeout). Each run stores every answered service in
    the baseline (``extra['learn']``), so a new listener is reported once. observed =
    connections answered; distinct values = the clients; details: ``after_hours`` (hours
    between the server's first answer and the service's). Needs conn: ts, uid, orig_h,
    orig_p, resp_h, resp_p, proto, conn_state, history, service, duration (sensor when
    several sensors write into one run).

    False positives: newly installed or moved servers, software updates that open ports,
    P2P/VoIP/RPC services on dynamic ports below max_port, hosts whose baseline was learned
    while they were off.
    """
    d = ctx.dialect
    learn_s = float(p["learn_hours"]) * 3600
    return f"""
WITH server AS (  -- each server's first answer, per sensor
  SELECT hid, sensor, min(t_first) AS t_server FROM zw_answered GROUP BY hid, sensor),
first_seen AS (  -- services from zw_answered; the evidence text only for new ones
  SELECT z.a AS host, s.hid, s.port, s.proto, min(s.t_first) AS t_first,
         max(s.t_first - v.t_server) AS after_s
  FROM zw_answered s JOIN zw_addr z ON z.id = s.hid
  JOIN server v ON v.hid = s.hid AND v.sensor IS NOT DISTINCT FROM s.sensor
  WHERE s.t_first >= v.t_server + {learn_s!r}
     OR z.a IN (SELECT host FROM known_services)
  GROUP BY z.a, s.hid, s.port, s.proto),
mode AS (SELECT (SELECT count(*) FROM known_services) = 0 AS learning),
new AS (
  SELECT s.host, s.hid, s.port, s.proto, s.after_s
  FROM first_seen s
  LEFT JOIN known_services k ON k.host = s.host AND k.port = s.port AND k.proto = s.proto
  WHERE k.host IS NULL AND NOT {_known_predicate(p, 's')}),
svc AS (
  SELECT n.host, e.port, e.proto, min(e.t) AS t_first, max(e.t) AS t_last, count(*) AS answered,
         count(DISTINCT e.client) AS distinct_total,
         {d.distinct_list('e.client', VALUES_LIMIT)} AS distinct_values,
         {d.first_list('e.uid', UIDS_LIMIT)} AS uids,
         {d.distinct_list('e.service', VALUES_LIMIT)} AS services,
         round(max(n.after_s) / 3600.0, 2) AS after_hours
  FROM ({_answered_events(p, ctx, ", c.orig_h AS client, c.uid, c.service")}) e
  JOIN new n ON n.hid = e.hid AND n.port = e.port AND n.proto = e.proto
  GROUP BY n.host, e.port, e.proto)
SELECT s.host, NULL AS peer, s.proto || '/' || CAST(s.port AS VARCHAR) AS key,
       s.t_first, s.t_last, CAST(s.answered AS DOUBLE) AS observed, CAST(1 AS DOUBLE) AS threshold,
       s.distinct_total, s.distinct_values, s.uids, s.answered AS evidence_total, s.services,
       s.after_hours, CASE WHEN m.learning THEN 'learning' ELSE 'stored' END AS baseline
FROM svc s CROSS JOIN mode m"""


def _answered_tables(p: dict, ctx: Context) -> dict[str, str]:
    """``zw_answered``: every (host id, sensor, port, proto) answered, with its first and last
    time; read by the detector and by its learn query, so the connections are scanned once."""
    return {"zw_answered": f"""
SELECT e.hid, e.sensor, e.port, e.proto, min(e.t) AS t_first, min(e.ts) AS ts_first,
       max(e.ts) AS ts_last
FROM ({_answered_events(p, ctx, ", c.sensor")}) e GROUP BY e.hid, e.sensor, e.port, e.proto"""}


def _learn_query(p: dict, ctx: Context) -> str:
    """Every service answered in this run, for the stored baseline (Store.learn_services)."""
    return f"""
SELECT z.a AS host, s.port, s.proto, {ctx.dialect.iso_utc('s.ts_first')} AS first_seen,
       {ctx.dialect.iso_utc('s.ts_last')} AS last_seen, 'learned' AS origin
FROM (SELECT hid, port, proto, min(ts_first) AS ts_first, max(ts_last) AS ts_last
      FROM zw_answered GROUP BY hid, port, proto) s JOIN zw_addr z ON z.id = s.hid"""


def _listener_summary(f: dict, p: dict) -> str:
    services = [s for s in (f.get("services") or []) if s]
    svc = f" ({', '.join(services)})" if services else ""
    after = f.get("after_hours")
    how = (f"first answered {float(after):g} h after the server was first seen answering "
           f"(learning period {_hours(p['learn_hours'])})" if after is not None
           else "not in its known-services baseline")
    if f.get("baseline") == "stored":
        how += "; not in its known-services baseline"
    return (f"{f['host']} answered {int(f['observed'])} connection(s) from "
            f"{f['distinct_total']} client(s) on {f['key']}{svc}, {how}")


register(Detector(
    id="new_listener",
    attack=("T1133",),
    title="New listening service",
    threat="backdoor",
    needs=("conn",),
    params=(
        Param('learn_hours', 24, 'float', "a server's services are its baseline until it has been seen answering this long (per sensor)", min=0, unit='h'),
        Param('known', [], 'texts', "declared services, `\"host:port/proto\"` (host: address, CIDR, `[IPv6]` or `*`)"),
        Param('max_port', 49152, 'int', "ports at or above are ignored (65536: none ignored)", min=1, max=65536),
        Param('ignore_udp_replies', True, 'bool', "skip UDP from a port < 1024 to a port ≥ 1024"),
        Param('ftp_control_ports', [21, 2121], 'ports', "control ports that make high-port connections FTP data"),
    ),
    whole_data=True,
    false_positives="Newly installed or moved servers, updates that open ports, P2P/VoIP/RPC "
                    "on dynamic ports below max_port, hosts that were off while the baseline "
                    "was learned.",
    query=_listener_query,
    summary=_listener_summary,
    doc=_listener_query.__doc__ or "",
    extra={"learn": _learn_query, "tables": _answered_tables},
))
