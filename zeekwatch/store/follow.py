"""The store's follow-mode tables: checkpoints, committed with the findings they produced.

Part of the store layer (the only code touching SQLite): it works on an open ``Store``.

``checkpoints`` has one row per followed file *version* (device and inode):

- ``watch``: the path given to ``zeekwatch follow`` (a file or a directory);
- ``path``: where the file was last seen (a rotated file keeps its inode, not its name);
- ``kind``: reader kind (zeek_tsv, zeek_json, eve);
- ``offset`` / ``line``: bytes of complete lines consumed and the physical line number of the
  next line; ``header``: the Zeek TSV header block in force at ``offset`` (JSON list of lines);
- ``fp_len`` / ``fp``: a hash of the file's first bytes, so a reused inode or a file truncated
  and rewritten past the offset is told apart from the file we read;
- ``replay_offset`` / ``replay_line`` / ``replay_header``: where the rows that are still inside
  the look-back start; a restart re-reads from there to rebuild the detectors' window state,
  without counting those rows again;
- ``max_ts``: the newest data timestamp read from the file (epoch seconds);
- ``state``: ``active`` or ``done`` (rotated away and read to its end).

``commit_batch`` writes the findings of a micro-batch, the checkpoints of the input that
produced them, the run's counters and the batch's rejected lines in ONE transaction: after a
crash the database holds either all of a batch or none of it.
"""

from __future__ import annotations

import json
from typing import Iterable

from zeekwatch.finding import Finding
from zeekwatch.store.db import RUN_TABLES, Store, now_iso

CHECKPOINT_COLUMNS = {
    "dev": int, "inode": int, "watch": str, "path": str, "kind": str, "offset": int,
    "line": int, "header": str, "fp_len": int, "fp": str, "replay_offset": int,
    "replay_line": int, "replay_header": str, "max_ts": float, "state": str,
    "run_id": int, "updated_at": str,
}


class FollowStore:
    """Checkpoints and follow runs of one open ``Store``."""

    def __init__(self, store: Store):
        self.store = store
        self.db = store.db
        with self.db.atomic():  # write lock first: a concurrent run waits, no double CREATE
            if "checkpoints" not in self.db.table_names():
                self.db["checkpoints"].create(CHECKPOINT_COLUMNS, pk=("dev", "inode"))
                self.db["checkpoints"].create_index(["watch"])

    def checkpoints(self, watches: Iterable[str] | None = None) -> list[dict]:
        rows = list(self.db["checkpoints"].rows_where(order_by="watch, path"))
        if watches is None:
            return rows
        keep = set(watches)
        return [r for r in rows if r["watch"] in keep]

    def mark_interrupted(self) -> int:
        """Follow runs left ``running`` by a killed process become ``interrupted`` (called
        while holding the follow lock, so no live follower owns them)."""
        with self.db.atomic():
            cur = self.db.execute("UPDATE runs SET status = 'interrupted' WHERE command = 'follow' "
                                  "AND status = 'running'")
        return cur.rowcount

    def commit_batch(self, candidates: list[Finding], run_id: int, gap: float,
                     checkpoints: list[dict], drop: Iterable[tuple[int, int]], run: dict,
                     rejects: list) -> tuple[int, int]:
        """Findings, checkpoints, run counters and rejects of one batch, atomically.

        ``drop``: (dev, inode) of checkpoints no longer needed. ``run``: counters of the run
        so far (records per table, rejects, notes, skipped; findings before this batch, to
        which this batch's are added). Returns (new, updated).
        """
        now = now_iso()
        with self.db.atomic():
            new, updated = self.store.upsert_findings(candidates, run_id, gap)
            run = dict(run, findings_new=run.get("findings_new", 0) + new,
                       findings_updated=run.get("findings_updated", 0) + updated)
            for dev, inode in drop:
                self.db["checkpoints"].delete_where("dev = ? AND inode = ?", [dev, inode])
            if checkpoints:
                self.db["checkpoints"].upsert_all(
                    [{**c, "run_id": run_id, "updated_at": now} for c in checkpoints],
                    pk=("dev", "inode"), alter=False)
            self._update_run(run_id, run, now)
            if rejects:
                self.db["rejects"].insert_all(
                    ({"run_id": run_id, "path": r.path, "line": r.line, "reason": r.reason,
                      "raw": r.raw} for r in rejects), batch_size=1000)
        return new, updated

    def finish(self, run_id: int, run: dict, status: str) -> None:
        with self.db.atomic():
            self._update_run(run_id, run, now_iso(), status)

    def _update_run(self, run_id: int, run: dict, now: str, status: str | None = None) -> None:
        records = run.get("records", {})
        values = {f"{t}_records": int(records.get(t, 0)) for t in RUN_TABLES}
        values.update({
            "rejects": int(run.get("rejects", 0)),
            "skipped": json.dumps([{"path": p, "reason": r} for p, r in run.get("skipped", [])]),
            "notes": json.dumps(list(run.get("notes", []))),
            "findings_new": int(run.get("findings_new", 0)),
            "findings_updated": int(run.get("findings_updated", 0)),
            "seconds": round(float(run.get("seconds", 0.0)), 3),
        })
        if status is not None:
            values.update({"status": status, "finished_at": now})
        self.db["runs"].update(run_id, values)
