"""Worm behaviour: horizontal and vertical scans, ping sweeps, outbound pings.

The queries read the enriched conn table ``cx`` (``zeekwatch/engine/enrich.py``): ``failed`` (conn_state
S0, REJ, RSTOS0, SH), ``initiated`` (not backscatter: the originator sent a SYN, or there is no
history) and the address classes are columns decided once per row.
"""

from __future__ import annotations

from zeekwatch.detectors.base import (
    Param,
    Context,
    Detector,
    in_list,
    pair,
    register,
    service_in,
)
from zeekwatch.detectors.windows import Tier, tier_candidates, tiered_window

NETBIOS = {("udp", 137), ("udp", 138), ("tcp", 139)}
DAY = 86400


def _long_params(what: str, unit: str) -> tuple[Param, ...]:
    """The long-window tier and the roll-up, declared alike for the three scan detectors."""
    return (
        Param("long_window", DAY, "int", "long-window tier: window length, seconds (0: no "
              "long tier)", min=0, max=30 * DAY, unit="s"),
        Param(f"long_min_{what}", 100, "int", f"long-window tier: distinct {unit} within "
              "long_window", min=1),
        Param("rollup_gap", DAY, "int", "episodes of one scanner (and target or port) less "
              "than this apart are one finding, listed in details.episodes", min=0,
              max=30 * DAY, unit="s"),
    )


def _tiers(short_thr: str, long_thr: str, p: dict) -> list[Tier]:
    return [Tier("exact", float(p["window"]), short_thr),
            Tier("long", float(p["long_window"]), long_thr)]


def _within(f: dict) -> str:
    w = float(f.get("window") or 0)
    n = int(f.get("episode_count") or 1)
    more = f" ({n} episodes)" if n > 1 else ""
    return (f"within {w / 3600:g} h" if w >= 3600 else f"within {w:g} s") + more


def _horizontal_query(p: dict, ctx: Context) -> str:
    nb = " OR ".join(f"(c.proto = '{pr}' AND c.resp_p = {port})" for pr, port in sorted(NETBIOS))
    # NetBIOS is chattier: its long-tier threshold is scaled like its exact one
    nb_long = -(-int(p["long_min_hosts"]) * int(p["netbios_min_hosts"]) // int(p["min_hosts"]))
    # addresses as integer ids (cheap to join and count); text only for what is listed
    events = f"""
SELECT c.orig_id AS hid, c.proto, c.resp_p, c.t, c.resp_id AS v, c.rid,
       CASE WHEN {nb} THEN 1 ELSE 0 END AS netbios, c.failed AND r.pair IS NULL AS probe
FROM cx c
LEFT JOIN resolved r ON r.pair = {pair('c.orig_id', 'c.resp_id')}
WHERE c.ts IS NOT NULL AND c.proto IN ('tcp', 'udp') AND c.resp_p IS NOT NULL
  AND c.orig_internal AND c.initiated
  AND (c.failed OR r.pair IS NULL)
  AND {in_list('c.resp_p', p['ignore_ports'], negate=True)}"""
    tiers = _tiers(f"CASE WHEN netbios = 1 THEN {int(p['netbios_min_hosts'])} ELSE {int(p['min_hosts'])} END",
                   # the long tier: failed attempts to never-resolved targets only (a day of
                   # a busy host's traffic holds many unresolved peers it really uses, and
                   # failures to addresses it resolved: dead servers, bounced mail)
                   f"CASE WHEN NOT probe THEN NULL WHEN netbios = 1 THEN {nb_long} "
                   f"ELSE {int(p['long_min_hosts'])} END", p)
    eps = tiered_window(events, ["hid", "proto", "resp_p"], tiers, p["rollup_gap"], ctx.dialect,
                        label="label", lookup="SELECT rid, uid, resp_h AS label FROM cx")
    return tier_candidates(eps, host="z.a", key="x.proto || '/' || CAST(x.resp_p AS VARCHAR)",
                           joins="JOIN zw_addr z ON z.id = x.hid")


def _horizontal_summary(f: dict, p: dict) -> str:
    what = ("failed, never-resolved" if float(f.get("window") or 0) > float(p["window"])
            else "failed or never-resolved")
    return (f"{f['host']} tried {int(f['observed'])} distinct hosts on {f['key']} "
            f"{_within(f)} ({what}; threshold {int(f['threshold'])})")


register(Detector(
    id="horizontal_scan",
    attack=("T1046",),
    title="Horizontal scan (one port, many hosts)",
    threat="worm",
    needs=("conn",),
    params=(
        Param('window', 60, 'int', "window length, seconds", min=1, max=86400, unit='s'),
        Param('min_hosts', 20, 'int', "distinct destination hosts", min=1),
        Param('netbios_min_hosts', 64, 'int', "threshold for udp/137, udp/138, tcp/139 (the "
              "long tier scales long_min_hosts alike)", min=1),
        Param('ignore_ports', [], 'ports', "destination ports never counted"),
    ) + _long_params("hosts", "destination hosts"),
    threshold="min_hosts",
    false_positives="Network management and inventory tools; P2P clients and messengers "
                    "(suppressed by app usage); a proxy or NAT gateway that looks like one host.",
    query=_horizontal_query,
    summary=_horizontal_summary,
    windowed=True,
))


def _vertical_query(p: dict, ctx: Context) -> str:
    scope = "c.orig_internal" if p["internal_only"] else "TRUE"
    long_thr = int(p["long_min_ports"])
    if p["long_internal_only"]:
        long_thr = f"CASE WHEN internal THEN {long_thr} END"
    # v: the (proto, port) as one integer; label: its text, for the listed values
    events = f"""
SELECT c.orig_id AS hid, c.resp_id AS pid, c.t, c.orig_internal AS internal,
       c.resp_p + CASE WHEN c.proto = 'udp' THEN 65536 ELSE 0 END AS v,
       c.proto || '/' || CAST(c.resp_p AS VARCHAR) AS label, c.uid
FROM cx c
WHERE c.ts IS NOT NULL AND c.proto IN ('tcp', 'udp') AND c.resp_p IS NOT NULL
  AND {scope} AND c.failed AND c.initiated
  AND NOT {service_in("c.service", p['dynamic_services'])}
  AND NOT EXISTS (
    SELECT 1 FROM cx f
    WHERE f.orig_id = c.orig_id AND f.resp_id = c.resp_id AND f.proto = 'tcp'
      AND {in_list('f.resp_p', p['control_ports'])} AND c.resp_p >= 1024
      AND NOT f.failed
      AND f.ts <= c.ts AND f.t + coalesce(f.duration, 0) + 60 >= c.t)"""
    eps = tiered_window(events, ["hid", "pid"], _tiers(str(int(p["min_ports"])), str(long_thr), p),
                        p["rollup_gap"], ctx.dialect, label="label")
    return tier_candidates(eps, host="h.a", peer="r.a",
                           joins="JOIN zw_addr h ON h.id = x.hid JOIN zw_addr r ON r.id = x.pid")


def _vertical_summary(f: dict, p: dict) -> str:
    return (f"{f['host']} tried {int(f['observed'])} distinct ports of {f['peer']} "
            f"{_within(f)}, failed attempts (threshold {int(f['threshold'])})")


register(Detector(
    id="vertical_scan",
    attack=("T1046",),
    title="Vertical scan (one host, many ports)",
    threat="worm",
    needs=("conn",),
    params=(
        Param('window', 60, 'int', "window length, seconds", min=1, max=86400, unit='s'),
        Param('min_ports', 20, 'int', "distinct destination ports", min=1),
        Param('internal_only', False, 'bool', "only internal scanners"),
        Param('dynamic_services', ["ftp-data", "irc-dcc-data", "dce_rpc", "sip", "rtp"], 'texts', "services never counted"),
        Param('control_ports', [21, 2121], 'ports', "FTP control ports that make later high-port attempts data channels"),
    ) + _long_params("ports", "destination ports") + (
        Param('long_internal_only', True, 'bool', "the long tier counts internal scanners only "
              "(the Internet probes every public address slowly, all day)"),
    ),
    threshold="min_ports",
    false_positives="Vulnerability scanners run by the security team; FTP passive data "
                    "channels are excluded (control connection on 21 to the same host).",
    query=_vertical_query,
    summary=_vertical_summary,
    windowed=True,
))

ECHO = "((c.proto = 'icmp' AND c.orig_p IN (8, 128)))"


def _known_pings(p: dict, ctx: Context) -> str:
    """SQL: the pings (``pings`` rows: pr, t) whose target the host knew: it got the address
    in a DNS answer (the engine's ``resolved``), or had an established TCP/UDP session with
    it within ``known_window`` seconds of the ping (a session counts for its whole duration).
    Joined from the pings (few) into conn, so conn is probed once, not filtered per host."""
    kw = float(p["known_window"])
    return f"""
SELECT e.pr, e.t FROM pings e JOIN resolved r ON r.pair = e.pr
UNION
SELECT e.pr, e.t FROM pings e
JOIN cx c ON c.orig_id = e.hid AND c.resp_id = e.rid
WHERE c.established AND c.proto IN ('tcp', 'udp') AND c.t IS NOT NULL
  AND e.t BETWEEN c.t - {kw} AND c.t + coalesce(c.duration, 0) + {kw}"""


def _sweep_query(p: dict, ctx: Context) -> str:
    known = "FALSE"
    if p["exclude_known_peers"]:
        known = "EXISTS (SELECT 1 FROM known k WHERE k.pr = e.pr AND k.t = e.t)"
    events = "SELECT host, t, v, uid FROM sweep_ev WHERE NOT excluded"
    eps = tiered_window(events, ["host"], _tiers(str(int(p["min_hosts"])),
                                                 str(int(p["long_min_hosts"])), p),
                        p["rollup_gap"], ctx.dialect)
    cands = tier_candidates(eps, key="'icmp/echo'", more=", coalesce(k.n, 0) AS excluded_known_peers",
                            joins="LEFT JOIN excl k ON k.host = x.host")
    # only hosts that pinged enough distinct targets in all to reach a tier can fire: the
    # known-peer lookups (a probe of conn) are made for their pings alone
    least = min(int(p["min_hosts"]), int(p["long_min_hosts"]) if p["long_window"] else 10**9)
    return f"""
WITH echo AS (
  SELECT c.orig_h AS host, c.orig_id AS hid, c.resp_id AS rid, c.t, c.resp_h AS v, c.uid
  FROM cx c WHERE c.ts IS NOT NULL AND {ECHO} AND c.orig_internal),
pings AS {ctx.dialect.materialized()} (
  SELECT e.*, {pair('e.hid', 'e.rid')} AS pr FROM echo e
  WHERE e.hid IN (SELECT hid FROM echo GROUP BY hid HAVING count(DISTINCT rid) >= {least})),
known AS ({_known_pings(p, ctx) if p["exclude_known_peers"] else "SELECT NULL AS pr, NULL AS t"}),
sweep_ev AS {ctx.dialect.materialized()} (
  SELECT e.*, {known} AS excluded FROM pings e),
excl AS (SELECT host, count(DISTINCT v) AS n FROM sweep_ev WHERE excluded GROUP BY host)
{cands}"""


def _sweep_summary(f: dict, p: dict) -> str:
    known = int(f.get("excluded_known_peers") or 0)
    more = (f"; {known} pinged peer(s) it also talked to or resolved not counted" if known else "")
    return (f"{f['host']} pinged {int(f['observed'])} distinct hosts {_within(f)} "
            f"(threshold {int(f['threshold'])}){more}")


register(Detector(
    id="ping_sweep",
    attack=("T1018",),
    title="Ping sweep",
    threat="worm",
    needs=("conn",),
    params=(
        Param('window', 60, 'int', "window length, seconds", min=1, max=86400, unit='s'),
        Param('min_hosts', 10, 'int', "distinct hosts pinged", min=1),
        Param('exclude_known_peers', True, 'bool', "targets the host resolved by DNS, or "
              "reached over an established TCP/UDP session, do not count"),
        Param('known_window', 3600, 'int', "...the session within this many seconds of the "
              "ping (either side; a session counts for its whole duration)", min=0,
              max=30 * DAY, unit='s'),
    ) + _long_params("hosts", "hosts pinged"),
    threshold="min_hosts",
    false_positives="Monitoring systems (Nagios, PRTG) that ping many hosts: list them in "
                    "an allowlist. Applications that measure latency to servers they use "
                    "are not counted (exclude_known_peers).",
    query=_sweep_query,
    summary=_sweep_summary,
    windowed=True,
))


def _outbound_query(p: dict, ctx: Context) -> str:
    d = ctx.dialect
    return f"""
SELECT c.orig_h AS host, NULL AS peer, 'icmp/echo' AS key,
       min(c.t) AS t_first, max(c.t) AS t_last,
       count(DISTINCT c.resp_h) AS observed, 1 AS threshold,
       count(DISTINCT c.resp_h) AS distinct_total,
       {d.distinct_list('c.resp_h', 20)} AS distinct_values,
       {d.first_list('c.uid', 20)} AS uids, count(*) AS evidence_total
FROM cx c
WHERE {ECHO} AND c.orig_internal AND NOT c.resp_internal
GROUP BY c.orig_h"""


register(Detector(
    id="outbound_ping",
    attack=("T1016.001",),
    title="Ping to an external host",
    threat="recon",
    needs=("conn",),
    params=(

    ),
    false_positives="Administrators testing connectivity (ping 8.8.8.8); monitoring of "
                    "external services.",
    query=_outbound_query,
    summary=lambda f, p: (f"{f['host']} pinged {int(f['observed'])} external host(s) "
                          f"(companies rarely ping out)"),
))
