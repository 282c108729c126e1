"""The finding flow's store steps as they were before issue 17 (one query per finding), kept
as the oracle of the equivalence tests: ``Store.upsert_findings`` and ``TriageStage.settle``
(set-wise now) must leave a database exactly as these did, for every case these got right.

Copied from zeekwatch 7f764ad (store/db.py ``upsert_findings`` and its helpers; triage/stage.py
``settle``); not used by zeekwatch itself. Candidates are ``Finding``s now (issue 12): the
oracle reads each as the dict it used to be (``_view``: its row, values and uids) and marks the
Finding with the id and stored mark it gave that dict.
"""

from __future__ import annotations

import datetime as dt

from zeekwatch.finding import Finding
from zeekwatch.store.db import EVIDENCE_LIMIT, FINDINGS_COLUMNS, finding_id, iso, now_iso, parse_iso
from zeekwatch.store.triage import TriageStore
from zeekwatch.triage.stage import AUTOMATION


def _neighbour(store, cand: dict, gap: float) -> dict | None:
    lo = iso(parse_iso(cand["first_seen"]) - dt.timedelta(seconds=gap))
    hi = iso(parse_iso(cand["last_seen"]) + dt.timedelta(seconds=gap))
    rows = list(store.db.query(
        "SELECT * FROM findings WHERE detector = ? AND host = ? AND coalesce(peer,'') = ? "
        "AND coalesce(key,'') = ? AND first_seen <= ? AND last_seen >= ? "
        "ORDER BY first_seen LIMIT 1",
        [cand["detector"], cand["host"], cand.get("peer") or "", cand.get("key") or "", hi, lo]))
    return rows[0] if rows else None


def _view(f: Finding) -> dict:
    """A candidate as the dict candidates were before issue 12."""
    return {**f.row(), "values": f.values, "uids": f.uids}


def upsert_findings(store, candidates: list[Finding], run_id: int, gap: float) -> tuple[int, int]:
    new = updated = 0
    with store.db.atomic():
        for f in candidates:
            cand = _view(f)
            _upsert_one(store, cand, run_id, gap)
            f.id, f.stored = cand["id"], cand["stored"]
            new += cand["stored"] == "new"
            updated += cand["stored"] == "updated"
    return new, updated


def _upsert_one(store, cand: dict, run_id: int, gap: float) -> None:
    old = _neighbour(store, cand, gap)
    if old is None:
        _insert(store, cand, run_id)
        cand["stored"] = "new"
    elif _extend(store, old, cand, run_id):
        cand["stored"] = "updated"
    else:
        cand["stored"] = "same"


def _insert(store, cand: dict, run_id: int) -> None:
    row = {k: cand.get(k) for k in FINDINGS_COLUMNS if k in cand}
    row["id"] = finding_id(cand["detector"], cand["host"], cand.get("peer"), cand.get("key"),
                           cand["first_seen"])
    row.setdefault("status", "new")
    row.update({"first_run": run_id, "last_run": run_id, "created_at": now_iso(),
                "updated_at": now_iso()})
    store.db["findings"].insert(row, alter=False)
    _evidence(store, row["id"], cand)
    cand["id"] = row["id"]


def _extend(store, old: dict, cand: dict, run_id: int) -> bool:
    change = {}
    if cand["first_seen"] < old["first_seen"]:
        change["first_seen"] = cand["first_seen"]
    if cand["last_seen"] > old["last_seen"]:
        change["last_seen"] = cand["last_seen"]
    if (cand.get("observed") or 0) > (old["observed"] or 0):
        for k in ("observed", "summary", "distinct_total", "distinct_values", "details",
                  "evidence_total"):
            if k in cand:
                change[k] = cand[k]
    cand["id"] = old["id"]
    if not change:
        return False
    change.update({"last_run": run_id, "updated_at": now_iso()})
    store.db["findings"].update(old["id"], change)
    _evidence(store, old["id"], cand)
    return True


def _evidence(store, fid: str, cand: dict) -> None:
    rows = []
    for kind, key in (("uid", "uids"), ("value", "values")):
        for v in (cand.get(key) or [])[:EVIDENCE_LIMIT]:
            rows.append({"finding_id": fid, "kind": kind, "value": str(v)})
    if rows:
        store.db["evidence"].insert_all(rows, ignore=True)


def settle(stage, store, candidates: list[Finding]) -> None:
    ts = TriageStore(store)
    ids = {f.id for f in candidates}
    pool = candidates + stage.neighbours
    for n in stage.neighbours:
        if n.id not in ids:
            g = Finding.from_row(stage.neighbour_rows[n.id])  # the row as it was read, in full
            stage.scorer.score(g, stage.scorer.modifiers(g, [o for o in pool if o.host == g.host]))
            ts.update_score(g.id, g.scores())
    for f in candidates:
        fid = f.id
        if fid is None:
            continue
        ts.update_score(fid, f.scores())
        hit = f.suppression_hit
        if hit is None:
            continue
        stored = store.get(fid)
        reason = f.suppressed_reason
        if stored["status"] == "new":
            if not ts.touched_by_others(fid, AUTOMATION):
                ts.suppress_finding(fid, reason, hit[0], hit[1], AUTOMATION)
        elif (stored["status"] == "suppressed" and stored["suppressed_reason"] == reason
              and not ts.hits(finding_id=fid)):
            ts.record_inserted_suppression(fid, reason, hit[0], hit[1], AUTOMATION)
