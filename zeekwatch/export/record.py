"""One record per stored finding: every field that any export carries, in one place.

``findings export`` (jsonl, csv, ecs, ocsf), ``follow --jsonl`` and ``follow --syslog`` all start
from ``records(store, rows)``, so they carry the same fields: the finding's columns, the ATT&CK
techniques of its detector, its evidence (uids, community ids, distinct values), its score
terms, and its incident with the playbook steps when it belongs to one.
"""

from __future__ import annotations

import json

from zeekwatch.attack import techniques
from zeekwatch.detectors import REGISTRY
from zeekwatch.store import handoff
from zeekwatch.store.db import Store

COLUMNS = ("id", "detector", "threat", "host", "peer", "key", "first_seen", "last_seen",
           "observed", "threshold", "urgency", "tier", "due_at", "status", "summary",
           "suppressed_reason", "title", "distinct_total", "evidence_total")
# the flat columns of the CSV export (lists joined with spaces, objects as JSON text)
CSV_COLUMNS = COLUMNS + ("attack_techniques", "evidence_uids", "community_ids",
                         "distinct_values", "incident_id", "playbook", "details", "score_terms")


def attack_ids(detector: str) -> tuple[str, ...]:
    det = REGISTRY.get(detector)
    return det.attack if det is not None else ()


def _json(text):
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def playbook_steps(text: str | None) -> list[str]:
    """The playbook text of an incident as steps (one per non-empty line, bullets stripped)."""
    steps = []
    for line in (text or "").splitlines():
        line = line.strip().lstrip("-*•").strip()
        if line:
            steps.append(line)
    return steps


def build(row: dict, evidence: dict[str, list[str]], incident: dict | None) -> dict:
    rec = {k: row.get(k) for k in COLUMNS}
    rec["attack"] = techniques(attack_ids(row["detector"]))
    rec["evidence"] = {"uids": evidence.get("uid", []),
                       "community_ids": evidence.get("community_id", []),
                       "values": evidence.get("value", [])}
    rec["details"] = _json(row.get("details"))
    rec["score_terms"] = _json(row.get("score_terms"))
    if incident:
        rec["incident"] = {k: v for k, v in incident.items() if k != "playbook"}
        rec["incident"]["playbook"] = playbook_steps(incident.get("playbook"))
    else:
        rec["incident"] = None
    return rec


def records(store: Store, rows: list[dict]) -> list[dict]:
    """The export record of each stored finding row (evidence and incidents in a few queries)."""
    ids = [r["id"] for r in rows]
    ev = handoff.evidence_map(store, ids)
    inc = handoff.incidents_map(store, ids)
    return [build(r, ev.get(r["id"], {}), inc.get(r["id"])) for r in rows]


def flat(rec: dict) -> dict:
    """The CSV row of a record."""
    out = {k: rec.get(k) for k in COLUMNS}
    ev = rec["evidence"]
    inc = rec.get("incident") or {}
    out.update({
        "attack_techniques": " ".join(t["id"] for t in rec["attack"]),
        "evidence_uids": " ".join(ev["uids"]),
        "community_ids": " ".join(ev["community_ids"]),
        "distinct_values": " ".join(ev["values"]),
        "incident_id": inc.get("id"),
        "playbook": "\n".join(inc.get("playbook") or []) or None,
        "details": json.dumps(rec["details"], sort_keys=True) if rec["details"] is not None else None,
        "score_terms": (json.dumps(rec["score_terms"], sort_keys=True)
                        if rec["score_terms"] is not None else None),
    })
    return out
