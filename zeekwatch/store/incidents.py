"""The store's incident tables: incidents, which findings belong to them, their audit trail.

An incident is one internal host (the entity) over a span of time: the findings about it
whose times lie within ``incidents.window`` of each other. Grouping happens here, over the
stored findings (gaps and islands: one sorted SQL read numbered by ``islands``, the window
functions of ``ISLANDS`` when a time is not text), never with a query per finding; the
scoring of an incident (``zeekwatch.triage.incidents``) reads each affected incident's
members and evidence uids in one query each.

Tables (created on first use; a contract read by the web console and exports, see
docs/incidents.md):

- ``incidents``: id, host, direction, first_seen, last_seen, urgency, tier, due_at, owner,
  status, assignee, threat, queued, findings_counted, findings_listed, detectors (JSON
  detector -> count), families (JSON), sources, summary (the one-line story), score_terms
  (JSON), playbook (text), created_at, updated_at, closed_at;
- ``incident_findings``: incident_id, finding_id, added_at (a finding belongs to one incident);
- ``incident_audit``: id, incident_id, at, who, action, old_status, new_status, note.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

from zeekwatch.store.db import OPEN_STATUSES, Store, now_iso

INCIDENT_STATUSES = ("new", "investigating", "contained", "resolved", "false_positive")
INCIDENT_COLUMNS = {
    "id": str, "host": str, "direction": str, "first_seen": str, "last_seen": str,
    "urgency": int, "tier": int, "due_at": str, "owner": str, "status": str, "assignee": str,
    "threat": str, "queued": int, "findings_counted": int, "findings_listed": int,
    "detectors": str, "families": str, "sources": int, "summary": str, "score_terms": str,
    "playbook": str, "created_at": str, "updated_at": str, "closed_at": str,
}
# what scoring owns (an analysis may change these; status, assignee and notes are the analyst's)
MACHINE_COLUMNS = ("direction", "first_seen", "last_seen", "urgency", "tier", "due_at", "owner",
                   "threat", "queued", "findings_counted", "findings_listed", "detectors",
                   "families", "sources", "summary", "score_terms", "playbook")

# gaps and islands per host over the open incidents' spans and the unassigned findings: a row
# starting more than :w seconds after every earlier row of its host has ended starts an island
ISLANDS = """
WITH rows AS (
  SELECT i.host, i.first_seen AS s, i.last_seen AS e, i.id AS incident_id, NULL AS finding_id
  FROM incidents i
  WHERE i.status IN ({open}) AND i.host IN (SELECT host FROM temp.zi_pending)
  UNION ALL
  SELECT host, first_seen, last_seen, NULL, finding_id FROM temp.zi_pending),
ordered AS (
  SELECT rows.*, max(e) OVER (PARTITION BY host ORDER BY s, coalesce(incident_id, ''),
                              coalesce(finding_id, '')
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_e
  FROM rows),
marked AS (
  SELECT ordered.*, CASE WHEN prev_e IS NULL
                           OR (julianday(s) - julianday(prev_e)) * 86400.0 > :w
                         THEN 1 ELSE 0 END AS brk
  FROM ordered)
SELECT host, s, incident_id, finding_id,
       sum(brk) OVER (PARTITION BY host ORDER BY s, coalesce(incident_id, ''),
                      coalesce(finding_id, '') ROWS UNBOUNDED PRECEDING) AS isl
FROM marked"""

# the same rows in the same order, for ``islands`` to number in Python: one sort instead of
# the two window passes (0.16 s of SQLite for a noisy run's 20 k findings; this, 0.05 s)
ISLAND_ROWS = """
SELECT host, s, e, incident_id, finding_id, julianday(s), julianday(e) FROM (
  SELECT i.host, i.first_seen AS s, i.last_seen AS e, i.id AS incident_id, NULL AS finding_id
  FROM incidents i
  WHERE i.status IN ({open}) AND i.host IN (SELECT host FROM temp.zi_pending)
  UNION ALL
  SELECT host, first_seen, last_seen, NULL, finding_id FROM temp.zi_pending)
ORDER BY host, s, coalesce(incident_id, ''), coalesce(finding_id, '')"""


def islands(rows, window: float) -> list[tuple] | None:
    """``ISLANDS`` computed over ``ISLAND_ROWS``: (host, s, incident_id, finding_id, isl).
    A row starts an island when no earlier row of its host has an end (the greatest end
    text, as SQL's max) or it starts more than ``window`` s after it (julian days, the same
    double arithmetic as SQLite's). None when a time is not text (a value SQLite would
    order by its own type rules): then the SQL computes them."""
    out, host, prev, prev_j, isl = [], None, None, None, 0
    for h, s, e, iid, fid, js, je in rows:
        if h != host:
            host, prev, prev_j, isl = h, None, None, 0
        if prev is None:
            isl += 1
        elif js is not None and prev_j is not None and (js - prev_j) * 86400.0 > window:
            isl += 1
        out.append((h, s, iid, fid, isl))
        if not isinstance(h, str) or not (e is None or isinstance(e, str)):
            return None
        if e is not None and (prev is None or e > prev):
            prev, prev_j = e, je
    return out


# the finding columns that scoring and `incidents show` read
MEMBER_COLUMNS = ("id", "detector", "threat", "host", "peer", "key", "first_seen", "last_seen",
                  "urgency", "status", "summary", "suppressed_reason", "distinct_total")
# what scoring alone reads (the texts `incidents show` prints are 40 k strings in a noisy run)
SCORING_COLUMNS = tuple(c for c in MEMBER_COLUMNS if c not in ("summary", "suppressed_reason"))
# what scoring reads of a finding's score_terms, decoded by SQLite: the direction, target and
# answer of inbound findings; the terms themselves only when a per-finding corroboration term
# is among them (scoring takes it out: the finding's own urgency)
# (only inbound and external findings have a "target" key: the others are not parsed at all)
HAS_TARGET = "instr(f.score_terms, '\"target\":') > 0"
SCORE_FIELDS = f"""instr(f.details, '"time_unknown": true') > 0 AS time_unknown,
  CASE WHEN {HAS_TARGET} THEN f.distinct_values END AS distinct_values,
  CASE WHEN {HAS_TARGET} THEN json_extract(f.score_terms, '$.direction') ELSE 'outbound' END
    AS direction,
  CASE WHEN {HAS_TARGET} THEN json_extract(f.score_terms, '$.target') END AS target,
  CASE WHEN {HAS_TARGET} THEN json_extract(f.score_terms, '$.answered') END AS answered,
  CASE WHEN instr(f.score_terms, '"corroborated by') > 0 THEN f.score_terms END AS corroborated"""
# what scoring_members reads instead (the rest of SCORE_FIELDS follows from the texts)
RAW_FIELDS = ("instr(f.details, '\"time_unknown\": true') > 0 AS time_unknown, "
              "f.distinct_values, f.score_terms")
TIME_WIDTH = len("2024-01-01T00:00:00.000000Z")  # store.iso's fixed width


def incident_id(host: str, start: str, n: int = 0) -> str:
    raw = "\x1f".join([host, start] + ([str(n)] if n else []))
    return "I" + hashlib.sha256(raw.encode()).hexdigest()[:15]


class IncidentStore:
    """Incident tables of one open ``Store``."""

    def __init__(self, store: Store):
        self.store = store
        self.db = store.db
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        db, names = self.db, set(self.db.table_names())
        if "incidents" not in names:
            db["incidents"].create(INCIDENT_COLUMNS, pk="id", not_null={"host", "status"},
                                   defaults={"status": "new"})
            db["incidents"].create_index(["host", "status"])
            db["incidents"].create_index(["status", "urgency"])
        if "incident_findings" not in names:
            db["incident_findings"].create({"incident_id": str, "finding_id": str, "added_at": str},
                                           pk=("incident_id", "finding_id"))
            db["incident_findings"].create_index(["finding_id"], unique=True)
        if "incident_audit" not in names:
            db["incident_audit"].create({"id": int, "incident_id": str, "at": str, "who": str,
                                         "action": str, "old_status": str, "new_status": str,
                                         "note": str}, pk="id")
            db["incident_audit"].create_index(["incident_id"])

    # -- grouping -------------------------------------------------------------------------------
    def assign(self, window: float) -> set[str]:
        """Put every finding that belongs to no incident into one: the open incident of its
        entity whose span it meets within ``window`` seconds (through a chain of findings),
        or a new incident. Returns the ids of the incidents that received findings."""
        db = self.db
        open_list = ", ".join(f"'{s}'" for s in OPEN_STATUSES)
        with db.atomic():
            db.execute("DROP TABLE IF EXISTS temp.zi_pending")
            db.execute(
                "CREATE TEMP TABLE zi_pending AS SELECT f.id AS finding_id, "
                f"coalesce(CASE WHEN {HAS_TARGET} THEN json_extract(f.score_terms, '$.target') END, "
                "f.host) AS host, "
                # a finding without times (a row of an older schema) joins no incident
                "f.first_seen, f.last_seen FROM findings f WHERE f.first_seen IS NOT NULL "
                "AND f.last_seen IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM incident_findings m WHERE m.finding_id = f.id)")
            if not db.execute("SELECT count(*) FROM temp.zi_pending").fetchone()[0]:
                return set()
            self._islands(open_list, float(window))
            # each island joins its earliest open incident, or gets a new one
            db.execute("DROP TABLE IF EXISTS temp.zi_target")
            # (times are fixed-width ISO text: the earliest incident is the minimum of time||id)
            db.execute(
                "CREATE TEMP TABLE zi_target AS SELECT host, isl, min(s) AS s, "
                "substr(min(CASE WHEN incident_id IS NOT NULL THEN s || incident_id END), "
                f"{TIME_WIDTH + 1}) AS incident_id FROM temp.zi_island GROUP BY host, isl")
            self._new_incidents()
            now = now_iso()
            db.execute(
                "INSERT OR IGNORE INTO incident_findings (incident_id, finding_id, added_at) "
                "SELECT t.incident_id, z.finding_id, ? FROM temp.zi_island z "
                "JOIN temp.zi_target t ON t.host = z.host AND t.isl = z.isl "
                "WHERE z.finding_id IS NOT NULL", [now])
            touched = {r[0] for r in db.execute(
                "SELECT DISTINCT t.incident_id FROM temp.zi_target t JOIN temp.zi_island z "
                "ON t.host = z.host AND t.isl = z.isl WHERE z.finding_id IS NOT NULL")}
            for t in ("zi_pending", "zi_island", "zi_target"):
                db.execute(f"DROP TABLE IF EXISTS temp.{t}")
        return touched

    def _islands(self, open_list: str, window: float) -> None:
        """temp.zi_island: each pending finding's and each open incident's island."""
        db = self.db
        db.execute("DROP TABLE IF EXISTS temp.zi_island")
        rows = islands(db.execute(ISLAND_ROWS.format(open=open_list)), window)
        if rows is None:
            db.execute("CREATE TEMP TABLE zi_island AS " + ISLANDS.format(open=open_list),
                       {"w": window})
            return
        db.execute("CREATE TEMP TABLE zi_island (host, s, incident_id, finding_id, isl)")
        db.conn.executemany("INSERT INTO temp.zi_island VALUES (?, ?, ?, ?, ?)", rows)

    def _new_incidents(self) -> None:
        """Ids for the islands without an open incident: stable (host, first time), so the
        same input gives the same ids in analyze and follow."""
        rows = self.db.execute("SELECT host, isl, s FROM temp.zi_target WHERE incident_id IS NULL").fetchall()
        if not rows:
            return
        taken = set()
        ids = [incident_id(h, s) for h, _, s in rows]
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            taken |= {r[0] for r in self.db.execute(
                f"SELECT id FROM incidents WHERE id IN ({', '.join('?' * len(part))})", part)}
        now = now_iso()
        new_rows, updates = [], []
        for (host, isl, s), iid in zip(rows, ids):
            n = 0
            while iid in taken:  # a closed incident already starts there: a new one beside it
                n += 1
                iid = incident_id(host, s, n)
            taken.add(iid)
            new_rows.append((iid, host, s, s, "new", now, now))
            updates.append((iid, host, isl))
        self.db.conn.executemany(
            "INSERT INTO incidents (id, host, first_seen, last_seen, status, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", new_rows)
        # by key: without the index each of a noisy run's 1 k updates scanned the whole table
        self.db.execute("CREATE INDEX temp.zi_target_key ON zi_target (host, isl)")
        self.db.conn.executemany("UPDATE temp.zi_target SET incident_id = ? WHERE host = ? AND isl = ?",
                                 updates)

    # -- reading --------------------------------------------------------------------------------
    def incidents_of_findings(self, finding_ids: Iterable[str]) -> set[str]:
        self._temp_ids(i for i in finding_ids if i)
        return {r[0] for r in self.db.execute(
            "SELECT DISTINCT m.incident_id FROM temp.zi_ids t JOIN incident_findings m "
            "ON m.finding_id = t.id")}

    def ids_where(self, where: str = "", params: Iterable = ()) -> set[str]:
        sql = "SELECT id FROM incidents" + (f" WHERE {where}" if where else "")
        return {r[0] for r in self.db.execute(sql, list(params))}

    def _temp_ids(self, ids: Iterable[str]) -> None:
        # in a transaction of its own (or the caller's): an INSERT outside one would open an
        # implicit transaction that later ``atomic`` blocks only nest in, never commit
        with self.db.atomic():
            self.db.execute("DROP TABLE IF EXISTS temp.zi_ids")
            self.db.execute("CREATE TEMP TABLE zi_ids (id TEXT PRIMARY KEY)")
            self.db.conn.executemany("INSERT OR IGNORE INTO temp.zi_ids VALUES (?)",
                                     [(i,) for i in ids])

    def members(self, ids: Iterable[str]) -> list[dict]:
        """The findings of incidents ``ids`` with their incident id, in time order."""
        self._temp_ids(ids)
        return list(self.db.query(self._members_sql(MEMBER_COLUMNS)))

    def scoring_members(self, ids: Iterable[str]) -> dict[str, list[dict]]:
        """What scoring reads of the findings of incidents ``ids`` (``SCORING_COLUMNS`` and
        ``SCORE_FIELDS``), by incident id, each list in time order. Read with the plain
        cursor; ``SCORE_FIELDS`` but time_unknown worked out once per distinct score_terms
        text (``_score_fields``: a noisy run's 20 k findings hold some 20), not per row."""
        self._temp_ids(ids)
        rows = self.db.conn.execute(self._members_sql(SCORING_COLUMNS, RAW_FIELDS)).fetchall()
        fields = self._score_fields({r[-1] for r in rows})
        if fields is None:  # a score_terms value that is no text: SQLite decodes each row
            return self._grouped(self.db.conn.execute(self._members_sql(SCORING_COLUMNS)))
        names = ("incident_id",) + SCORING_COLUMNS + ("time_unknown",)
        out: dict[str, list[dict]] = {}
        for row in rows:
            m = dict(zip(names, row))
            target, corroborated = fields[row[-1]]
            m["distinct_values"] = row[-2] if target else None
            m["direction"], m["target"], m["answered"] = target or ("outbound", None, None)
            m["corroborated"] = corroborated
            out.setdefault(row[0], []).append(m)
        return out

    @staticmethod
    def _grouped(cur) -> dict[str, list[dict]]:
        names = [d[0] for d in cur.description]
        out: dict[str, list[dict]] = {}
        for row in cur:
            out.setdefault(row[0], []).append(dict(zip(names, row)))
        return out

    def _score_fields(self, texts: set) -> dict | None:
        """score_terms text -> ((direction, target, answered) when it has a target, else
        None; the text when it has a per-finding corroboration term): ``SCORE_FIELDS``'
        tests, with SQLite's own json_extract on the distinct texts that have a target.
        None when some value is not text (SQLite's instr reads blobs its own way)."""
        if not all(t is None or isinstance(t, str) for t in texts):
            return None
        out = {t: (None, t if t is not None and '"corroborated by' in t else None)
               for t in texts}
        targeted = [(t,) for t in texts if t is not None and '"target":' in t]
        if targeted:
            with self.db.atomic():
                self.db.execute("DROP TABLE IF EXISTS temp.zi_terms")
                self.db.execute("CREATE TEMP TABLE zi_terms (t)")
                self.db.conn.executemany("INSERT INTO temp.zi_terms VALUES (?)", targeted)
            for t, *extracted in self.db.execute(
                    "SELECT t, json_extract(t, '$.direction'), json_extract(t, '$.target'), "
                    "json_extract(t, '$.answered') FROM temp.zi_terms"):
                out[t] = (tuple(extracted), out[t][1])
        return out

    @staticmethod
    def _members_sql(columns: tuple[str, ...], fields: str = SCORE_FIELDS) -> str:
        cols = ", ".join(f"f.{c}" for c in columns)
        return (f"SELECT m.incident_id, {cols}, {fields} FROM temp.zi_ids t "
                "JOIN incident_findings m ON m.incident_id = t.id JOIN findings f "
                "ON f.id = m.finding_id ORDER BY m.incident_id, f.first_seen, f.id")

    def uids(self, finding_ids: Iterable[str]) -> list[tuple[str, str]]:
        """(finding id, evidence uid) of findings ``finding_ids``. CROSS JOIN: each finding's
        uids are looked up by the evidence key; SQLite left to itself scans all the
        evidence (390 k rows in a noisy run) for the few findings asked."""
        self._temp_ids(finding_ids)
        return self.db.execute(
            "SELECT e.finding_id, e.value FROM temp.zi_ids t CROSS JOIN evidence e "
            "ON e.finding_id = t.id AND e.kind = 'uid'").fetchall()

    def rows(self, ids: Iterable[str]) -> dict[str, dict]:
        self._temp_ids(ids)
        return {r["id"]: r for r in self.db.query(
            "SELECT i.* FROM temp.zi_ids t JOIN incidents i ON i.id = t.id")}

    def get(self, iid: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM incidents WHERE id = ?", [iid]))
        return rows[0] if rows else None

    def resolve_id(self, prefix: str) -> str | None:
        """The incident id that ``prefix`` starts (unique), None when none; raises
        ``ValueError`` listing two candidates when ambiguous."""
        if self.get(prefix):
            return prefix
        if not prefix.isalnum():
            return None
        rows = [r[0] for r in self.db.execute(
            "SELECT id FROM incidents WHERE id LIKE ? ORDER BY id LIMIT 2", [prefix + "%"])]
        if len(rows) > 1:
            raise ValueError(f"incident id prefix {prefix!r} is ambiguous ({rows[0]}, {rows[1]}, ...)")
        return rows[0] if rows else None

    def select(self, statuses: Iterable[str], queued_only: bool, host: str | None = None,
               overdue_at: str | None = None, tiers: Iterable[int] = (),
               per_host: bool = True) -> list[dict]:
        """Incidents by status, most urgent first. ``per_host``: one row per host (its most
        urgent matching incident) with ``host_incidents``, how many of its incidents match."""
        where, params = [], []
        statuses = list(statuses)
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params += statuses
        if queued_only:
            where.append("queued = 1")
        if host:
            where.append("host = ?")
            params.append(host)
        if overdue_at:
            where.append("due_at < ?")
            params.append(overdue_at)
        tiers = list(tiers)
        if tiers:
            where.append(f"tier IN ({', '.join('?' * len(tiers))})")
            params += tiers
        order = "urgency DESC, due_at, first_seen, id"
        sql = (f"SELECT *, row_number() OVER (PARTITION BY host ORDER BY {order}) AS host_rank, "
               "count(*) OVER (PARTITION BY host) AS host_incidents FROM incidents WHERE "
               + " AND ".join(where))
        if per_host:
            sql = f"SELECT * FROM ({sql}) WHERE host_rank = 1"
        return list(self.db.query(sql + f" ORDER BY {order}", params))

    def audit(self, iid: str) -> list[dict]:
        return list(self.db.query("SELECT * FROM incident_audit WHERE incident_id = ? ORDER BY id",
                                  [iid]))

    # -- writing --------------------------------------------------------------------------------
    def update_machine(self, rows: dict[str, dict]) -> None:
        """Write the machine-owned columns (``MACHINE_COLUMNS``, all of them) of several
        incidents, in one statement."""
        now = now_iso()
        cols = ", ".join(f"{c} = ?" for c in MACHINE_COLUMNS)
        with self.db.atomic():
            self.db.conn.executemany(
                f"UPDATE incidents SET {cols}, updated_at = ? WHERE id = ?",
                [[v.get(c) for c in MACHINE_COLUMNS] + [now, iid] for iid, v in rows.items()])

    def set_fields(self, iid: str, values: dict, who: str, action: str, note: str | None,
                   old_status: str | None = None, new_status: str | None = None) -> None:
        with self.db.atomic():
            self.db["incidents"].update(iid, {**values, "updated_at": now_iso()})
            self.add_audit(iid, who, action, old_status, new_status, note)

    def add_audit(self, iid: str, who: str, action: str, old_status: str | None,
                  new_status: str | None, note: str | None) -> None:
        self.db["incident_audit"].insert({"incident_id": iid, "at": now_iso(), "who": who,
                                          "action": action, "old_status": old_status,
                                          "new_status": new_status, "note": note})


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
