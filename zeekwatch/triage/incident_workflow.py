"""The analyst's incident workflow, and rescoring after what analysts change.

Status flow: new -> investigating -> contained -> resolved, or false_positive; resolved and
false_positive incidents can be reopened (investigating). Closing an incident closes its open
findings with the same status, reopening reopens the findings that closing closed; every
change, assignment and note is an audit row (``incident_audit``, and ``audit`` for findings).

``rescore`` recomputes the stored open findings of some hosts (asset inventory, suppression
and status changes move their scores) and then their incidents, auditing urgency changes.
"""

from __future__ import annotations

from zeekwatch.finding import Finding
from zeekwatch.store.db import OPEN_STATUSES, Store, now_iso
from zeekwatch.store.incidents import INCIDENT_STATUSES, IncidentStore
from zeekwatch.store.triage import TriageError, TriageStore
from zeekwatch.triage.incidents import Incidents, open_ids

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("investigating", "contained", "resolved", "false_positive"),
    "investigating": ("contained", "resolved", "false_positive"),
    "contained": ("investigating", "resolved", "false_positive"),
    "resolved": ("investigating",),
    "false_positive": ("investigating",),
}
CLOSED = ("resolved", "false_positive")
CLOSE_ACTION = "incident-close"


def resolve(ist: IncidentStore, prefix: str) -> dict:
    try:
        iid = ist.resolve_id(prefix)
    except ValueError as exc:
        raise TriageError(str(exc)) from None
    if iid is None:
        raise TriageError(f"no incident {prefix!r}")
    return ist.get(iid)


def set_status(inc: Incidents, store: Store, prefix: str, status: str, who: str, note: str) -> dict:
    """Move an incident to ``status`` (audited); closing closes its open findings, reopening
    reopens the ones closing closed. Returns {incident, findings} (ids of findings changed)."""
    ist, ts = IncidentStore(store), TriageStore(store)
    i = resolve(ist, prefix)
    old = i["status"]
    if status not in INCIDENT_STATUSES:
        raise TriageError(f"unknown status {status!r} (known: {', '.join(INCIDENT_STATUSES)})")
    if status != old and status not in TRANSITIONS[old]:
        raise TriageError(f"{i['id']} is {old}: it can move to {', '.join(TRANSITIONS[old])}, "
                          f"not {status}")
    if not (note or "").strip():
        raise TriageError("a status change needs a note (--note)")
    values = {"status": status, "closed_at": now_iso() if status in CLOSED else None}
    action = "set-status" if status != old else "note"
    ist.set_fields(i["id"], values, who, action, note, old, status)
    changed = []
    members = ist.members([i["id"]])
    if status in CLOSED and old not in CLOSED:
        for f in members:
            if f["status"] in OPEN_STATUSES:
                ts.set_status(f["id"], status, who, f"closed with incident {i['id']}: {note}",
                              action=CLOSE_ACTION)
                changed.append(f["id"])
    elif old in CLOSED and status not in CLOSED:
        for f in members:
            last = ts.audit(f["id"])[-1:] or [{}]
            if f["status"] == old and last[0].get("action") == CLOSE_ACTION:
                ts.set_status(f["id"], "investigating", who,
                              f"reopened with incident {i['id']}: {note}", action="incident-reopen")
                changed.append(f["id"])
    inc.refresh(ist, {i["id"]}, who, f"status {old} → {status}")
    return {"incident": ist.get(i["id"]), "findings": changed}


def assign(store: Store, prefix: str, assignee: str, who: str) -> dict:
    ist = IncidentStore(store)
    i = resolve(ist, prefix)
    ist.set_fields(i["id"], {"assignee": assignee or None}, who, "assign", 
                   f"assignee {i['assignee'] or '-'} → {assignee or '-'}")
    return ist.get(i["id"])


def add_note(store: Store, prefix: str, text: str, who: str) -> dict:
    if not (text or "").strip():
        raise TriageError("a note needs text")
    ist = IncidentStore(store)
    i = resolve(ist, prefix)
    ist.add_audit(i["id"], who, "note", i["status"], i["status"], text)
    return i


def rescore(inc: Incidents, store: Store, who: str, why: str, hosts=None) -> dict:
    """Rescore the open findings of ``hosts`` (every host when None) against the asset
    inventory and each other, then the incidents holding them; urgency changes are audited.
    Returns {findings, incidents}: how many changed."""
    ts, ist = TriageStore(store), IncidentStore(store)
    where, params = "", []
    if hosts is not None:
        hosts = sorted({h for h in hosts if h})
        if not hosts:
            return {"findings": 0, "incidents": 0}
        where = f"host IN ({', '.join('?' * len(hosts))})"
        params = hosts
    pool = ts.with_uids([dict(f) for f in store.findings(where, params, order="host, first_seen, id")],
                        where.replace("host IN", "f.host IN"), params)
    scorer = inc.scorer
    scorer.load_inventory(ts.assets())
    todo = [Finding.from_row(f) for f in pool if f["status"] in OPEN_STATUSES]
    scorer.score_all(todo, [Finding.from_row(f, explain=False) for f in pool
                            if f["status"] not in OPEN_STATUSES])  # they corroborate only
    changed = []
    before = {f["id"]: f for f in pool}
    for f in todo:
        if ts.update_score(f.id, f.scores()):
            changed.append(f.id)
            old = before[f.id]
            if old["urgency"] != f.urgency:
                store.db["audit"].insert({
                    "finding_id": f.id, "at": now_iso(), "who": who, "action": "rescore",
                    "old_status": old["status"], "new_status": old["status"],
                    "note": f"urgency {old['urgency']} → {f.urgency} ({why})"})
    ids = ist.incidents_of_findings(f.id for f in todo) & open_ids(ist)
    ids |= open_ids(ist, hosts) if hosts is not None else open_ids(ist)
    touched = inc.refresh(ist, ids, who, why)
    return {"findings": len(changed), "incidents": len(touched)}
