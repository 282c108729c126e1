"""What the console's own pages show, read from an open SQLite connection (sync functions:
Datasette runs them in its database thread with ``execute_fn``; the report calls them directly).

Every page tolerates a database without the optional tables (``incidents``, ``app_usage``,
``assets``, ``suppression_hits``): a panel whose table is missing is empty.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3

from zeekwatch.console.panels import OPEN, family, resolve, where
from zeekwatch.console.response import steps_for

LIST_LIMIT = 500  # rows in a list page or the report's findings table


def rows(conn: sqlite3.Connection, sql: str, params=()) -> list[dict]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def clean_options(args) -> dict:
    """The filter parameters given (non-empty), from a request's args or a dict."""
    keys = ("since", "until", "net", "detector", "status", "tier")
    return {k: str(args.get(k)).strip() for k in keys if args.get(k) not in (None, "")}


def open_list(conn: sqlite3.Connection, options: dict, limit: int = LIST_LIMIT) -> dict:
    """Findings matching the filters (open ones unless a status is chosen): overdue first, then
    the highest tier and urgency, then the earliest due time."""
    opts = dict(options)
    status_clause = "" if opts.get("status") else f" AND status IN {OPEN}"
    base = "FROM findings WHERE 1" + status_clause + " " + where()
    sql = resolve(base, opts)
    params = {k: v for k, v in opts.items() if ":" + k in sql}
    total = conn.execute("SELECT count(*) " + sql, params).fetchone()[0]
    found = rows(conn, "SELECT id, host, detector, threat, status, tier, urgency, due_at, "
                 "first_seen, last_seen, summary, distinct_values, due_at < (SELECT zw_now()) AS overdue " + sql
                 + " ORDER BY overdue DESC, tier DESC, urgency DESC, due_at, id LIMIT :zw_limit",
                 params | {"zw_limit": limit})
    for r in found:  # a few of the distinct values (names, ports, peers) as examples
        r["examples"] = [str(v) for v in (_json(r.pop("distinct_values")) or [])[:3]]
    return {"total": total, "rows": found, "limit": limit, "options": opts}


def incidents_open(conn: sqlite3.Connection, options: dict) -> list[dict] | None:
    """Open incidents, overdue first (None when the database has no incidents table)."""
    if "incidents" not in tables(conn):
        return None
    cols = {r[1] for r in conn.execute("PRAGMA table_info(incidents)")}
    need = {"id", "host", "status", "tier", "due_at"}
    if not need <= cols:
        return None
    extra = ", ".join(c for c in ("summary", "urgency", "owner", "first_seen", "last_seen")
                      if c in cols)
    sql = (f"SELECT id, host, status, tier, due_at{', ' + extra if extra else ''}, "
           f"due_at < (SELECT zw_now()) AS overdue FROM incidents WHERE status IN {OPEN} "
           "[[ AND zw_in_net(host, :net) ]] [[ AND tier = :tier ]] "
           "ORDER BY overdue DESC, tier DESC, due_at LIMIT 200")
    sql = resolve(sql, options)
    return rows(conn, sql, {k: v for k, v in options.items() if ":" + k in sql})


def incident_data(conn: sqlite3.Connection, iid: str) -> dict | None:
    """An incident's page: the incident, its findings, score terms, playbook, audit trail."""
    have = tables(conn)
    if "incidents" not in have:
        return None
    found = rows(conn, "SELECT * FROM incidents WHERE id = ?", [iid])
    if not found:
        return None
    inc = found[0]
    members = rows(conn, "SELECT f.id, f.detector, f.threat, f.status, f.tier, f.urgency, "
                   "f.first_seen, f.last_seen, f.summary FROM incident_findings m "
                   "JOIN findings f ON f.id = m.finding_id WHERE m.incident_id = ? "
                   "ORDER BY f.first_seen, f.id", [iid]) if "incident_findings" in have else []
    audit = rows(conn, "SELECT at, who, action, old_status, new_status, note FROM incident_audit "
                 "WHERE incident_id = ? ORDER BY id", [iid]) if "incident_audit" in have else []
    score = _json(inc.get("score_terms")) or {}
    return {"i": inc, "findings": members, "audit": audit, "score": score,
            "terms": score.get("terms") or [] if isinstance(score, dict) else [],
            "families": _json(inc.get("families")) or [],
            "detectors": _json(inc.get("detectors")) or {},
            "steps": steps_for(inc.get("threat"), score.get("asset_class")
                               if isinstance(score, dict) else None)}


def asset_of(conn: sqlite3.Connection, host: str) -> dict | None:
    """The inventory row for ``host``: its address, else the most specific CIDR holding it."""
    if "assets" not in tables(conn):
        return None
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    best = None
    for r in rows(conn, "SELECT address, class, name, owner FROM assets"):
        try:
            net = ipaddress.ip_network(r["address"], strict=False)
        except ValueError:
            continue
        if addr.version == net.version and addr in net and (
                best is None or net.prefixlen > best[0].prefixlen):
            best = (net, r)
    return best[1] if best else None


def host_data(conn: sqlite3.Connection, host: str) -> dict:
    """A host's page: asset class, findings, app usage, incidents and one timeline of them."""
    have = tables(conn)
    findings = rows(conn, "SELECT id, detector, threat, status, tier, urgency, due_at, first_seen, "
                    "last_seen, summary, score_terms FROM findings WHERE host = ? "
                    "ORDER BY first_seen, id", [host])
    usage = rows(conn, "SELECT app, category, source, evidence, first_seen, last_seen, count "
                 "FROM app_usage WHERE host = ? ORDER BY first_seen", [host]) \
        if "app_usage" in have else []
    incidents = []
    if "incidents" in have:
        cols = {r[1] for r in conn.execute("PRAGMA table_info(incidents)")}
        if {"id", "host"} <= cols:
            incidents = rows(conn, "SELECT * FROM incidents WHERE host = ? ORDER BY 1", [host])
    asset = asset_of(conn, host)
    scored_class = None
    for f in findings:
        terms = _json(f.pop("score_terms"))
        scored_class = (terms or {}).get("asset_class") or scored_class
        f["family"] = family(f["threat"])
    timeline = [{"kind": "finding", "label": f["detector"], "start": f["first_seen"],
                 "end": f["last_seen"], "status": f["status"]} for f in findings]
    timeline += [{"kind": "app usage", "label": u["app"], "start": u["first_seen"],
                  "end": u["last_seen"], "status": u["category"]} for u in usage]
    timeline += [{"kind": "incident", "label": f"incident {i['id']}",
                  "start": i.get("first_seen") or i.get("opened_at") or i.get("created_at"),
                  "end": i.get("last_seen") or i.get("first_seen") or i.get("opened_at"),
                  "status": i.get("status")} for i in incidents]
    timeline = [t for t in timeline if t["start"]]
    return {"host": host, "findings": findings, "usage": usage, "incidents": incidents,
            "asset": asset, "asset_class": (asset or {}).get("class") or scored_class or "unknown",
            "timeline": timeline}


def finding_data(conn: sqlite3.Connection, fid: str) -> dict | None:
    """A finding's page: explanation, score terms, evidence, audit trail, response steps."""
    found = rows(conn, "SELECT * FROM findings WHERE id = ?", [fid])
    if not found:
        return None
    f = found[0]
    have = tables(conn)
    evidence = rows(conn, "SELECT kind, value FROM evidence WHERE finding_id = ? ORDER BY kind, value",
                    [fid]) if "evidence" in have else []
    audit = rows(conn, "SELECT at, who, action, old_status, new_status, note FROM audit "
                 "WHERE finding_id = ? ORDER BY id", [fid]) if "audit" in have else []
    hits = rows(conn, "SELECT kind, reason, at, who, released_at FROM suppression_hits "
                "WHERE finding_id = ? ORDER BY id", [fid]) if "suppression_hits" in have else []
    score = _json(f.get("score_terms")) or {}
    return {"f": f, "details": _json(f.get("details")) or {},
            "distinct": _json(f.get("distinct_values")) or [], "score": score,
            "terms": score.get("terms") or [], "evidence": evidence, "audit": audit,
            "hits": hits, "family": family(f.get("threat")),
            "steps": steps_for(f.get("threat"), score.get("asset_class"))}


def _json(text):
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None
