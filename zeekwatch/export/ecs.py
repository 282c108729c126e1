"""A finding as an Elastic Common Schema (ECS) alert document.

One document per finding (``event.kind: alert``, ``event.category: [network,
intrusion_detection]``). Fields are ECS's own wherever ECS has one; what ECS has no field for
(status, tier, due time, evidence uids, score terms, playbook) is kept under the custom
``zeekwatch.*`` namespace, as ECS asks of custom fields. The mapping is in docs/integrations.md;
tests validate every document against the ECS field reference (types and allowed values).
"""

from __future__ import annotations

import ipaddress

from zeekwatch import __version__
from zeekwatch.attack import ATTACK_URL, TECHNIQUES

ECS_VERSION = "9.4.0"
DOCS = "https://github.com/zeekwatch/zeekwatch/blob/main/docs/detectors/{}.md"


def _ip(text: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(text)) if text else None
    except ValueError:
        return None


def _threat(attack: list[dict]) -> dict:
    """ECS ``threat.*``: techniques, sub-techniques (their parent as the technique) and tactics."""
    tech: dict[str, dict] = {}
    subs: dict[str, dict] = {}
    tactics: dict[str, dict] = {}
    for t in attack:
        parent = t["id"].split(".")[0]
        if "." in t["id"]:
            subs[t["id"]] = t
            known = TECHNIQUES.get(parent)
            tech.setdefault(parent, {"id": parent, "name": known[0] if known else None,
                                     "reference": ATTACK_URL.format(parent)})
        else:
            tech[parent] = t
        for ta in t["tactics"]:
            tactics[ta["id"]] = ta
    out: dict = {"framework": "MITRE ATT&CK"}
    if tech:
        out["technique"] = {"id": list(tech), "name": [t["name"] for t in tech.values()],
                            "reference": [t["reference"] for t in tech.values()]}
        if subs:
            out["technique"]["subtechnique"] = {
                "id": list(subs), "name": [t["name"] for t in subs.values()],
                "reference": [t["reference"] for t in subs.values()]}
    if tactics:
        out["tactic"] = {"id": list(tactics), "name": [t["name"] for t in tactics.values()],
                         "reference": [f"https://attack.mitre.org/tactics/{t}/" for t in tactics]}
    return out


def _drop_none(d):
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None and v != [] and v != {}}
    return d


def document(rec: dict) -> dict:
    """The ECS document of an export record (``zeekwatch.export.record``)."""
    host, peer = _ip(rec["host"]), _ip(rec.get("peer"))
    urgency = rec.get("urgency")
    terms = rec.get("score_terms") or {}
    ev = rec["evidence"]
    cids = ev["community_ids"]
    inc = rec.get("incident")
    doc = {
        "@timestamp": rec["first_seen"],
        "ecs": {"version": ECS_VERSION},
        "message": rec.get("summary"),
        "event": {
            "kind": "alert", "category": ["network", "intrusion_detection"], "type": ["info"],
            "id": rec["id"], "code": rec["detector"], "module": "zeekwatch",
            "dataset": "zeekwatch.finding", "provider": "zeekwatch",
            "start": rec["first_seen"], "end": rec["last_seen"],
            "severity": urgency, "risk_score": None if urgency is None else float(urgency),
            "risk_score_norm": None if urgency is None else float(urgency) * 10.0,
            "reason": rec.get("suppressed_reason"),
        },
        "rule": {"id": rec["detector"], "name": rec.get("title") or rec["detector"],
                 "category": rec.get("threat"), "ruleset": "zeekwatch",
                 "version": __version__, "reference": DOCS.format(rec["detector"])},
        "threat": _threat(rec["attack"]),
        "source": {"ip": host, "address": rec["host"]},
        "destination": {"ip": peer, "address": rec.get("peer")} if rec.get("peer") else None,
        "host": {"ip": [host] if host else None,
                 "risk": {"calculated_score": None if urgency is None else float(urgency),
                          "calculated_score_norm": None if urgency is None else float(urgency) * 10.0,
                          "calculated_level": terms.get("tier")}},
        "related": {"ip": sorted({x for x in (host, peer) if x})},
        "network": {"community_id": cids or None},
        "observer": {"product": "zeekwatch", "vendor": "zeekwatch", "type": "ids",
                     "version": __version__},
        "tags": ["zeekwatch", rec["status"]],
        "zeekwatch": {
            "finding_id": rec["id"], "status": rec["status"], "tier": rec.get("tier"),
            "urgency": urgency, "due_at": rec.get("due_at"), "key": rec.get("key"),
            "observed": rec.get("observed"), "threshold": rec.get("threshold"),
            "evidence_total": rec.get("evidence_total"),
            "evidence": {"uids": ev["uids"], "community_ids": cids, "values": ev["values"]},
            "asset_class": terms.get("asset_class"),
            "score_terms": terms.get("terms"),
            "incident": inc,
            "suppressed_reason": rec.get("suppressed_reason"),
        },
    }
    return _drop_none(doc)
