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
    distinct_window,
    in_list,
    pair,
    register,
    service_in,
    window_candidates,
)

NETBIOS = {("udp", 137), ("udp", 138), ("tcp", 139)}


def _horizontal_query(p: dict, ctx: Context) -> str:
    nb = " OR ".join(f"(c.proto = '{pr}' AND c.resp_p = {port})" for pr, port in sorted(NETBIOS))
    # addresses as integer ids (cheap to join and count); text only for what is listed
    events = f"""
SELECT c.orig_id AS hid, c.proto, c.resp_p, c.t, c.resp_id AS v, c.rid,
       CASE WHEN {nb} THEN {int(p['netbios_min_hosts'])} ELSE {int(p['min_hosts'])} END AS thr
FROM cx c
LEFT JOIN resolved r ON r.pair = {pair('c.orig_id', 'c.resp_id')}
WHERE c.ts IS NOT NULL AND c.proto IN ('tcp', 'udp') AND c.resp_p IS NOT NULL
  AND c.orig_internal AND c.initiated
  AND (c.failed OR r.pair IS NULL)
  AND {in_list('c.resp_p', p['ignore_ports'], negate=True)}"""
    eps = distinct_window(events, ["hid", "proto", "resp_p"], p["window"], "thr", ctx.dialect,
                          label="label", lookup="SELECT rid, uid, resp_h AS label FROM cx")
    return window_candidates(eps, host="z.a", key="x.proto || '/' || CAST(x.resp_p AS VARCHAR)",
                             joins="JOIN zw_addr z ON z.id = x.hid")


def _horizontal_summary(f: dict, p: dict) -> str:
    return (f"{f['host']} tried {int(f['observed'])} distinct hosts on {f['key']} within "
            f"{p['window']} s (failed or never-resolved; threshold {int(f['threshold'])})")


register(Detector(
    id="horizontal_scan",
    title="Horizontal scan (one port, many hosts)",
    threat="worm",
    needs=("conn",),
    params=(
        Param('window', 60, 'int', "window length, seconds", min=1, max=86400, unit='s'),
        Param('min_hosts', 20, 'int', "distinct destination hosts", min=1),
        Param('netbios_min_hosts', 64, 'int', "threshold for udp/137, udp/138, tcp/139", min=1),
        Param('ignore_ports', [], 'ports', "destination ports never counted"),
    ),
    threshold="min_hosts",
    false_positives="Network management and inventory tools; P2P clients and messengers "
                    "(suppressed by app usage); a proxy or NAT gateway that looks like one host.",
    query=_horizontal_query,
    summary=_horizontal_summary,
    windowed=True,
))


def _vertical_query(p: dict, ctx: Context) -> str:
    scope = "c.orig_internal" if p["internal_only"] else "TRUE"
    # v: the (proto, port) as one integer; label: its text, for the listed values
    events = f"""
SELECT c.orig_id AS hid, c.resp_id AS pid, c.t,
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
    eps = distinct_window(events, ["hid", "pid"], p["window"], p["min_ports"], ctx.dialect,
                          label="label")
    return window_candidates(eps, host="h.a", peer="r.a",
                             joins="JOIN zw_addr h ON h.id = x.hid JOIN zw_addr r ON r.id = x.pid")


def _vertical_summary(f: dict, p: dict) -> str:
    return (f"{f['host']} tried {int(f['observed'])} distinct ports of {f['peer']} within "
            f"{p['window']} s, failed attempts (threshold {int(f['threshold'])})")


register(Detector(
    id="vertical_scan",
    title="Vertical scan (one host, many ports)",
    threat="worm",
    needs=("conn",),
    params=(
        Param('window', 60, 'int', "window length, seconds", min=1, max=86400, unit='s'),
        Param('min_ports', 20, 'int', "distinct destination ports", min=1),
        Param('internal_only', False, 'bool', "only internal scanners"),
        Param('dynamic_services', ["ftp-data", "irc-dcc-data", "dce_rpc", "sip", "rtp"], 'texts', "services never counted"),
        Param('control_ports', [21, 2121], 'ports', "FTP control ports that make later high-port attempts data channels"),
    ),
    threshold="min_ports",
    false_positives="Vulnerability scanners run by the security team; FTP passive data "
                    "channels are excluded (control connection on 21 to the same host).",
    query=_vertical_query,
    summary=_vertical_summary,
    windowed=True,
))

ECHO = "((c.proto = 'icmp' AND c.orig_p IN (8, 128)))"


def _sweep_query(p: dict, ctx: Context) -> str:
    events = f"""
SELECT c.orig_h AS host, c.t, c.resp_h AS v, c.uid
FROM cx c WHERE c.ts IS NOT NULL AND {ECHO} AND c.orig_internal"""
    eps = distinct_window(events, ["host"], p["window"], p["min_hosts"], ctx.dialect)
    return window_candidates(eps, key="'icmp/echo'")


register(Detector(
    id="ping_sweep",
    title="Ping sweep",
    threat="worm",
    needs=("conn",),
    params=(
        Param('window', 60, 'int', "window length, seconds", min=1, max=86400, unit='s'),
        Param('min_hosts', 10, 'int', "distinct hosts pinged", min=1),
    ),
    threshold="min_hosts",
    false_positives="Monitoring systems (Nagios, PRTG) that ping many hosts: list them in "
                    "an allowlist.",
    query=_sweep_query,
    summary=lambda f, p: (f"{f['host']} pinged {int(f['observed'])} distinct hosts within "
                          f"{p['window']} s (threshold {int(f['threshold'])})"),
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
WHERE c.ts IS NOT NULL AND {ECHO} AND c.orig_internal AND NOT c.resp_internal
GROUP BY c.orig_h"""


register(Detector(
    id="outbound_ping",
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
