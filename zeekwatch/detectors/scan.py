"""Worm behaviour: horizontal and vertical scans, ping sweeps, outbound pings."""

from __future__ import annotations

from .base import Context, Detector, distinct_window, in_list, register, sql_list

# Zeek conn_state values of an attempt that got no usable answer. S0: no reply; REJ: refused;
# RSTOS0: originator SYN then RST, no SYN-ACK; SH: originator SYN then FIN, no SYN-ACK.
FAILED_STATES = ("S0", "REJ", "RSTOS0", "SH")
# States that mean the "originator" never sent a SYN: backscatter or mid-stream pickup.
BACKSCATTER_STATES = ("SHR", "RSTRH", "OTH")
NETBIOS = {("udp", 137), ("udp", 138), ("tcp", 139)}


def not_backscatter(alias: str = "c") -> str:
    """SQL: the originator really initiated (a TCP SYN is in the history, or no history)."""
    return (f"NOT coalesce({alias}.proto = 'tcp' AND ({alias}.conn_state IN "
            f"{sql_list(BACKSCATTER_STATES)} OR ({alias}.history IS NOT NULL AND "
            f"{alias}.history NOT LIKE '%S%')), FALSE)")


def failed(alias: str = "c") -> str:
    return f"{alias}.conn_state IN {sql_list(FAILED_STATES)}"


def _horizontal_query(p: dict, ctx: Context) -> str:
    nb = " OR ".join(f"(c.proto = '{pr}' AND c.resp_p = {port})" for pr, port in sorted(NETBIOS))
    events = f"""
SELECT c.orig_h AS host, c.proto, c.resp_p, {ctx.epoch('c.ts')} AS t, c.resp_h AS v, c.uid,
       ({nb}) AS netbios
FROM conn c
LEFT JOIN resolved r ON r.host = c.orig_h AND r.addr = c.resp_h
WHERE c.ts IS NOT NULL AND c.proto IN ('tcp', 'udp') AND c.resp_p IS NOT NULL
  AND {ctx.internal('c.orig_h')} AND {not_backscatter()}
  AND ({failed()} OR r.addr IS NULL)
  AND {in_list('c.resp_p', p['ignore_ports'], negate=True)}"""
    normal = distinct_window(f"SELECT host, proto, resp_p, t, v, uid FROM ({events}) x WHERE NOT netbios",
                             ["host", "proto", "resp_p"], p["window"], p["min_hosts"], ctx.dialect)
    netbios = distinct_window(f"SELECT host, proto, resp_p, t, v, uid FROM ({events}) x WHERE netbios",
                              ["host", "proto", "resp_p"], p["window"], p["netbios_min_hosts"],
                              ctx.dialect)
    cols = ("host, NULL AS peer, proto || '/' || CAST(resp_p AS VARCHAR) AS key, t_first, t_last, "
            "observed, {thr} AS threshold, distinct_total, distinct_values, uids, evidence_total")
    return (f"SELECT {cols.format(thr=p['min_hosts'])} FROM ({normal}) a UNION ALL "
            f"SELECT {cols.format(thr=p['netbios_min_hosts'])} FROM ({netbios}) b")


def _horizontal_summary(f: dict, p: dict) -> str:
    return (f"{f['host']} tried {int(f['observed'])} distinct hosts on {f['key']} within "
            f"{p['window']} s (failed or never-resolved; threshold {int(f['threshold'])})")


register(Detector(
    id="horizontal_scan",
    title="Horizontal scan (one port, many hosts)",
    threat="worm",
    needs=("conn",),
    defaults={"window": 60, "min_hosts": 20, "netbios_min_hosts": 64, "ignore_ports": []},
    false_positives="Network management and inventory tools; P2P clients and messengers "
                    "(suppressed by app usage); a proxy or NAT gateway that looks like one host.",
    query=_horizontal_query,
    summary=_horizontal_summary,
    windowed=True,
))


def _vertical_query(p: dict, ctx: Context) -> str:
    scope = ctx.internal("c.orig_h") if p["internal_only"] else "TRUE"
    events = f"""
SELECT c.orig_h AS host, c.resp_h AS peer, {ctx.epoch('c.ts')} AS t,
       c.proto || '/' || CAST(c.resp_p AS VARCHAR) AS v, c.uid
FROM conn c
WHERE c.ts IS NOT NULL AND c.proto IN ('tcp', 'udp') AND c.resp_p IS NOT NULL
  AND {scope} AND {failed()} AND {not_backscatter()}
  AND {in_list("coalesce(c.service, '')", p['dynamic_services'], negate=True)}
  AND NOT EXISTS (
    SELECT 1 FROM conn f
    WHERE f.orig_h = c.orig_h AND f.resp_h = c.resp_h AND f.proto = 'tcp'
      AND {in_list('f.resp_p', p['control_ports'])} AND c.resp_p >= 1024
      AND NOT ({failed('f')})
      AND f.ts <= c.ts AND {ctx.epoch('f.ts')} + coalesce(f.duration, 0) + 60 >= {ctx.epoch('c.ts')})"""
    eps = distinct_window(events, ["host", "peer"], p["window"], p["min_ports"], ctx.dialect)
    return (f"SELECT host, peer, NULL AS key, t_first, t_last, observed, {p['min_ports']} AS threshold, "
            f"distinct_total, distinct_values, uids, evidence_total FROM ({eps}) x")


def _vertical_summary(f: dict, p: dict) -> str:
    return (f"{f['host']} tried {int(f['observed'])} distinct ports of {f['peer']} within "
            f"{p['window']} s, failed attempts (threshold {int(f['threshold'])})")


register(Detector(
    id="vertical_scan",
    title="Vertical scan (one host, many ports)",
    threat="worm",
    needs=("conn",),
    defaults={"window": 60, "min_ports": 20, "internal_only": False,
              "dynamic_services": ["ftp-data", "irc-dcc-data", "dce_rpc", "sip", "rtp"],
              "control_ports": [21, 2121]},
    false_positives="Vulnerability scanners run by the security team; FTP passive data "
                    "channels are excluded (control connection on 21 to the same host).",
    query=_vertical_query,
    summary=_vertical_summary,
    windowed=True,
))

ECHO = "((c.proto = 'icmp' AND c.orig_p IN (8, 128)))"


def _sweep_query(p: dict, ctx: Context) -> str:
    events = f"""
SELECT c.orig_h AS host, {ctx.epoch('c.ts')} AS t, c.resp_h AS v, c.uid
FROM conn c WHERE c.ts IS NOT NULL AND {ECHO} AND {ctx.internal('c.orig_h')}"""
    eps = distinct_window(events, ["host"], p["window"], p["min_hosts"], ctx.dialect)
    return (f"SELECT host, NULL AS peer, 'icmp/echo' AS key, t_first, t_last, observed, "
            f"{p['min_hosts']} AS threshold, distinct_total, distinct_values, uids, evidence_total "
            f"FROM ({eps}) x")


register(Detector(
    id="ping_sweep",
    title="Ping sweep",
    threat="worm",
    needs=("conn",),
    defaults={"window": 60, "min_hosts": 10},
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
       min({ctx.epoch('c.ts')}) AS t_first, max({ctx.epoch('c.ts')}) AS t_last,
       count(DISTINCT c.resp_h) AS observed, 1 AS threshold,
       count(DISTINCT c.resp_h) AS distinct_total,
       {d.distinct_list('c.resp_h', 20)} AS distinct_values,
       {d.first_list('c.uid', 20)} AS uids, count(*) AS evidence_total
FROM conn c
WHERE c.ts IS NOT NULL AND {ECHO} AND {ctx.internal('c.orig_h')} AND NOT {ctx.internal('c.resp_h')}
GROUP BY c.orig_h"""


register(Detector(
    id="outbound_ping",
    title="Ping to an external host",
    threat="recon",
    needs=("conn",),
    defaults={},
    false_positives="Administrators testing connectivity (ping 8.8.8.8); monitoring of "
                    "external services.",
    query=_outbound_query,
    summary=lambda f, p: (f"{f['host']} pinged {int(f['observed'])} external host(s) "
                          f"(companies rarely ping out)"),
))
