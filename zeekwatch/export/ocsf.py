"""A finding as an OCSF Detection Finding (class 2004, category 2 Findings), OCSF 1.7.0.

Severity and risk level follow the urgency (1..10); the finding's status maps to OCSF's
status ids (new, in progress, suppressed, resolved) with zeekwatch's own word in
``status_detail``; the detector is the analytic (a rule), its ATT&CK techniques are
``finding_info.attacks``; host and peer are the evidence endpoints and each evidence flow's
community id is ``connection_info.community_uid``. What OCSF has no attribute for (score
terms, the evidence uids, due time) is under ``unmapped.zeekwatch``. Tests validate every
event against the OCSF schema (pydantic-ocsf's models of the published 1.7.0 schema).
"""

from __future__ import annotations

import ipaddress

from zeekwatch import __version__
from zeekwatch.attack import ATTACK_URL, TECHNIQUES
from zeekwatch.attack import VERSION as ATTACK_VERSION
from zeekwatch.timefmt import parse_iso

OCSF_VERSION = "1.7.0"
CLASS_UID, CATEGORY_UID = 2004, 2
ACTIVITIES = {"new": (1, "Create"), "updated": (2, "Update"), "closed": (3, "Close")}
SEVERITIES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
RISK_LEVELS = {0: "Info", 1: "Low", 2: "Medium", 3: "High", 4: "Critical"}
# zeekwatch status -> OCSF finding status_id (1 New, 2 In Progress, 3 Suppressed, 4 Resolved)
STATUS_IDS = {"new": (1, "New"), "investigating": (2, "In Progress"),
              "contained": (2, "In Progress"), "suppressed": (3, "Suppressed"),
              "resolved": (4, "Resolved"), "false_positive": (4, "Resolved")}
CLOSED = ("resolved", "false_positive")


def severity_id(urgency: int | None) -> int:
    """Urgency 1..10 -> OCSF severity: 1-3 Low, 4-5 Medium, 6-7 High, 8-10 Critical."""
    if urgency is None:
        return 0
    return 2 if urgency <= 3 else 3 if urgency <= 5 else 4 if urgency <= 7 else 5


def _ms(text: str | None) -> int | None:
    return None if not text else int(parse_iso(text).timestamp() * 1000)


def _ip(text: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(text)) if text else None
    except ValueError:
        return None


def _attacks(attack: list[dict]) -> list[dict]:
    out = []
    for t in attack:
        parent = t["id"].split(".")[0]
        item: dict = {"version": ATTACK_VERSION}
        if "." in t["id"]:
            known = TECHNIQUES.get(parent)
            item["technique"] = {"uid": parent, "name": known[0] if known else None,
                                 "src_url": ATTACK_URL.format(parent)}
            item["sub_technique"] = {"uid": t["id"], "name": t["name"], "src_url": t["reference"]}
        else:
            item["technique"] = {"uid": t["id"], "name": t["name"], "src_url": t["reference"]}
        for ta in t["tactics"] or [None]:
            one = dict(item)
            if ta:
                one["tactic"] = {"uid": ta["id"], "name": ta["name"],
                                 "src_url": f"https://attack.mitre.org/tactics/{ta['id']}/"}
            out.append(one)
    return out


def _clean(d):
    if isinstance(d, dict):
        return {k: _clean(v) for k, v in d.items() if v is not None and v != [] and v != {}}
    if isinstance(d, list):
        return [_clean(x) for x in d]
    return d


def _evidences(rec: dict) -> list[dict]:
    host, peer = _ip(rec["host"]), _ip(rec.get("peer"))
    ev = rec["evidence"]
    base = {"src_endpoint": {"ip": host} if host else None,
            "dst_endpoint": {"ip": peer} if peer else None}
    out = [dict(base, name="zeekwatch evidence",
                data={"uids": ev["uids"], "values": ev["values"],
                      "evidence_total": rec.get("evidence_total")})]
    for cid in ev["community_ids"]:
        out.append(dict(base, connection_info={"community_uid": cid, "direction_id": 0}))
    return out


def event(rec: dict, change: str | None = None) -> dict:
    """The OCSF Detection Finding of an export record. ``change``: "new" or "updated" (follow),
    else the activity is Create, or Close for a closed finding."""
    activity = "closed" if rec["status"] in CLOSED else (change if change in ACTIVITIES else "new")
    act_id, act_name = ACTIVITIES[activity]
    sev = severity_id(rec.get("urgency"))
    status_id, status = STATUS_IDS.get(rec["status"], (99, "Other"))
    terms = rec.get("score_terms") or {}
    inc = rec.get("incident")
    risk_level = None if rec.get("urgency") is None else min(4, max(0, sev - 1))
    host, peer = _ip(rec["host"]), _ip(rec.get("peer"))
    observables = [{"name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": host}]
    if peer:
        observables.append({"name": "dst_endpoint.ip", "type_id": 2, "type": "IP Address",
                            "value": peer})
    out = {
        "class_uid": CLASS_UID, "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID, "category_name": "Findings",
        "activity_id": act_id, "activity_name": act_name,
        "type_uid": CLASS_UID * 100 + act_id, "type_name": f"Detection Finding: {act_name}",
        "time": _ms(rec["last_seen"]), "start_time": _ms(rec["first_seen"]),
        "end_time": _ms(rec["last_seen"]),
        "severity_id": sev, "severity": SEVERITIES.get(sev, "Unknown"),
        "status_id": status_id, "status": status, "status_detail": rec["status"],
        "message": rec.get("summary"), "is_alert": True,
        "risk_score": rec.get("urgency"), "risk_level_id": risk_level,
        "risk_level": None if risk_level is None else RISK_LEVELS[risk_level],
        "metadata": {"version": OCSF_VERSION, "uid": rec["id"], "log_name": "zeekwatch.findings",
                     "product": {"name": "zeekwatch", "vendor_name": "zeekwatch",
                                 "version": __version__}},
        "finding_info": {
            "uid": rec["id"], "title": rec.get("title") or rec["detector"],
            "desc": rec.get("summary"), "types": [rec["threat"]] if rec.get("threat") else None,
            "first_seen_time": _ms(rec["first_seen"]), "last_seen_time": _ms(rec["last_seen"]),
            "analytic": {"uid": rec["detector"], "name": rec["detector"], "type_id": 1,
                         "type": "Rule", "desc": rec.get("title")},
            "attacks": _attacks(rec["attack"]),
        },
        "evidences": _evidences(rec),
        "observables": observables,
        "remediation": ({"desc": "\n".join(inc["playbook"])} if inc and inc.get("playbook")
                        else None),
        "unmapped": {"zeekwatch": {
            "urgency": rec.get("urgency"), "tier": rec.get("tier"), "due_at": rec.get("due_at"),
            "key": rec.get("key"), "observed": rec.get("observed"),
            "threshold": rec.get("threshold"), "suppressed_reason": rec.get("suppressed_reason"),
            "asset_class": terms.get("asset_class"), "score_terms": terms.get("terms"),
            "evidence_uids": rec["evidence"]["uids"],
            "community_ids": rec["evidence"]["community_ids"], "incident": inc}},
    }
    return _clean(out)
