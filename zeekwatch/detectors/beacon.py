"""beacon: an internal host that calls the same destination on a timer (bot/implant check-ins).

Per (internal host, destination) over the analysed span. The destination is the name the
sensor saw for that host and address — TLS SNI, else HTTP Host, else the DNS query whose answer
held the address (the engine's ``resolved.name``) — or the external address when there was
none, so a beacon to a rotating CDN address behind one name is one pair.

Everything is engine SQL — one window pass (``lag``) and two quantile passes over the
connections of the candidate pairs, no Python per pair — in this order:

1. ``pd``/``named``/``dests``/``keep``: connections per (host id, address id) (a hash
   aggregate over integers), named (``web`` for SNI/Host, ``resolved.name`` for DNS),
   grouped by destination (``_dests``: unnamed pairs row by row, named ones pruned over
   integers first); only destinations with ``min_connections`` connections over
   ``min_span`` seconds go on.
2. ``iv``: per destination, the interval to the previous connection; intervals of at most
   ``burst_gap`` seconds are the same check-in and are not intervals.
3. ``s1``: quartiles of the intervals, medians of the bytes each way; ``s``: the median
   absolute deviations about those medians and the coverage bins hit.
4. ``parts``/``scored``/``hit``: the parts and the score (docs/detectors/beacon.md has the
   formulas); then, for the hits only, the addresses, ports, evidence uids and the
   look-alike reason (``lookalike``: NTP, the site's resolver, a ``periodic_domains`` name;
   the suppress stage suppresses such findings with that reason, nothing is dropped) and
   the rank by score.
"""

from __future__ import annotations

import re

from zeekwatch.detectors.base import (
    UIDS_LIMIT,
    VALUES_LIMIT,
    Context,
    Detector,
    Param,
    pair,
    register,
    sql_text,
)
from zeekwatch.errors import ConfigError
from zeekwatch.timefmt import parse_iso

# Update, telemetry, push and connectivity-check services that call home on a timer by design.
# Domain patterns as in [suppress.domains]: "a.b" exactly, "*.a.b" below, ".a.b" both, "x.*".
PERIODIC_DOMAINS = [
    ".windowsupdate.com", ".update.microsoft.com", ".delivery.mp.microsoft.com",
    ".events.data.microsoft.com", ".telemetry.microsoft.com", "settings-win.data.microsoft.com",
    ".notify.windows.com", ".wns.windows.com", "www.msftconnecttest.com", "www.msftncsi.com",
    "time.windows.com", ".push.apple.com", "captive.apple.com", "time.apple.com",
    "mesu.apple.com", "gdmf.apple.com", "update.googleapis.com", "mtalk.google.com",
    "connectivitycheck.gstatic.com", "clients2.google.com", "aus5.mozilla.org",
    ".services.mozilla.com", "detectportal.firefox.com", "connectivity-check.ubuntu.com",
    "motd.ubuntu.com", "api.snapcraft.io", "ocsp.digicert.com", "ocsp.pki.goog",
    "ocsp.sectigo.com", ".o.lencr.org",
]
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
NTP = "periodic by design: NTP time synchronisation (udp/123)"
RESOLVER = "periodic by design: DNS to the site's resolver (networks.dns_servers)"


def domain_sql(pattern: str, col: str) -> str:
    """SQL boolean: ``col`` (a lower-case name without trailing dot) matches a domain pattern
    (the forms of ``[suppress.domains]``). Plain ``=``/``left``/``right``: DuckDB and Spark."""
    p = str(pattern).strip().lower().rstrip(".")
    kind, value = ("sub", p[2:]) if p.startswith("*.") else ("both", p[1:]) if p.startswith(".") \
        else ("prefix", p[:-2]) if p.endswith(".*") else ("exact", p)
    labels = value.split(".") if value else []
    if not labels or not all(_LABEL.match(x) for x in labels) or (kind == "prefix" and len(labels) > 1):
        raise ConfigError(f"detectors.beacon.periodic_domains: {pattern!r} is not a domain pattern "
                          "(forms: example.com, *.example.com, .example.com, label.*)")
    n = len(value)
    below = f"right({col}, {n + 1}) = {sql_text('.' + value)}"
    return {"exact": f"{col} = {sql_text(value)}", "sub": below,
            "both": f"({col} = {sql_text(value)} OR {below})",
            "prefix": f"(left({col}, {n + 1}) = {sql_text(value + '.')} AND length({col}) > {n + 1})"}[kind]


def _web_names() -> str:
    """SQL: (``pair`` of host and address ids, name) from TLS SNI (first) and HTTP Host
    (without :port; address literals are not names); DNS names come with the engine's
    ``resolved`` table (``name``)."""
    host = "lower(h.host)"
    http_name = (f"CASE WHEN {host} LIKE '%:%:%' OR {host} LIKE '[%' THEN NULL "
                 f"ELSE regexp_replace({host}, ':[0-9]*$', '') END")
    return f"""
SELECT pr AS pair, min_by(name, kind) AS name FROM (
  SELECT {pair('o.id', 'a.id')} AS pr, x.kind, min(x.name) AS name
  FROM (SELECT orig_h, resp_h AS addr, 1 AS kind, trim(TRAILING '.' FROM lower(server_name)) AS name FROM tls
        UNION ALL SELECT h.orig_h, h.resp_h, 2, trim(TRAILING '.' FROM {http_name}) FROM http h) x
  JOIN zw_addr o ON o.a = x.orig_h JOIN zw_addr a ON a.a = x.addr
  WHERE x.name IS NOT NULL AND x.name <> '' AND translate(x.name, '0123456789.', '') <> ''
  GROUP BY 1, 2) y
GROUP BY pr"""


def _bowley(q1: str, q2: str, q3: str, min_spread: float) -> str:
    """SQL: Bowley's quartile skew (Q1 + Q3 - 2 Q2) / (Q3 - Q1); 0 when the quartiles are
    closer than ``min_spread`` or the median sits on a quartile (the skew is then noise)."""
    return (f"(CASE WHEN {q3} - {q1} >= {min_spread} AND {q2} > {q1} AND {q2} < {q3} "
            f"THEN ({q1} + {q3} - 2 * {q2}) / ({q3} - {q1}) ELSE 0 END)")


def _regularity(q1: str, q2: str, q3: str, mad: str, scale: float, min_spread: float) -> str:
    """SQL 0..1: 0.3 symmetry + 0.7 low dispersion about the median.

    dispersion = 1 - (MAD / median) / ``scale`` (floored at 0); symmetry = 1 - |Bowley skew|
    x min(1, (IQR / median) / ``scale``): an asymmetry inside a band much narrower than
    ``scale`` is sampling noise, not evidence against a timer. Dispersion weighs more: it is
    what tells a timer from random arrivals (Poisson: MAD / median 0.69, skew only 0.26)."""
    med = f"greatest({q2}, 1.0)"
    disp = f"greatest(0.0, 1.0 - ({mad}) / {med} / {scale})"
    width = f"least(1.0, ({q3} - {q1}) / {med} / {scale})"
    return f"(0.3 * (1.0 - abs({_bowley(q1, q2, q3, min_spread)}) * {width}) + 0.7 * {disp})"


def _lookalike(p: dict) -> str:
    """SQL: why a destination is periodic by design (NTP, the site's resolver, a listed
    update/telemetry/push name), or NULL."""
    cases = [f"WHEN gp.ntp_n * 2 >= gp.n_all THEN {sql_text(NTP)}",
             f"WHEN gp.dns_n * 2 >= gp.n_all THEN {sql_text(RESOLVER)}"]
    for pat in p["periodic_domains"]:
        text = f"periodic by design: update/telemetry/push service (periodic_domains {pat.strip().lower()!r}): "
        cases.append(f"WHEN k.name IS NOT NULL AND {domain_sql(pat, 'k.name')} "
                     f"THEN {sql_text(text)} || k.name")
    return "CASE " + " ".join(cases) + " END"


def _spread(med: str, mad: str, scale: float) -> str:
    """SQL 0..1: 1 - (MAD / median) / ``scale``, floored at 0 (a median of 0 counts as 1)."""
    return f"greatest(0.0, 1.0 - ({mad}) / greatest({med}, 1.0) / {scale})"


def _dests(nmin: int, span: float) -> str:
    """SQL: the destinations (orig_id, name, addr_id: the address when unnamed) with
    ``nmin`` connections over ``span`` seconds, numbered ``gid`` in (orig_id, name, addr_id)
    order, from the (host, address) pairs of ``named``.

    An unnamed pair is a destination by itself (``pd`` has one row per pair), so only the
    named pairs are grouped; the unnamed ones are tested row by row (noisy data: 208 k of
    367 k pairs are unnamed and 95 of them pass). The named pairs are grouped first by
    (host, ``hash(name)``), integers: a hash group holds every pair of its names, so a name
    can pass only if its hash group does (sums and spans only grow), and only the pairs of
    passing hash groups are grouped by the name text (quiet data: 124 k name groups,
    3,808 pass; that text GROUP BY cost ~0.12 s of CPU, the integer one ~0.07)."""
    return f"""
  SELECT orig_id, name, addr_id, row_number() OVER (ORDER BY orig_id, name, addr_id) AS gid FROM (
    SELECT k.orig_id, k.name, CAST(NULL AS INT) AS addr_id FROM named k JOIN (
      SELECT orig_id, hash(name) AS hn FROM named WHERE name IS NOT NULL
      GROUP BY orig_id, hash(name) HAVING sum(n) >= {nmin} AND max(l) - min(f) >= {span}) h
      ON h.orig_id = k.orig_id AND h.hn = hash(k.name) WHERE k.name IS NOT NULL
    GROUP BY k.orig_id, k.name HAVING sum(k.n) >= {nmin} AND max(k.l) - min(k.f) >= {span}
    UNION ALL
    SELECT orig_id, name, resp_id FROM named WHERE name IS NULL AND n >= {nmin} AND l - f >= {span}) x"""


def _query(p: dict, ctx: Context) -> str:
    d, m = ctx.dialect, ctx.dialect.materialized()
    q = d.quantile
    ws, wc = float(p["size_weight"]), float(p["coverage_weight"])
    rows = ("c.outbound" if not p["include_internal_peers"] else
            "c.orig_internal AND c.initiated AND c.resp_h IS NOT NULL AND NOT c.resp_special "
            "AND c.proto IN ('tcp', 'udp')") + ("" if p["count_failed"] else " AND c.established")
    rows += " AND c.t IS NOT NULL"
    burst, nmin, span = float(p["burst_gap"]), int(p["min_connections"]), float(p["min_span"])
    q1, q2, q3 = (d.item("s.qd", i) for i in (1, 2, 3))
    width = f"greatest({float(p['coverage_bin'])}, 2 * {q2})"
    size = float(p["max_size_spread"])
    return f"""
WITH span AS (SELECT min(t) AS t0, max(t) AS t1 FROM cx),
pd AS (SELECT c.orig_id, c.resp_id, count(*) AS n, min(c.t) AS f, max(c.t) AS l
       FROM cx c WHERE {rows} GROUP BY c.orig_id, c.resp_id),
web AS ({_web_names()}),
named AS (
  SELECT p.*, coalesce(w.name, r.name) AS name FROM pd p
  LEFT JOIN resolved r ON r.pair = {pair('p.orig_id', 'p.resp_id')}
  LEFT JOIN web w ON w.pair = {pair('p.orig_id', 'p.resp_id')}),
dests AS {m} ({_dests(nmin, span)}),
keep AS {m} (
  SELECT {pair('k.orig_id', 'k.resp_id')} AS pk, k.orig_id, k.resp_id, k.n, k.name, g.gid FROM named k
  JOIN dests g ON g.orig_id = k.orig_id AND g.name IS NOT DISTINCT FROM k.name
              AND (k.name IS NOT NULL OR g.addr_id = k.resp_id)),
iv AS {m} (
  SELECT gid, t, ob, rb, rid, CASE WHEN t - lag(t) OVER w > {burst} THEN t - lag(t) OVER w END AS dd
  FROM (SELECT k.gid, c.t, coalesce(c.orig_bytes, 0) AS ob, coalesce(c.resp_bytes, 0) AS rb, c.rid
        FROM cx c JOIN keep k ON k.pk = {pair('c.orig_id', 'c.resp_id')} WHERE {rows}) e
  WINDOW w AS (PARTITION BY gid ORDER BY t, rid)),
s1 AS (
  SELECT gid, count(*) AS n, count(dd) + 1 AS checkins, min(t) AS t_first, max(t) AS t_last,
         {d.quantiles('dd', (.25, .5, .75))} AS qd, {q('ob', .5)} AS o2, {q('rb', .5)} AS i2
  FROM iv GROUP BY gid HAVING count(dd) + 1 >= {nmin} AND max(t) - min(t) >= {span}),
s AS (
  SELECT s1.*, x.mad, x.o_mad, x.i_mad, x.bins, x.bins_total FROM s1 JOIN (
    SELECT i.gid, {q(f'abs(i.dd - {q2})', .5)} AS mad, {q('abs(i.ob - s.o2)', .5)} AS o_mad,
           {q('abs(i.rb - s.i2)', .5)} AS i_mad,
           count(DISTINCT floor((i.t - sp.t0) / {width})) AS bins,
           max(floor((sp.t1 - sp.t0) / {width}) + 1) AS bins_total
    FROM iv i JOIN s1 s ON s.gid = i.gid CROSS JOIN span sp GROUP BY i.gid) x ON x.gid = s1.gid),
parts AS (
  SELECT s.*, {q1} AS q1, {q2} AS q2, {q3} AS q3,
         {_regularity(q1, q2, q3, 's.mad', float(p['max_jitter']), 1.0)} AS timing,
         0.5 * ({_spread('s.o2', 's.o_mad', size)} + {_spread('s.i2', 's.i_mad', size)}) AS size,
         least(1.0, CAST(s.bins AS DOUBLE) / s.bins_total) AS coverage FROM s),
scored AS (
  SELECT *, timing * power(size, {ws}) * power(coverage, {wc}) AS score FROM parts),
hit AS {m} (SELECT * FROM scored WHERE score >= {float(p['min_score'])}),
gk AS (
  SELECT k.gid, min(k.orig_id) AS orig_id, nullif(trim(TRAILING '.' FROM lower(min(k.name))), '') AS name,
         count(DISTINCT a.a) AS addrs, {d.distinct_list('a.a', VALUES_LIMIT)} AS addr_list
  FROM keep k JOIN zw_addr a ON a.id = k.resp_id WHERE k.gid IN (SELECT gid FROM hit) GROUP BY k.gid),
gp AS (  -- the hits' connections again, by row id (hosts first: a cheap integer filter)
  SELECT i.gid, count(*) AS n_all,
         sum(CASE WHEN c.proto = 'udp' AND c.resp_p = 123 THEN 1 ELSE 0 END) AS ntp_n,
         sum(CASE WHEN c.resp_dns AND c.resp_p = 53 THEN 1 ELSE 0 END) AS dns_n,
         {d.distinct_list("c.proto || '/' || CAST(c.resp_p AS VARCHAR)", VALUES_LIMIT)} AS ports,
         {d.ordered_list('c.uid', 'c.t, c.uid', UIDS_LIMIT)} AS uids
  FROM iv i JOIN cx c ON c.rid = i.rid
  WHERE i.gid IN (SELECT gid FROM hit) AND c.orig_id IN (SELECT orig_id FROM gk)
  GROUP BY i.gid)
SELECT o.a AS host, CASE WHEN k.name IS NULL THEN {d.item('k.addr_list', 1)} END AS peer, k.name AS key,
       h.t_first, h.t_last, round(h.score, 3) AS observed, {float(p['min_score'])} AS threshold,
       k.addrs AS distinct_total, k.addr_list AS distinct_values, gp.uids, h.n AS evidence_total,
       k.name AS name, gp.ports AS ports, h.checkins AS checkins,
       round(h.q2, 1) AS interval_median, round(h.mad, 1) AS interval_mad,
       round(h.q1, 1) AS interval_q1, round(h.q3, 1) AS interval_q3,
       round(h.o2) AS bytes_out_median, round(h.i2) AS bytes_in_median,
       round(h.timing, 3) AS timing, round(h.size, 3) AS size, round(h.coverage, 3) AS coverage,
       h.bins AS coverage_bins, h.bins_total AS coverage_bins_total,
       {_lookalike(p)} AS lookalike,
       rank() OVER (ORDER BY h.score DESC) AS score_rank
FROM hit h JOIN gk k ON k.gid = h.gid JOIN gp ON gp.gid = h.gid JOIN zw_addr o ON o.id = k.orig_id"""


def _size(b) -> str:
    b = float(b or 0)
    for unit, f in (("MB", 1e6), ("kB", 1e3)):
        if b >= f:
            return f"{b / f:.1f} {unit}"
    return f"{b:.0f} B"


def _span(seconds: float) -> str:
    if seconds >= 7200:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


def _summary(f: dict, p: dict) -> str:
    addrs = f["values"]
    where = (addrs[0] if addrs else "?") + (f" (+{len(addrs) - 1} more)" if len(addrs) > 1 else "")
    if f.get("name"):
        where += f" ({f['name']})"
    out, inb = _size(f.get("bytes_out_median")), _size(f.get("bytes_in_median"))
    size = f"~{out} each way" if out == inb else f"~{out} out, ~{inb} in"
    span = (parse_iso(f["last_seen"]) - parse_iso(f["first_seen"])).total_seconds()
    return (f"{f['host']} called {where} {f['evidence_total']} times over {_span(span)}, every "
            f"~{float(f.get('interval_median') or 0):.0f} s ± {float(f.get('interval_mad') or 0):.0f} s, "
            f"{size}; score {float(f['observed']):.2f} (timing {float(f['timing']):.2f}, "
            f"size {float(f['size']):.2f}, coverage {float(f['coverage']):.2f})")


register(Detector(
    id="beacon",
    attack=("T1071", "T1573"),
    title="Beacon: calls the same destination on a timer",
    threat="c2",
    needs=("conn",),
    params=(
        Param("min_connections", 30, "int", "check-ins needed per (host, destination)", min=3),
        Param("min_span", 7200, "float", "first to last check-in at least this long", min=0, unit="s"),
        Param("min_score", 0.7, "float", "report a destination whose score reaches this", min=0, max=1),
        Param("burst_gap", 5, "float", "connections this close to the previous one are the same check-in", min=0, unit="s"),
        Param("max_jitter", 0.7, "float", "interval MAD / median at which timing's dispersion part is 0", min=0.01),
        Param("max_size_spread", 0.5, "float", "bytes MAD / median at which size's dispersion part is 0", min=0.01),
        Param("coverage_bin", 3600, "float", "coverage counts bins of this width (or 2 intervals, if longer)", min=1, unit="s"),
        Param("size_weight", 0.2, "float", "exponent of size regularity in the score (0: ignored)", min=0, max=1),
        Param("coverage_weight", 0.2, "float", "exponent of coverage in the score (0: ignored)", min=0, max=1),
        Param("count_failed", True, "bool", "unanswered attempts count as check-ins (a bot whose server is down)"),
        Param("include_internal_peers", False, "bool", "also internal destinations (an internal relay or proxy)"),
        Param("periodic_domains", list(PERIODIC_DOMAINS), "texts",
              "update/telemetry/push names that call home by design: findings suppressed with the reason"),
    ),
    whole_data=True,
    false_positives="Software that polls on a timer: update, telemetry and push services "
                    "(suppressed when the name is in periodic_domains), NTP and DNS to the site's "
                    "resolvers (suppressed), monitoring agents, mail clients polling IMAP/POP, "
                    "RSS readers, webmail/dashboards refreshing, VPN and remote-support keepalives, "
                    "IoT devices.",
    query=_query,
    summary=_summary,
    doc="Timing regularity (interval skew and dispersion), size regularity (bytes each way) and "
        "coverage of the analysed span, per (internal host, destination name or address); one "
        "finding per destination scoring at least min_score; observed = score. "
        "Needs conn: ts, uid, orig_h, resp_h, resp_p, proto, orig_bytes, resp_bytes; "
        "names from tls (server_name), http (host) and dns (query, answers) when present.",
))
