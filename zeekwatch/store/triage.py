"""The store's triage tables: app usage, suppressions, assets, status changes.

Part of the store layer (the only code touching SQLite): it works on an open ``Store`` and
its sqlite-utils database. Nothing here is ever deleted: a removed suppression keeps its row
(``removed_at``), a suppressed finding keeps its row (status ``suppressed``), and every status
change writes an ``audit`` row.

Tables (created on first use):

- ``app_usage``: host, app, category, source, evidence, first_seen, last_seen, count,
  distinct_values, examples (JSON), first_run, last_run;
- ``suppressions``: allowlist rules (cidr, peer, domain, port, detector, sid, start, end)
  with owner, reason, expires, created_at/by, removed_at/by, origin;
- ``suppression_hits``: which finding a rule (or app usage) suppressed, with the finding's
  prior status and reason, so removing the rule restores exactly that;
- ``assets``: address or CIDR, class, name, owner (``zeekwatch assets import``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from typing import Iterable

from zeekwatch.errors import EXIT_USAGE, StoreError, ZeekwatchError
from zeekwatch.finding import SCORE_COLUMNS, Finding
from zeekwatch.store.db import OPEN_STATUSES, Store, iso, now_iso, parse_iso
from zeekwatch.text import analyst_network


class TriageError(ZeekwatchError):
    """A triage request that cannot be done: unknown finding or rule, disallowed status change,
    invalid rule. Exit code 2 (usage)."""

    exit_code = EXIT_USAGE


SUPPRESSION_COLUMNS = {
    "id": int, "cidr": str, "peer": str, "domain": str, "port": int, "detector": str,
    "sid": int, "start": str, "end": str, "owner": str, "reason": str, "expires": str,
    "created_at": str, "created_by": str, "removed_at": str, "removed_by": str, "origin": str,
}


def open_store(path: str, must_exist: bool = True, write: bool = True) -> Store:
    """Open a findings database; for read commands it must exist already. Without ``write``
    it is opened read-only (it may be a file the user cannot write)."""
    if must_exist and not os.path.exists(path):
        raise StoreError(f"{path}: no such database (create it with `zeekwatch analyze ... --db {path}`)")
    return Store(path, readonly=not write)


class TriageStore:
    """Triage tables of one open ``Store``."""

    def __init__(self, store: Store):
        self.store = store
        self.db = store.db
        if not store.readonly:
            self._ensure_schema()

    def _ensure_schema(self) -> None:
        with self.db.atomic():  # write lock first: a concurrent run waits, no double CREATE
            self._create_missing()

    def _create_missing(self) -> None:
        db, names = self.db, set(self.db.table_names())
        if "app_usage" not in names:
            db["app_usage"].create({
                "id": int, "host": str, "app": str, "category": str, "source": str,
                "evidence": str, "first_seen": str, "last_seen": str, "count": int,
                "distinct_values": int, "examples": str, "first_run": int, "last_run": int,
            }, pk="id")
            db["app_usage"].create_index(["host", "last_seen"])
        if "suppressions" not in names:
            db["suppressions"].create(SUPPRESSION_COLUMNS, pk="id")
        if "suppression_hits" not in names:
            db["suppression_hits"].create({
                "id": int, "finding_id": str, "suppression_id": int, "kind": str, "reason": str,
                "prior_status": str, "prior_reason": str, "at": str, "who": str,
                "released_at": str, "released_how": str,
            }, pk="id")
            db["suppression_hits"].create_index(["finding_id"])
            db["suppression_hits"].create_index(["suppression_id"])
        if "assets" not in names:
            db["assets"].create({"address": str, "class": str, "name": str, "owner": str,
                                 "imported_at": str, "source": str}, pk="address")

    # -- app usage ------------------------------------------------------------------------------
    def save_app_usage(self, rows: Iterable[dict], run_id: int | None, gap: float) -> int:
        """Store usage rows; a row continuing a stored one (same host, app, source, evidence,
        within ``gap`` seconds) extends it. Re-storing the same rows changes nothing."""
        n = 0
        with self.db.atomic():
            for r in rows:
                old = self._usage_neighbour(r, gap)
                if old is None:
                    self.db["app_usage"].insert({
                        **{k: r[k] for k in ("host", "app", "category", "source", "evidence",
                                             "first_seen", "last_seen", "count")},
                        "distinct_values": r.get("distinct_values"),
                        "examples": json.dumps(r.get("examples") or []),
                        "first_run": run_id, "last_run": run_id})
                    n += 1
                    continue
                if r["first_seen"] >= old["first_seen"] and r["last_seen"] <= old["last_seen"]:
                    continue  # already known (a re-run of the same input)
                after = r["first_seen"] > old["last_seen"]
                self.db["app_usage"].update(old["id"], {
                    "first_seen": min(old["first_seen"], r["first_seen"]),
                    "last_seen": max(old["last_seen"], r["last_seen"]),
                    "count": old["count"] + r["count"] if after else max(old["count"], r["count"]),
                    "examples": json.dumps(sorted(set(json.loads(old["examples"] or "[]"))
                                                  | set(r.get("examples") or []))[:5]),
                    "last_run": run_id})
                n += 1
        return n

    def _usage_neighbour(self, r: dict, gap: float) -> dict | None:
        lo = parse_iso(r["first_seen"]) - dt.timedelta(seconds=gap)
        hi = parse_iso(r["last_seen"]) + dt.timedelta(seconds=gap)
        rows = list(self.db.query(
            "SELECT * FROM app_usage WHERE host = ? AND app = ? AND source = ? AND evidence = ? "
            "AND first_seen <= ? AND last_seen >= ? ORDER BY first_seen LIMIT 1",
            [r["host"], r["app"], r["source"], r["evidence"], iso(hi), iso(lo)]))
        return rows[0] if rows else None

    def app_usage(self, hosts: Iterable[str] | None = None) -> list[dict]:
        """Stored usage rows (of ``hosts`` when given), examples decoded."""
        sql, params = "SELECT * FROM app_usage", []
        if hosts is not None:
            hosts = sorted(set(hosts))
            if not hosts:
                return []
            sql += f" WHERE host IN ({', '.join('?' * len(hosts))})"
            params = hosts
        rows = list(self.db.query(sql + " ORDER BY host, first_seen, app, source, evidence", params))
        for r in rows:
            r["examples"] = json.loads(r["examples"] or "[]")
        return rows

    # -- suppression rules --------------------------------------------------------------------
    def add_suppression(self, rule: dict) -> int:
        row = {k: rule.get(k) for k in SUPPRESSION_COLUMNS if k != "id"}
        row["created_at"] = row.get("created_at") or now_iso()
        table = self.db["suppressions"]
        table.insert(row)
        return table.last_pk

    def suppressions(self, include_inactive: bool = False) -> list[dict]:
        sql = "SELECT s.*, (SELECT count(*) FROM suppression_hits h WHERE h.suppression_id = s.id " \
              "AND h.released_at IS NULL) AS active_hits FROM suppressions s"
        if not include_inactive:
            sql += " WHERE s.removed_at IS NULL"
        return list(self.db.query(sql + " ORDER BY s.id"))

    def suppression(self, sid: int) -> dict | None:
        rows = list(self.db.query("SELECT * FROM suppressions WHERE id = ?", [sid]))
        return rows[0] if rows else None

    def mark_removed(self, sid: int, who: str) -> None:
        self.db["suppressions"].update(sid, {"removed_at": now_iso(), "removed_by": who})

    def hits(self, suppression_id: int | None = None, finding_id: str | None = None,
             active: bool = True) -> list[dict]:
        where, params = [], []
        if suppression_id is not None:
            where.append("suppression_id = ?")
            params.append(suppression_id)
        if finding_id is not None:
            where.append("finding_id = ?")
            params.append(finding_id)
        if active:
            where.append("released_at IS NULL")
        sql = "SELECT * FROM suppression_hits" + (" WHERE " + " AND ".join(where) if where else "")
        return list(self.db.query(sql + " ORDER BY id", params))

    # -- status changes (every one audited) ----------------------------------------------------
    def suppress_finding(self, fid: str, reason: str, kind: str, suppression_id: int | None,
                         who: str) -> None:
        """Set a finding to ``suppressed`` and remember its prior status for an exact restore."""
        f = self.store.get(fid)
        with self.db.atomic():
            self.db["suppression_hits"].insert({
                "finding_id": fid, "suppression_id": suppression_id, "kind": kind,
                "reason": reason, "prior_status": f["status"],
                "prior_reason": f["suppressed_reason"], "at": now_iso(), "who": who})
            self._set(f, "suppressed", who, f"suppress ({kind})", reason, reason)

    def record_inserted_suppression(self, fid: str, reason: str, kind: str,
                                    suppression_id: int | None, who: str) -> None:
        """A finding inserted already suppressed (during analysis): remember ``new`` as its
        prior status and audit the automatic decision."""
        with self.db.atomic():
            self.db["suppression_hits"].insert({
                "finding_id": fid, "suppression_id": suppression_id, "kind": kind,
                "reason": reason, "prior_status": "new", "prior_reason": None,
                "at": now_iso(), "who": who})
            self.db["audit"].insert({"finding_id": fid, "at": now_iso(), "who": who,
                                     "action": f"suppress ({kind})", "old_status": "new",
                                     "new_status": "suppressed", "note": reason})

    def restore_hit(self, hit: dict, who: str, how: str) -> bool:
        """Undo one suppression hit if the finding is still suppressed by it."""
        f = self.store.get(hit["finding_id"])
        with self.db.atomic():
            self.db["suppression_hits"].update(hit["id"], {"released_at": now_iso(),
                                                           "released_how": how})
            if f is None or f["status"] != "suppressed" or f["suppressed_reason"] != hit["reason"]:
                return False
            self._set(f, hit["prior_status"], who, "restore", hit["prior_reason"], how)
        return True

    def set_status(self, fid: str, status: str, who: str, note: str | None,
                   reason: str | None = None, action: str = "set-status") -> dict:
        """An analyst's status change: audited; active suppression hits are released."""
        f = self.store.get(fid)
        with self.db.atomic():
            if f["status"] == "suppressed" and status != "suppressed":
                for h in self.hits(finding_id=fid):
                    self.db["suppression_hits"].update(h["id"], {
                        "released_at": now_iso(), "released_how": f"status set to {status} by {who}"})
            self._set(f, status, who, action, reason if status == "suppressed" else None, note)
        return self.store.get(fid)

    def _set(self, f: dict, status: str, who: str, action: str, reason: str | None,
             note: str | None) -> None:
        self.db["findings"].update(f["id"], {"status": status, "suppressed_reason": reason,
                                             "updated_at": now_iso()})
        self.db["audit"].insert({"finding_id": f["id"], "at": now_iso(), "who": who,
                                 "action": action, "old_status": f["status"],
                                 "new_status": status, "note": note})

    def touched_by_others(self, fid: str, who: str) -> bool:
        """Whether anyone but ``who`` (the automation) ever changed this finding's status."""
        return bool(list(self.db.query("SELECT 1 FROM audit WHERE finding_id = ? AND who <> ? LIMIT 1",
                                       [fid, who])))

    def audit(self, fid: str) -> list[dict]:
        return list(self.db.query("SELECT * FROM audit WHERE finding_id = ? ORDER BY id", [fid]))

    # -- findings ------------------------------------------------------------------------------
    def resolve_id(self, prefix: str) -> str:
        """The finding id that ``prefix`` starts (a unique prefix is enough, like git)."""
        exact = self.store.get(prefix)
        if exact is not None:
            return exact["id"]
        rows = []
        if prefix.isalnum():
            rows = [r["id"] for r in self.db.query(
                "SELECT id FROM findings WHERE id LIKE ? ORDER BY id LIMIT 2", [prefix + "%"])]
        if not rows:
            raise TriageError(f"no finding {prefix!r}")
        if len(rows) > 1:
            raise TriageError(f"finding id prefix {prefix!r} is ambiguous ({rows[0]}, {rows[1]}, ...)")
        return rows[0]

    def open_findings(self, statuses: Iterable[str] = OPEN_STATUSES,
                      ids: Iterable[str] | None = None) -> list[dict]:
        statuses = list(statuses)
        where = f"status IN ({', '.join('?' * len(statuses))})"
        params: list = list(statuses)
        if ids is not None:
            ids = list(ids)
            if not ids:
                return []
            where += f" AND id IN ({', '.join('?' * len(ids))})"
            params += ids
        return self.store.findings(where, params, order="first_seen, id")

    def nearby_findings(self, hosts: Iterable[str], lo: str, hi: str) -> list[dict]:
        """Stored findings of ``hosts`` whose span meets [lo, hi] (for corroboration)."""
        hosts = sorted(set(hosts))
        if not hosts:
            return []
        where = (f"f.host IN ({', '.join('?' * len(hosts))}) AND f.first_seen <= ? "
                 "AND f.last_seen >= ?")
        rows = list(self.db.query(f"SELECT f.* FROM findings f WHERE {where}", hosts + [hi, lo]))
        return self.with_uids(rows, where, hosts + [hi, lo])

    def with_uids(self, rows: list[dict], where: str, params: list) -> list[dict]:
        """``rows`` (findings selected by ``where`` over ``findings f``) with their evidence
        uids (``uids``): one connection firing two detectors is one piece of evidence, so
        scoring needs them to judge corroboration."""
        uids: dict[str, list[str]] = {}
        for fid, value in self.db.execute(
                "SELECT e.finding_id, e.value FROM evidence e JOIN findings f "
                f"ON f.id = e.finding_id WHERE ({where or 'TRUE'}) AND e.kind = 'uid'", params):
            uids.setdefault(fid, []).append(value)
        for r in rows:
            r["uids"] = uids.get(r["id"], [])
        return rows

    def update_score(self, fid: str, values: dict) -> bool:
        """Refresh machine-owned score columns; returns whether anything changed."""
        f = self.store.get(fid)
        change = {k: values[k] for k in SCORE_COLUMNS if k in values and f.get(k) != values[k]}
        if change:
            self.db["findings"].update(fid, change)
        return bool(change)

    def update_scores(self, values: dict[str, dict]) -> int:
        """``update_score`` for many findings (id -> values) in a fixed number of statements;
        returns how many changed."""
        if not values:
            return 0
        cols = ", ".join(f"f.{c}" for c in SCORE_COLUMNS)
        current = {r[0]: dict(zip(SCORE_COLUMNS, r[1:])) for r in self._by_ids(
            f"SELECT f.id, {cols} FROM findings f JOIN zw_ids i ON i.id = f.id", values)}
        by_cols: dict[tuple, list] = {}
        for fid, v in values.items():
            old = current.get(fid)
            if old is None:
                continue
            change = tuple(k for k in SCORE_COLUMNS if k in v and old.get(k) != v[k])
            if change:
                by_cols.setdefault(change, []).append(tuple(v[k] for k in change) + (fid,))
        for names, params in by_cols.items():
            self.db.conn.executemany(
                f"UPDATE findings SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?", params)
        return sum(len(p) for p in by_cols.values())

    def settle_hits(self, candidates: list[Finding], who: str) -> None:
        """Record the suppressions that analysis decided (``suppression_hit`` = (kind, rule
        id) and ``suppressed_reason`` on each candidate) for the stored findings they became:
        a ``new`` finding nobody else touched is suppressed (``suppress_finding``); one
        inserted already suppressed gets its hit and audit row once
        (``record_inserted_suppression``). Set-wise; candidates of one finding in turn."""
        ids = {f.id for f in candidates}
        if not ids:
            return
        state = {r[0]: [r[1], r[2]] for r in self._by_ids(
            "SELECT f.id, f.status, f.suppressed_reason FROM findings f JOIN zw_ids i ON i.id = f.id", ids)}
        touched = {r[0] for r in self._by_ids(
            "SELECT DISTINCT a.finding_id FROM audit a JOIN zw_ids i ON i.id = a.finding_id "
            "WHERE a.who <> ?", ids, [who])}
        hit = {r[0] for r in self._by_ids(
            "SELECT DISTINCT h.finding_id FROM suppression_hits h JOIN zw_ids i ON i.id = h.finding_id "
            "WHERE h.released_at IS NULL", ids)}
        hits, audit, status = [], [], []
        now = now_iso()
        for f in candidates:
            fid, reason, (kind, rule) = f.id, f.suppressed_reason, f.suppression_hit
            st = state[fid]
            if st[0] == "new":
                if fid in touched:
                    continue
                hits.append((fid, rule, kind, reason, st[0], st[1], now, who))
                audit.append((fid, now, who, f"suppress ({kind})", st[0], "suppressed", reason))
                status.append((reason, now, fid))
                state[fid] = ["suppressed", reason]
            elif st[0] == "suppressed" and st[1] == reason and fid not in hit:
                hits.append((fid, rule, kind, reason, "new", None, now, who))
                audit.append((fid, now, who, f"suppress ({kind})", "new", "suppressed", reason))
            else:
                continue
            hit.add(fid)
        conn = self.db.conn
        conn.executemany("INSERT INTO suppression_hits (finding_id, suppression_id, kind, reason, "
                         "prior_status, prior_reason, at, who) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", hits)
        conn.executemany("UPDATE findings SET status = 'suppressed', suppressed_reason = ?, "
                         "updated_at = ? WHERE id = ?", status)
        conn.executemany("INSERT INTO audit (finding_id, at, who, action, old_status, new_status, note) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", audit)

    def _by_ids(self, sql: str, ids, params=()) -> list[tuple]:
        """Rows of ``sql``, which joins ``zw_ids`` (a temporary table holding ``ids``)."""
        conn = self.db.conn
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS zw_ids (id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM zw_ids")
        conn.executemany("INSERT OR IGNORE INTO zw_ids VALUES (?)", [(i,) for i in ids])
        try:
            return conn.execute(sql, list(params)).fetchall()
        finally:
            conn.execute("DELETE FROM zw_ids")

    def filter_findings(self, statuses: Iterable[str] | None = None, tiers: Iterable[int] = (),
                        detectors: Iterable[str] = (), host: str | None = None,
                        since: str | None = None) -> list[dict]:
        """Findings by status / tier / detector / host (an address or a CIDR) / last_seen >=
        since, ordered by urgency (highest first), then due time, then first_seen."""
        where, params = [], []
        for col, values in (("status", statuses), ("tier", tiers), ("detector", detectors)):
            values = list(values or [])
            if values:
                where.append(f"{col} IN ({', '.join('?' * len(values))})")
                params += values
        net = None
        if host:
            try:
                net = analyst_network(host, "--host")
            except ValueError as exc:
                raise TriageError(str(exc)) from None
            if "/" not in host:  # one address: an exact match, by index
                where.append("host = ?")
                params.append(host.strip())
                net = None
        if since:
            where.append("last_seen >= ?")
            params.append(since)
        rows = self.store.findings(" AND ".join(where), params,
                                   order="urgency DESC, due_at, first_seen, id")
        if net is not None:
            rows = [r for r in rows if _in_net(r["host"], net)]
        return rows

    def evidence(self, fid: str) -> list[dict]:
        return self.store.evidence(fid)

    # -- assets --------------------------------------------------------------------------------
    def import_assets(self, rows: list[dict], source: str) -> tuple[int, int]:
        """Upsert inventory rows by address; returns (added, replaced)."""
        added = replaced = 0
        with self.db.atomic():
            for r in rows:
                exists = bool(list(self.db.query("SELECT 1 FROM assets WHERE address = ?",
                                                 [r["address"]])))
                self.db["assets"].upsert({**r, "imported_at": now_iso(), "source": source},
                                         pk="address")
                replaced += exists
                added += not exists
        return added, replaced

    def assets(self) -> list[dict]:
        return list(self.db.query("SELECT * FROM assets ORDER BY address"))


def _in_net(addr: str, net) -> bool:
    try:
        return ipaddress.ip_address(addr) in net
    except ValueError:
        return False
