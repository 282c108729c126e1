"""Spam bots: mass mailers (SMTP to many servers) and MX lookup bursts.

A mail worm or spam bot delivers straight to the recipients' mail servers: it looks up their
MX records and opens SMTP to many external servers in a short time. A workstation never does
that (it hands mail to the site's mail server), so both behaviours are findings of their own,
and an MX lookup burst corroborates a mass mailer.
"""

from __future__ import annotations

from zeekwatch.detectors.base import (
    Param,
    Context,
    Detector,
    distinct_window,
    in_list,
    pair,
    register,
    window_candidates,
)

# qtype_name is MX in any letter case; spelled out so that no string function runs per record
MX = "d.qtype_name IN ('MX', 'mx', 'Mx', 'mX')"


def _smtp_events(p: dict, ctx: Context) -> str:
    """SQL: SMTP attempts of internal non-mail-servers to external servers (host, t, v, uid;
    hv: the (host, server) address-id pair, as in ``resolved.pair``)."""
    return f"""
SELECT c.orig_h AS host, c.t, c.resp_h AS v, c.uid, {pair('c.orig_id', 'c.resp_id')} AS hv
FROM cx c
WHERE c.ts IS NOT NULL AND c.proto = 'tcp' AND c.resp_h IS NOT NULL
  AND {in_list('c.resp_p', p['ports'])}
  AND c.orig_internal AND NOT c.orig_mail AND NOT c.resp_internal AND c.initiated"""


def _spans(gap: float) -> str:
    """SQL CTEs over ``episodes``: episodes of one host closer than the store's merge gap
    form one span (the rule of ``engine.merge_episodes``), so the corroboration of a merged
    finding covers all of it."""
    return f"""
keys AS (SELECT DISTINCT host, t_first, t_last FROM episodes),
ordered AS (
  SELECT host, t_first, t_last, max(t_last) OVER (
           PARTITION BY host ORDER BY t_first, t_last
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM keys),
sess AS (
  SELECT host, t_first, t_last,
         sum(CASE WHEN t_first <= prev_end + {float(gap)} THEN 0 ELSE 1 END) OVER (
           PARTITION BY host ORDER BY t_first, t_last
           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS s
  FROM ordered),
span AS (SELECT host, s, min(t_first) AS s_first, max(t_last) AS s_last FROM sess GROUP BY host, s)"""


def _corroboration(events: str, p: dict, ctx: Context) -> str:
    """SQL CTEs over ``span``: the host's distinct MX lookups in [first - window, last] and
    the contacted servers (all, and those whose address the host resolved) of each span."""
    W = float(p["window"])
    return f"""
mx AS (
  SELECT k.host, k.s, count(DISTINCT lower(d.query)) AS mx_lookups
  FROM span k LEFT JOIN dns d
    ON d.orig_h = k.host AND {MX} AND d.query IS NOT NULL AND d.ts IS NOT NULL
   AND {ctx.epoch('d.ts')} BETWEEN k.s_first - {W} AND k.s_last
  GROUP BY k.host, k.s),
rs AS (
  SELECT k.host, k.s, count(DISTINCT e.v) AS servers,
         count(DISTINCT CASE WHEN r.pair IS NOT NULL THEN e.v END) AS resolved_servers
  FROM span k JOIN ({events}) e ON e.host = k.host AND e.t BETWEEN k.s_first AND k.s_last
  LEFT JOIN resolved r ON r.pair = e.hv
  GROUP BY k.host, k.s)"""


def _mass_mailer_query(p: dict, ctx: Context) -> str:
    """An internal host that is not a configured mail server opens SMTP (tcp, ``ports``,
    default [25]) to ≥ ``min_servers`` (20) distinct external servers within an exact sliding
    ``window`` (60 s). Every attempt counts, refused and unanswered ones too (any conn_state),
    but not backscatter (no SYN from the originator). Corroboration, kept in details:
    ``mx_lookups`` (distinct MX query names of the host in [t_first - window, t_last]),
    ``servers`` (distinct servers contacted in [t_first, t_last]), ``resolved_servers`` (of
    those, the ones whose address was in the host's DNS answers) and ``corroborated``; over
    the whole finding when episodes merge (store.merge_gap). Needs conn: ts, uid, orig_h,
    resp_h, resp_p, proto, conn_state, history; dns (optional): ts, orig_h, query,
    qtype_name, answers.

    False positives: unlisted mail servers, relays and gateways; systems that deliver
    newsletters or tickets directly; a NAT gateway hiding several mail servers.
    """
    events = _smtp_events(p, ctx)
    eps = distinct_window(events, ["host"], p["window"], p["min_servers"], ctx.dialect)
    return f"""
WITH episodes AS ({eps}),{_spans(ctx.config.store.merge_gap)},{_corroboration(events, p, ctx)}
SELECT p.host, NULL AS peer, 'smtp' AS key, p.t_first, p.t_last, p.observed,
       {p['min_servers']} AS threshold, p.distinct_total, p.distinct_values, p.uids,
       p.evidence_total, m.mx_lookups, s.servers, s.resolved_servers,
       (m.mx_lookups > 0 OR s.resolved_servers > 0) AS corroborated
FROM episodes p
JOIN sess q ON q.host = p.host AND q.t_first = p.t_first AND q.t_last = p.t_last
JOIN mx m ON m.host = q.host AND m.s = q.s
JOIN rs s ON s.host = q.host AND s.s = q.s"""


def _mass_mailer_summary(f: dict, p: dict) -> str:
    mx = int(f.get("mx_lookups") or 0)
    text = (f"{f['host']} opened SMTP to {int(f['observed'])} external servers in {p['window']} s, "
            + (f"after {mx} MX lookups" if mx else "with no MX lookup seen"))
    resolved = int(f.get("resolved_servers") or 0)
    if resolved:
        text += f"; {resolved} of {f['servers']} server addresses came from its DNS answers"
    return text + f" (threshold {int(f['threshold'])})"


register(Detector(
    id="mass_mailer",
    attack=("T1071.003", "T1566"),
    title="Mass mailer (SMTP to many external servers)",
    threat="mass_mailer",
    needs=("conn",),
    params=(
        Param('window', 60, 'int', "window length, seconds", min=1, max=86400, unit='s'),
        Param('min_servers', 20, 'int', "distinct external SMTP servers", min=1),
        Param('ports', [25], 'ports', "destination TCP ports that count as SMTP"),
    ),
    threshold="min_servers",
    false_positives="Unlisted mail servers, relays and mail gateways (list them in "
                    "networks.mail_servers); newsletter or ticketing systems that deliver "
                    "directly; a NAT gateway that hides several mail servers.",
    query=_mass_mailer_query,
    summary=_mass_mailer_summary,
    doc=_mass_mailer_query.__doc__,
    windowed=True,
))


def _mx_burst_query(p: dict, ctx: Context) -> str:
    """An internal host that is not a configured mail server (nor, with
    ``ignore_dns_servers``, a configured DNS server) queries MX records of ≥ ``min_queries``
    (20) distinct names (case-insensitive) within an exact sliding ``window`` (60 s).
    Needs dns: ts, uid, orig_h, query, qtype_name.

    False positives: unlisted mail servers and relays; site resolvers forwarding clients'
    MX lookups (list them in networks.dns_servers); mail-address validation services.
    """
    dns_exempt = ctx.member("d.orig_h", "dns") if p["ignore_dns_servers"] else "FALSE"
    events = f"""
SELECT d.orig_h AS host, {ctx.epoch('d.ts')} AS t, lower(d.query) AS v, d.uid
FROM dns d
WHERE d.ts IS NOT NULL AND d.query IS NOT NULL AND {MX}
  AND {ctx.internal('d.orig_h')} AND NOT {ctx.member('d.orig_h', 'mail')}
  AND NOT {dns_exempt}"""
    eps = distinct_window(events, ["host"], p["window"], p["min_queries"], ctx.dialect)
    return window_candidates(eps, key="'dns/MX'")


register(Detector(
    id="mx_burst",
    attack=("T1071.003", "T1566"),
    title="MX lookup burst",
    threat="mass_mailer",
    needs=("dns",),
    params=(
        Param('window', 60, 'int', "window length, seconds", min=1, max=86400, unit='s'),
        Param('min_queries', 20, 'int', "distinct names queried for MX", min=1),
        Param('ignore_dns_servers', True, 'bool', "hosts in `networks.dns_servers` never count (a resolver forwards its clients' lookups)"),
    ),
    threshold="min_queries",
    false_positives="Unlisted mail servers and relays (list them in networks.mail_servers); "
                    "site resolvers forwarding clients' MX lookups (list them in "
                    "networks.dns_servers); mail-address validation services.",
    query=_mx_burst_query,
    summary=lambda f, p: (f"{f['host']} looked up MX records of {int(f['observed'])} distinct "
                          f"names within {p['window']} s (threshold {int(f['threshold'])})"),
    doc=_mx_burst_query.__doc__,
    windowed=True,
))
