"""Reads for the hand-off to SIEMs (``zeekwatch.export``, ``zeekwatch enrich``): many findings'
evidence and incidents in a few queries, and the index of which records the findings cite.

Read-only; the tables are the store's (``evidence``) and, when present, those of incidents
(``incidents``, ``incident_findings``).
"""

from __future__ import annotations

from typing import Iterable

from zeekwatch.store.db import Store

BATCH = 500  # ids per IN (...) list: well under SQLite's variable limit


def _chunks(ids: list[str]):
    for i in range(0, len(ids), BATCH):
        yield ids[i:i + BATCH]


def evidence_map(store: Store, ids: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """finding id -> evidence kind (uid, community_id, value) -> sorted values."""
    out: dict[str, dict[str, list[str]]] = {}
    for part in _chunks(sorted(set(ids))):
        rows = store.db.execute(
            f"SELECT finding_id, kind, value FROM evidence WHERE finding_id IN "
            f"({', '.join('?' * len(part))}) ORDER BY finding_id, kind, value", part).fetchall()
        for fid, kind, value in rows:
            out.setdefault(fid, {}).setdefault(kind, []).append(value)
    return out


def incidents_map(store: Store, ids: Iterable[str]) -> dict[str, dict]:
    """finding id -> its incident (id, status, urgency, tier, owner, playbook text), for the
    findings that belong to one; empty when the database has no incident tables."""
    names = set(store.db.table_names())
    if not {"incidents", "incident_findings"} <= names:
        return {}
    cols = {c.name for c in store.db["incidents"].columns}
    want = [c for c in ("id", "status", "urgency", "tier", "owner", "summary", "playbook")
            if c in cols]
    out: dict[str, dict] = {}
    for part in _chunks(sorted(set(ids))):
        rows = store.db.execute(
            f"SELECT m.finding_id, {', '.join('i.' + c for c in want)} FROM incident_findings m "
            f"JOIN incidents i ON i.id = m.incident_id WHERE m.finding_id IN "
            f"({', '.join('?' * len(part))})", part).fetchall()
        for r in rows:
            out[r[0]] = dict(zip(want, r[1:]))
    return out


def citations(store: Store) -> list[tuple[str, str, str]]:
    """(cited value, its kind: uid or community_id, finding id) of every finding's evidence."""
    return store.db.execute("SELECT value, kind, finding_id FROM evidence "
                            "WHERE kind IN ('uid', 'community_id')").fetchall()


def findings_by_id(store: Store, ids: Iterable[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for part in _chunks(sorted(set(ids))):
        for r in store.db.query(f"SELECT * FROM findings WHERE id IN ({', '.join('?' * len(part))})",
                                part):
            out[r["id"]] = r
    return out
