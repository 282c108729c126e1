"""The store: findings, runs and rejects in SQLite (through sqlite-utils).

Tables and their columns are a contract read by dashboards, SIEM exports and our own checks
(docs/architecture.md "Tables"). Findings have stable ids, so re-running on the same input changes
nothing and keeps what analysts wrote; a new episode of the same detector and entity within
the merge gap of a stored finding extends that finding instead of adding another.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import urllib.parse
from typing import Any, Iterable


def _import_sqlite_utils():
    """sqlite-utils imports pandas when it is installed, only to store ``pandas.Timestamp``
    values as TEXT. zeekwatch never stores pandas objects, and the import costs ~0.2 s of
    every command on machines that have pandas (zat's users do), so sqlite-utils is loaded
    with pandas hidden; pandas stays importable for everything else."""
    if "pandas" in sys.modules:  # loaded already: nothing to save
        import sqlite_utils
        return sqlite_utils
    sys.modules["pandas"] = None  # type: ignore[assignment]  (import pandas -> ImportError)
    try:
        import sqlite_utils
    finally:
        if "pandas" in sys.modules and sys.modules["pandas"] is None:
            del sys.modules["pandas"]
    return sqlite_utils


sqlite_utils = _import_sqlite_utils()

from zeekwatch.errors import StoreError
from zeekwatch.finding import Finding
from zeekwatch.store import upsert
from zeekwatch.text import path_text
from zeekwatch.timefmt import iso, now_iso, parse_iso  # noqa: F401  (re-exported)

STATUSES = ("new", "investigating", "contained", "resolved", "false_positive", "suppressed")
OPEN_STATUSES = ("new", "investigating", "contained")
EVIDENCE_LIMIT = 50  # evidence rows kept per finding and kind (the total is kept on the finding)

FINDINGS_COLUMNS = {
    "id": str, "detector": str, "threat": str, "host": str, "peer": str, "key": str,
    "first_seen": str, "last_seen": str, "observed": float, "threshold": float,
    "urgency": int, "tier": int, "due_at": str, "status": str, "summary": str,
    "suppressed_reason": str,
    # beyond the contract: explanation and bookkeeping
    "title": str, "distinct_total": int, "distinct_values": str, "evidence_total": int,
    "details": str, "score_terms": str, "first_run": int, "last_run": int,
    "created_at": str, "updated_at": str,
}

RUN_TABLES = ("conn", "dns", "alert", "http", "tls", "smtp")
RUNS_COLUMNS = {"id": int, "started_at": str, "finished_at": str, "inputs": str, "command": str,
                "version": str, "status": str, **{f"{t}_records": int for t in RUN_TABLES},
                "rejects": int, "skipped": str, "notes": str, "findings_new": int,
                "findings_updated": int, "seconds": float}
REJECTS_COLUMNS = {"run_id": int, "path": str, "line": int, "reason": str, "raw": str}
AUDIT_COLUMNS = {"id": int, "finding_id": str, "at": str, "who": str, "action": str,
                 "old_status": str, "new_status": str, "note": str}
KNOWN_SERVICES_COLUMNS = {"host": str, "port": int, "proto": str, "first_seen": str,
                          "last_seen": str, "origin": str}
# tables the triage and follow stores add (a database holding only these is ours too)
TRIAGE_TABLES = {"app_usage", "suppressions", "suppression_hits", "assets", "checkpoints"}


def migrate_columns(db, table: str, columns: dict) -> None:
    """Add the columns an older zeekwatch did not create (NULL in old rows): the upgrade
    path of the schema, which only ever grows."""
    have = {c.name for c in db[table].columns}
    for name, typ in columns.items():
        if name not in have:
            db[table].add_column(name, typ)


def store_message(path: str, exc: sqlite3.Error) -> str:
    """What a SQLite error means for the user of ``path``."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (f"{path}: another zeekwatch process holds the database (waited "
                f"{BUSY_SECONDS} s): {text}; try again when it has finished")
    if "disk is full" in text or "disk I/O" in text:
        return f"{path}: cannot write the database: {text} (is the disk full?)"
    if "readonly" in text or "read-only" in text:
        return f"{path}: the database is read-only here: {text}"
    return f"{path}: cannot open as a zeekwatch database: {text}"


def _readonly_connection(path: str) -> sqlite3.Connection:
    """``path`` opened for reading only; a WAL database in a directory we cannot write is
    opened as immutable (its -shm file cannot be made)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    try:
        con = sqlite3.connect(uri + "?mode=ro", uri=True)
        con.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return con
    except sqlite3.OperationalError:
        return sqlite3.connect(uri + "?immutable=1", uri=True)


def finding_id(detector: str, host: str, peer: str | None, key: str | None, start: str) -> str:
    raw = "\x1f".join([detector, host or "", peer or "", key or "", start])
    return "F" + hashlib.sha256(raw.encode()).hexdigest()[:15]


class _Database(sqlite_utils.Database):
    """sqlite-utils' database whose outermost ``atomic()`` is ``BEGIN IMMEDIATE``: a
    transaction that reads before it writes (upsert_findings) takes the write lock first, so
    a concurrent run waits for it (busy timeout) instead of failing at once on a stale
    snapshot ("database is locked" without waiting)."""

    @contextlib.contextmanager
    def atomic(self):
        if self.conn.in_transaction:
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()


ZEEKWATCH_TABLES = {"runs", "rejects", "findings", "evidence", "audit", "known_services"}
BUSY_SECONDS = 60  # a second writer (another analyze run) waits this long for the lock


class Store:
    """A zeekwatch SQLite database (created on first use, WAL mode).

    A database with tables but none of zeekwatch's is refused untouched (``StoreError``); an
    older zeekwatch schema gets its missing columns added. ``readonly`` opens the file for
    reading only (``findings``, ``export`` ... on a database the user may not write)."""

    def __init__(self, path: str, readonly: bool = False):
        self.path = str(path)
        self.readonly = readonly
        try:
            if readonly:
                self.db = sqlite_utils.Database(_readonly_connection(self.path))
                self._refuse_foreign(empty_too=True)
                return
            self.db = _Database(self.path)
            self.db.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")  # before any write
            self._refuse_foreign()
            self.db.execute("PRAGMA journal_mode=WAL")
            # IMMEDIATE: a second process waits (busy timeout) for the first one's schema
            # instead of failing on a read-then-write race ("table runs already exists")
            with self.db.atomic():
                self._ensure_schema()
        except StoreError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(store_message(self.path, exc)) from None
        except OSError as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def _refuse_foreign(self, empty_too: bool = False) -> None:
        """A database that holds other tables and none of ours is someone else's: refuse it
        before writing anything (not even the WAL switch)."""
        names = {n for n in self.db.table_names() if not n.startswith("sqlite_")}
        if empty_too and "findings" not in names:
            raise StoreError(f"{self.path}: not a zeekwatch database (no findings table)")
        if names and not names & (ZEEKWATCH_TABLES | TRIAGE_TABLES):
            shown = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
            raise StoreError(f"{self.path}: not a zeekwatch database (it holds other tables: "
                             f"{shown}); left untouched. Use another --db path.")

    # -- schema ---------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        db = self.db
        if "runs" not in db.table_names():
            db["runs"].create(RUNS_COLUMNS, pk="id")
        if "rejects" not in db.table_names():
            db["rejects"].create(REJECTS_COLUMNS, foreign_keys=[("run_id", "runs", "id")])
            db["rejects"].create_index(["run_id"])
        if "findings" not in db.table_names():
            db["findings"].create(FINDINGS_COLUMNS, pk="id", not_null={"detector", "host", "status"},
                                  defaults={"status": "new"})
            db["findings"].create_index(["detector", "host", "peer", "key"])
            db["findings"].create_index(["status", "urgency"])
        if "evidence" not in db.table_names():
            # WITHOUT ROWID: the primary key is the table, one b-tree instead of a rowid table
            # and an index beside it (392 k rows of a noisy run: half the bytes, 0.75 -> 0.54 s
            # to write). A database made before keeps its rowid table; both behave alike.
            db.execute('CREATE TABLE "evidence" ("finding_id" TEXT REFERENCES "findings"("id"), '
                       '"kind" TEXT, "value" TEXT, PRIMARY KEY ("finding_id", "kind", "value")) '
                       'WITHOUT ROWID')
        if "audit" not in db.table_names():
            db["audit"].create(AUDIT_COLUMNS, pk="id")
            db["audit"].create_index(["finding_id"])
        if "known_services" not in db.table_names():
            db["known_services"].create(KNOWN_SERVICES_COLUMNS, pk=("host", "port", "proto"))
        for table, columns in (("runs", RUNS_COLUMNS), ("rejects", REJECTS_COLUMNS),
                               ("findings", FINDINGS_COLUMNS), ("audit", AUDIT_COLUMNS),
                               ("known_services", KNOWN_SERVICES_COLUMNS)):
            migrate_columns(db, table, columns)
        # the console's panels read these columns of the open findings only (a covering
        # index: the charts never touch the table); its host page looks a host up
        db["findings"].create_index(["status", "tier", "due_at", "detector", "threat", "host",
                                     "first_seen", "last_seen", "urgency"],
                                    index_name="findings_console", if_not_exists=True)
        db["findings"].create_index(["host", "last_seen"], index_name="findings_host",
                                    if_not_exists=True)

    # -- runs -----------------------------------------------------------------------------
    def start_run(self, inputs: list[str], command: str, version: str) -> int:
        table = self.db["runs"]
        table.insert({"started_at": now_iso(), "inputs": json.dumps(inputs), "command": command,
                      "version": version, "status": "running"})
        return table.last_pk

    def finish_run(self, run_id: int, log, seconds: float, new: int, updated: int,
                   status: str = "ok") -> None:
        """Record counts, skipped files, notes and rejects of a finished run."""
        values: dict[str, Any] = {f"{t}_records": int(log.records.get(t, 0)) for t in RUN_TABLES}
        values.update({
            "finished_at": now_iso(), "status": status, "rejects": log.reject_count,
            "skipped": json.dumps([{"path": p, "reason": r} for p, r in log.skipped]),
            "notes": json.dumps(log.notes), "findings_new": new, "findings_updated": updated,
            "seconds": round(seconds, 3),
        })
        with self.db.conn:
            self.db["runs"].update(run_id, values)
            self.db["rejects"].insert_all(
                ({"run_id": run_id, "path": path_text(r.path), "line": r.line,
                  "reason": path_text(r.reason), "raw": path_text(r.raw)} for r in log.rejects),
                batch_size=1000)

    def runs(self) -> list[dict]:
        return list(self.db["runs"].rows_where(order_by="id"))

    # -- findings -------------------------------------------------------------------------
    def upsert_findings(self, candidates: Iterable[Finding], run_id: int,
                        gap: float) -> tuple[int, int]:
        """Insert new findings, extend continued ones; returns (new, updated).

        A candidate (``Finding``) is written as ``Finding.row()``; its ``values``, ``uids``
        and ``community_ids`` become evidence rows. A candidate continues the stored finding
        of its entity whose span comes within ``gap`` seconds of it (every stored fragment
        counts; see ``store.upsert``). Analyst-owned columns (status, notes) of stored findings
        are never overwritten; an identical re-run changes nothing. Each candidate is marked
        ``id`` and ``stored`` = "new", "updated" or "same". Set-wise: a fixed number of
        statements for any number of candidates. Nests inside a caller's ``db.atomic()``
        (follow mode commits its checkpoints in the same transaction).
        """
        candidates = list(candidates)
        if not candidates:
            return 0, 0
        columns = list(FINDINGS_COLUMNS)
        with self.db.atomic():
            keys = [upsert.entity(c) for c in candidates]
            stored = upsert.stored_fragments(self.db, set(keys))
            several = [r["id"] for rows in stored.values() if len(rows) > 1 for r in rows]
            merger = upsert.Merger(gap, run_id, columns, finding_id, EVIDENCE_LIMIT,
                                   upsert.touched_by_others(self.db, several))
            merger.load(stored)
            for cand, key in zip(candidates, keys):
                merger.add(cand, key)
            upsert.write(self.db, merger, columns)
        return merger.new, merger.updated

    def findings(self, where: str = "", params: Iterable = (), order: str = "") -> list[dict]:
        sql = "SELECT * FROM findings"
        if where:
            sql += " WHERE " + where
        sql += " ORDER BY " + (order or "urgency DESC, due_at, first_seen")
        return list(self.db.query(sql, list(params)))

    def get(self, fid: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM findings WHERE id = ?", [fid]))
        return rows[0] if rows else None

    def evidence(self, fid: str) -> list[dict]:
        return list(self.db.query("SELECT kind, value FROM evidence WHERE finding_id = ? "
                                  "ORDER BY kind, value", [fid]))

    # -- known services (new_listener baseline) ---------------------------------------------
    def known_services(self) -> list[dict]:
        return list(self.db["known_services"].rows)

    def learn_services(self, rows: Iterable[dict]) -> None:
        """Add services answered in a run to the baseline; widen the span of known ones (an
        older archive analysed later moves first_seen back)."""
        with self.db.atomic():
            for r in rows:
                key = (r["host"], r["port"], r["proto"])
                try:
                    old = self.db["known_services"].get(key)
                except sqlite_utils.db.NotFoundError:
                    self.db["known_services"].insert(r)
                    continue
                change = {}
                if (r.get("last_seen") or "") > (old["last_seen"] or ""):
                    change["last_seen"] = r["last_seen"]
                if r.get("first_seen") and r["first_seen"] < (old["first_seen"] or "\uffff"):
                    change["first_seen"] = r["first_seen"]
                if change:
                    self.db["known_services"].update(key, change)

    def checkpoint(self, mode: str = "TRUNCATE") -> None:
        """Copy the WAL into the main database file, so that the file alone (a copy, a backup)
        holds every committed change. Best effort: a reader still in the WAL defers it."""
        try:
            self.db.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.DatabaseError:
            pass

    def close(self) -> None:
        self.checkpoint("PASSIVE")
        self.db.close()
