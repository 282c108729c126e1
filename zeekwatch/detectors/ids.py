"""Suricata alerts as findings: rolled up per (host, alert category), typed by the category.

An IDS raises the same alert many times for one incident, and many signatures of one kind
(reputation lists, scanners) for one attack; zeekwatch turns a run of alerts of one category
on one host into one finding that lists every signature with its count. The threat type (and so the urgency) comes from
the alert category: a trojan's C2 weighs more than a policy violation.
"""

from __future__ import annotations

from zeekwatch.detectors.base import Param, VALUES_LIMIT, Context, Detector, register, sql_text
from zeekwatch.errors import ConfigError

# Suricata/ET classification descriptions (classification.config) -> zeekwatch threat type.
# Matched case-insensitively; anything else gets ``default_threat``. Config key
# ``category_threats`` adds entries or overrides these.
CATEGORY_THREATS: dict[str, str] = {
    "A Network Trojan was detected": "c2",
    "Malware Command and Control Activity Detected": "c2",
    "Domain Observed Used for C2 Detected": "c2",
    "Attempted Information Leak": "recon",
    "Information Leak": "recon",
    "Detection of a Network Scan": "recon",
    "Large Scale Information Leak": "exfiltration",
    "Potential Corporate Privacy Violation": "policy",
    "Potentially Bad Traffic": "policy",
    "Not Suspicious Traffic": "policy",
    "Possibly Unwanted Program Detected": "policy",
    "Generic Protocol Command Decode": "policy",
}


def threat_case(col: str, p: dict) -> str:
    """SQL: the threat type of the alert category in ``col`` (built-in map + params)."""
    extra = p.get("category_threats") or {}
    if not isinstance(extra, dict) or not all(isinstance(v, str) and v for v in extra.values()):
        raise ConfigError("detectors.ids_alert.category_threats: expected a table of "
                          "category = \"threat\" strings")
    mapping = {k.lower(): v for k, v in CATEGORY_THREATS.items()}
    mapping.update({k.lower(): v for k, v in extra.items()})
    whens = " ".join(f"WHEN {sql_text(k)} THEN {sql_text(v)}" for k, v in sorted(mapping.items()))
    return f"CASE lower({col}) {whens} ELSE {sql_text(p['default_threat'])} END"


def _alerts(ctx: Context) -> str:
    """SQL: one row per alert with its host (internal side, else the source), peer, which
    side the host was (src/dst) and the roll-up group (category, else the signature)."""
    src_is_host = f"({ctx.internal('a.orig_h')} OR NOT {ctx.internal('a.resp_h')})"
    return f"""
SELECT host, peer, side, t, sid, gid, signature, category, severity, uid,
       coalesce('category:' || category, 'sid:' || CAST(sid AS VARCHAR)) AS grp_key FROM (
  SELECT CASE WHEN {src_is_host} THEN a.orig_h ELSE a.resp_h END AS host,
         CASE WHEN {src_is_host} THEN a.resp_h ELSE a.orig_h END AS peer,
         CASE WHEN {src_is_host} THEN 'src' ELSE 'dst' END AS side,
         {ctx.epoch('a.ts')} AS t, a.sid, a.gid, a.signature, nullif(a.category, '') AS category,
         a.severity, coalesce(a.community_id, CAST(a.flow_id AS VARCHAR)) AS uid
  FROM alert a WHERE a.ts IS NOT NULL AND a.sid IS NOT NULL) x
WHERE host IS NOT NULL"""


def _ids_query(p: dict, ctx: Context) -> str:
    """Suricata alerts (table alert) rolled up per host and alert category (classtype): the
    alerts of one category on one host whose consecutive gaps are ≤ ``group_window``
    (3600 s) are one finding, whatever their signatures (a host scanned by hundreds of
    reputation-list signatures is one finding). Alerts without a category group per
    signature. host = the internal side (the source when both or neither are internal),
    peer = the most frequent other side (earliest on ties), key = 'category:<category>'
    (else 'sid:<sid>'). observed = number of alerts, threshold = 1, distinct values = peer
    addresses, uids = community ids (else flow ids). Threat type from the category through
    ``CATEGORY_THREATS`` overlaid with ``category_threats`` (default ``default_threat`` =
    'ids'). Details keep every distinct signature (``signatures``: sid, gid, signature,
    count, most frequent first; ``sids``), the category, the most severe severity (Suricata's
    1 is the highest), ``host_role`` (src, dst or both: the host's side of the alerts), and
    sid, gid and signature when the finding has a single signature.
    Needs alert: ts, orig_h, resp_h, sid, gid, signature, category, severity, flow_id,
    community_id.

    False positives: those of the rule set (tune noisy signatures with suppressions and
    `zeekwatch tune suricata`, which works per signature); policy and protocol-decode
    categories are scored low.
    """
    d, W = ctx.dialect, float(p["group_window"])
    part = "PARTITION BY host, grp_key"
    one = f"({d.item('s.signatures', 1)})"
    return f"""
WITH al AS ({_alerts(ctx)}),
gaps AS (
  SELECT al.*, CASE WHEN t - lag(t) OVER ({part} ORDER BY t) <= {W} THEN 0 ELSE 1 END AS brk
  FROM al),
g AS (
  SELECT gaps.*, sum(brk) OVER ({part} ORDER BY t
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS grp
  FROM gaps),
peers AS (
  SELECT host, grp_key, grp, peer, row_number() OVER (
           {part}, grp ORDER BY count(*) DESC, min(t), peer) AS rk
  FROM g WHERE peer IS NOT NULL GROUP BY host, grp_key, grp, peer),
sigs AS (
  SELECT host, grp_key, grp, sid, max(gid) AS gid, max(signature) AS signature, count(*) AS n
  FROM g GROUP BY host, grp_key, grp, sid),
siglist AS (
  SELECT host, grp_key, grp, count(*) AS signature_total,
         {d.ordered_list(d.record({'sid': 'sid', 'gid': 'gid', 'signature': 'signature',
                                   'count': 'n'}), '-n, sid', None)} AS signatures,
         {d.ordered_list('sid', 'sid', None)} AS sids
  FROM sigs GROUP BY host, grp_key, grp),
agg AS (
  SELECT host, grp_key, grp, min(t) AS t_first, max(t) AS t_last, count(*) AS n,
         count(DISTINCT peer) AS distinct_total,
         {d.distinct_list('peer', VALUES_LIMIT)} AS distinct_values,
         {d.distinct_list('uid', VALUES_LIMIT)} AS uids,
         max(category) AS category, min(severity) AS severity,
         CASE WHEN bool_or(side = 'src') AND bool_or(side = 'dst') THEN 'both'
              WHEN bool_or(side = 'src') THEN 'src' ELSE 'dst' END AS host_role
  FROM g GROUP BY host, grp_key, grp)
SELECT a.host, pr.peer, a.grp_key AS key, a.t_first, a.t_last,
       a.n AS observed, 1 AS threshold, a.distinct_total, a.distinct_values, a.uids,
       a.n AS evidence_total, {threat_case('a.category', p)} AS threat,
       a.category, a.severity, a.host_role, s.signature_total, s.signatures, s.sids,
       CASE WHEN s.signature_total = 1 THEN {one}.signature END AS signature,
       CASE WHEN s.signature_total = 1 THEN {one}.sid END AS sid,
       CASE WHEN s.signature_total = 1 THEN {one}.gid END AS gid
FROM agg a
JOIN siglist s ON s.host = a.host AND s.grp_key = a.grp_key AND s.grp = a.grp
LEFT JOIN peers pr
  ON pr.host = a.host AND pr.grp_key = a.grp_key AND pr.grp = a.grp AND pr.rk = 1"""


def _ids_summary(f: dict, p: dict) -> str:
    n = int(f["observed"])
    k = int(f.get("signature_total") or 1)
    alerts = f"{n} alert{'s' if n != 1 else ''}"
    if k == 1:
        text = (f"{f['host']}: {alerts} \"{f.get('signature')}\" (sid:{f.get('sid')}, "
                f"{f.get('category') or 'no category'}, severity {f.get('severity')})")
    else:
        top = (f.get("signatures") or [{}])[0]
        text = (f"{f['host']}: {alerts} of {k} signatures in \"{f.get('category')}\" (most: "
                f"\"{top.get('signature')}\" ×{top.get('count')}; severity {f.get('severity')})")
    if f.get("peer"):
        text += f" with {f['peer']}"
        others = int(f.get("distinct_total") or 0) - 1
        if others > 0:
            text += f" and {others} other peer{'s' if others != 1 else ''}"
    return text


register(Detector(
    id="ids_alert",
    attack=("T1190", "T1046", "T1071"),
    title="Suricata alert",
    threat="ids",
    needs=("alert",),
    params=(
        Param('group_window', 3600, 'int', "seconds of silence after which the same alert category on the same host is a new finding", min=1, unit='s'),
        Param('default_threat', 'ids', 'text', "threat type of categories not in the map"),
        Param('category_threats', {}, 'table', "extra category → threat entries, over the built-in map"),
    ),
    false_positives="Whatever the rule set raises wrongly: noisy or outdated signatures "
                    "(suppress them; `zeekwatch tune suricata` writes threshold.config lines), "
                    "policy and protocol-decode alerts (scored low as 'policy').",
    query=_ids_query,
    summary=_ids_summary,
    doc=_ids_query.__doc__,
))
