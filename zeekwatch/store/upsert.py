"""Findings written set-wise: a run's candidates against the stored findings of their entities.

Part of the store layer. ``upsert`` does what a loop of "find the stored neighbour, insert or
extend it" per candidate did, with a fixed number of statements whatever the number of
findings (issue 17: ~20 k findings cost 12 s of per-row queries and inserts):

1. the candidates' entities (detector, host, peer, key) go into a temporary table, and ONE
   join reads every stored finding of those entities (all their fragments);
2. in memory, per entity, each candidate in turn is matched with the records it continues:
   stored or added earlier in this batch, whose span comes within the merge gap of it. The
   earliest such record (by first_seen) takes the candidate, exactly as before: its span
   widens, and a larger ``observed`` replaces the explanation columns;
3. the new findings, the changed columns and the evidence rows are written with
   ``executemany`` (three statements; evidence rows ``ROWS_PER_INSERT`` a statement, and the
   findings' indexes built after the rows when the table held none: see ``write``).

Every fragment counts (issue 11, item 7): when a candidate meets several records of its
entity (a follow run stored an episode in pieces; a later analysis of the whole data sees it
at once), the earliest record takes the others' spans and evidence too. A stored fragment
folded so is closed as a duplicate (status ``suppressed``, reason "duplicate of <id>",
audited) if nobody but the automation ever touched it; an analyst's fragment stays as it is.
A record added earlier in the same batch is folded into the earliest before it is written.

Times are the ISO-8601 texts of ``store.iso`` and compare as text, as the SQL did.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field
from itertools import repeat
from typing import Callable

from zeekwatch.finding import Finding
from zeekwatch.timefmt import iso, now_iso, parse_iso

EXPLAIN = ("observed", "summary", "distinct_total", "distinct_values", "details", "evidence_total")
AUTOMATION = "zeekwatch"
ROWS_PER_INSERT = 100  # rows of one INSERT of evidence (300 variables: SQLite allows 999 or more)
LATE_INDEX_ROWS = 1000  # new findings from which an empty table gets its indexes after the rows


@dataclass
class Record:
    """One finding of an entity while a batch is merged: stored, or new in this batch."""

    row: dict  # the finding's columns as they will be written
    stored: bool
    change: dict = field(default_factory=dict)  # columns changed (stored records)
    evidence: list = field(default_factory=list)  # (kind, value) to add
    folded_into: "Record | None" = None
    cands: list[Finding] = field(default_factory=list)  # candidates that took this record's id


def entity(f: Finding | dict) -> tuple:
    """(detector, host, peer, key) of a candidate or of a stored row."""
    if isinstance(f, Finding):
        return (f.detector, f.host, f.peer or "", f.key or "")
    return (f["detector"], f["host"], f.get("peer") or "", f.get("key") or "")


def evidence_of(cand: Finding, limit: int) -> list[tuple[str, str]]:
    out = []
    for kind, values in (("uid", cand.uids), ("value", cand.values),
                         ("community_id", cand.community_ids)):
        out += zip(repeat(kind), map(str, values[:limit]))
    return out


def shift(text: str, delta: dt.timedelta) -> str:
    """``text`` (a store time) moved by ``delta``, as store time text (the merge window's
    bounds: a re-run's 20 k candidates, two each)."""
    return iso(parse_iso(text) + delta)


def stored_fragments(db, keys: set[tuple]) -> dict[tuple, list[dict]]:
    """Every stored finding of the entities ``keys``, earliest first (one query)."""
    conn = db.conn
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS zw_entities "
                 "(detector TEXT, host TEXT, peer TEXT, key TEXT)")
    conn.execute("DELETE FROM zw_entities")
    conn.executemany("INSERT INTO zw_entities VALUES (?, ?, ?, ?)", sorted(keys))
    cur = conn.execute(
        "SELECT f.* FROM findings f JOIN zw_entities e ON f.detector = e.detector "
        "AND f.host = e.host AND coalesce(f.peer, '') = e.peer AND coalesce(f.key, '') = e.key "
        "ORDER BY f.first_seen, f.rowid")
    names = [d[0] for d in cur.description]
    out: dict[tuple, list[dict]] = {}
    for values in cur:
        row = dict(zip(names, values))
        out.setdefault(entity(row), []).append(row)
    conn.execute("DELETE FROM zw_entities")
    return out


def touched_by_others(db, ids: list[str]) -> set[str]:
    """Which of ``ids`` anyone but the automation ever changed (audit rows)."""
    if not ids:
        return set()
    conn = db.conn
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS zw_ids (id TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM zw_ids")
    conn.executemany("INSERT OR IGNORE INTO zw_ids VALUES (?)", [(i,) for i in ids])
    rows = conn.execute("SELECT DISTINCT a.finding_id FROM audit a JOIN zw_ids i "
                        "ON i.id = a.finding_id WHERE a.who <> ?", [AUTOMATION]).fetchall()
    conn.execute("DELETE FROM zw_ids")
    return {r[0] for r in rows}


class Merger:
    """The in-memory merge of one batch (step 2 of the module docstring)."""

    def __init__(self, gap: float, run_id: int, columns, make_id, limit: int,
                 touched: set[str] = frozenset()):
        self.touched = touched  # stored ids an analyst changed: never folded away
        self.gap = dt.timedelta(seconds=gap)
        self.run_id = run_id
        self.columns = columns
        self.make_id = make_id
        self.limit = limit
        self.records: dict[tuple, list[Record]] = {}
        self.new = self.updated = 0
        self.now = now_iso()  # one time for the batch's rows

    def load(self, stored: dict[tuple, list[dict]]) -> None:
        for key, rows in stored.items():
            self.records[key] = [Record(dict(r), True) for r in rows]

    def add(self, cand: Finding, key: tuple | None = None) -> None:
        """Merge ``cand`` (its ``entity``: ``key`` when the caller has it already)."""
        recs = self.records.setdefault(entity(cand) if key is None else key, [])
        hits = []
        if recs:  # most candidates of a busy run are of entities seen for the first time
            lo = shift(cand.first_seen, -self.gap)
            hi = shift(cand.last_seen, self.gap)
            hits = [r for r in recs if r.folded_into is None
                    and r.row["first_seen"] <= hi and r.row["last_seen"] >= lo]
        if not hits:
            recs.append(self._insert(cand, cand.row()))
            if len(recs) > 1:
                recs.sort(key=lambda r: r.row["first_seen"])  # stable: equal times keep their order
            self.new += 1
            cand.stored = "new"
            return
        # the earliest (records are kept in first_seen order); a stored one before a new one
        target = next((r for r in hits if r.stored), hits[0])
        # (the candidate's row is made only when its explanation replaces the record's: a
        # re-run's candidates, all "same", need none)
        changed = self._extend(target, cand.observed, cand.row, cand.first_seen, cand.last_seen)
        for other in hits:
            if other is not target:
                changed |= self._fold(target, other)
        cand.id = target.row["id"]
        target.cands.append(cand)
        if changed:
            target.evidence += evidence_of(cand, self.limit)
            self.updated += 1
            cand.stored = "updated"
        else:
            cand.stored = "same"
        recs.sort(key=lambda r: r.row["first_seen"])

    def _insert(self, cand: Finding, row: dict) -> Record:
        """A new record of ``cand`` (``row``: its columns, ``Finding.row``)."""
        # (the row's columns and these; ``write`` writes the missing ones as None)
        row["id"] = self.make_id(cand.detector, cand.host, cand.peer, cand.key, cand.first_seen)
        now = self.now
        row["first_run"] = row["last_run"] = self.run_id
        row["created_at"] = row["updated_at"] = now
        cand.id = row["id"]
        return Record(row, False, evidence=evidence_of(cand, self.limit), cands=[cand])

    def _extend(self, rec: Record, observed, source: Callable[[], dict], first: str,
                last: str) -> bool:
        """Widen ``rec`` by a candidate or a folded record (``observed``, and ``source()``
        its columns: a candidate's row or the record's); whether it changed."""
        change = {}
        if first < rec.row["first_seen"]:
            change["first_seen"] = first
        if last > rec.row["last_seen"]:
            change["last_seen"] = last
        if (observed or 0) > (rec.row.get("observed") or 0):
            src = source()
            change.update({k: src[k] for k in EXPLAIN if k in src})
        if not change:
            return False
        if rec.stored:
            change.update({"last_run": self.run_id, "updated_at": self.now})
            rec.change.update(change)
        rec.row.update(change)
        return True

    def _fold(self, target: Record, other: Record) -> bool:
        """``other`` (another fragment of the entity) joins ``target``."""
        if other.stored and other.row.get("status") != "new":
            return False  # an analyst's status: that fragment stays as it is
        if other.stored and other.row["id"] in self.touched:
            return False
        changed = self._extend(target, other.row.get("observed"), lambda: other.row,
                               other.row["first_seen"], other.row["last_seen"])
        other.folded_into = target
        target.evidence += other.evidence
        for c in other.cands:
            c.id = target.row["id"]
        target.cands += other.cands
        if not other.stored:
            self.new -= 1
            for c in other.cands:
                c.stored = "updated" if target.stored else "new"
        return changed or other.stored

    # -- results ------------------------------------------------------------------------------
    def inserts(self) -> list[dict]:
        return [r.row for recs in self.records.values() for r in recs
                if not r.stored and r.folded_into is None]

    def updates(self) -> list[tuple[str, dict]]:
        return [(r.row["id"], r.change) for recs in self.records.values() for r in recs
                if r.stored and r.change and r.folded_into is None]

    def duplicates(self) -> list[tuple[Record, Record]]:
        return [(r, _root(r)) for recs in self.records.values() for r in recs
                if r.stored and r.folded_into is not None]

    def evidence(self) -> list[str]:
        """(finding id, kind, value) of every record's evidence, one after the other in one
        flat list (``insert_rows``' values): ids in order, each id's rows sorted on their own
        (the order of one sort of all the rows, for less). Each id's part is made by slices,
        not a tuple a row (the noisy run's 392 k rows: 0.34 -> 0.16 s)."""
        by_id: dict[str, list] = {}
        for recs in self.records.values():
            for r in recs:
                if r.folded_into is None and r.evidence:
                    by_id.setdefault(r.row["id"], []).extend(r.evidence)
        out: list[str] = []
        for fid in sorted(by_id):
            rows = sorted(by_id[fid])
            part = [fid] * (3 * len(rows))
            part[1::3], part[2::3] = zip(*rows)  # the kinds and the values between the ids
            out += part
        return out


def _value(v):
    """As sqlite-utils stores a value: lists and dicts as JSON text."""
    return json.dumps(v, default=repr) if isinstance(v, (list, dict, tuple)) else v


_PLAIN = {str, int, float, type(None)}


def _values(row: dict, columns: list[str]) -> tuple:
    """``row``'s values in ``columns`` order, as ``_value`` stores each (plain values, the
    usual case, tested at once)."""
    values = tuple(map(row.get, columns))
    if set(map(type, values)) <= _PLAIN:
        return values
    return tuple(map(_value, values))


def _root(r: Record) -> Record:
    while r.folded_into is not None:
        r = r.folded_into
    return r


def insert_rows(conn, head: str, values: list, width: int) -> None:
    """``head`` ("INSERT INTO t (a, b)") of the rows in ``values`` (flat: ``width`` values a
    row, in order), ``ROWS_PER_INSERT`` rows a statement: each row of an ``executemany``
    costs a step and a reset of its statement, as much as SQLite's insert itself (the noisy
    run's 392 k evidence rows: 0.73 s of CPU one a statement, 0.45 s a hundred). The same
    rows in the same order, so the same table (OR IGNORE and conflicts act row by row)."""
    one = "(" + ", ".join("?" * width) + ")"
    step = ROWS_PER_INSERT * width
    full = len(values) - len(values) % step
    if full:
        conn.executemany(f"{head} VALUES {', '.join([one] * ROWS_PER_INSERT)}",
                         (values[i:i + step] for i in range(0, full, step)))
    if full < len(values):
        conn.executemany(f"{head} VALUES {one}",
                         (values[i:i + width] for i in range(full, len(values), width)))


@contextlib.contextmanager
def indexes_after(conn, table: str):
    """The block's inserts into ``table`` with its indexes dropped, then made again from
    their own SQL (same names, columns, order): building an index of sorted rows once is
    cheaper than updating it row by row (the findings' five indexes, a wide covering one
    among them: 20 k new findings 0.47 -> 0.26 s of CPU). In a savepoint: a failure leaves
    the indexes as they were."""
    names = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                         "tbl_name = ? AND sql IS NOT NULL ORDER BY rowid", [table]).fetchall()
    conn.execute("SAVEPOINT zw_indexes_after")
    try:
        for name, _ in names:
            conn.execute('DROP INDEX "{}"'.format(name.replace('"', '""')))
        yield
        for _, sql in names:
            conn.execute(sql)
    except BaseException:
        conn.execute("ROLLBACK TO zw_indexes_after")
        conn.execute("RELEASE zw_indexes_after")
        raise
    conn.execute("RELEASE zw_indexes_after")


def _few_stored(conn, n: int) -> bool:
    """Whether the findings table holds fewer than half of ``n`` rows (counted up to ``n``)."""
    have = conn.execute("SELECT count(*) FROM (SELECT 1 FROM findings LIMIT ?)", [n]).fetchone()[0]
    return have * 2 < n


def write(db, m: Merger, columns: list[str]) -> None:
    """Step 3: the batch's inserts, updates, duplicates and evidence, a statement each."""
    conn = db.conn
    # rows in primary-key order: SQLite appends to its B-trees instead of splitting pages all
    # over them (the noisy bench's 390 k evidence rows: 3.7 s in finding order, 2.0 s sorted)
    rows = sorted(m.inserts(), key=lambda r: r["id"])
    if rows:
        cols = ", ".join(f"[{c}]" for c in columns)
        late = len(rows) >= LATE_INDEX_ROWS and _few_stored(conn, len(rows))
        with indexes_after(conn, "findings") if late else contextlib.nullcontext():
            conn.executemany(f"INSERT INTO findings ({cols}) VALUES "
                             f"({', '.join('?' * len(columns))})",
                             [_values(r, columns) for r in rows])
    by_cols: dict[tuple, list] = {}
    for fid, change in m.updates():
        names = tuple(sorted(change))
        by_cols.setdefault(names, []).append(tuple(_value(change[n]) for n in names) + (fid,))
    for names, params in by_cols.items():
        sets = ", ".join(f"[{n}] = ?" for n in names)
        conn.executemany(f"UPDATE findings SET {sets} WHERE id = ?", params)
    dups = m.duplicates()
    if dups:
        now = now_iso()
        conn.executemany("UPDATE findings SET status = 'suppressed', suppressed_reason = ?, "
                         "updated_at = ?, last_run = ? WHERE id = ?",
                         [(f"duplicate of {t.row['id']}", now, m.run_id, d.row["id"]) for d, t in dups])
        conn.executemany("INSERT INTO audit (finding_id, at, who, action, old_status, new_status, note) "
                         "VALUES (?, ?, ?, 'merge', ?, 'suppressed', ?)",
                         [(d.row["id"], now, AUTOMATION, d.row["status"],
                           f"duplicate of {t.row['id']}: one episode stored in pieces") for d, t in dups])
        conn.executemany("INSERT OR IGNORE INTO evidence (finding_id, kind, value) "
                         "SELECT ?, kind, value FROM evidence WHERE finding_id = ?",
                         [(t.row["id"], d.row["id"]) for d, t in dups])
    insert_rows(conn, "INSERT OR IGNORE INTO evidence (finding_id, kind, value)", m.evidence(), 3)
