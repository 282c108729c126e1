"""The bulk ways ``store.upsert.write`` writes a large batch (evidence many rows a statement,
the findings' indexes built after the rows of an empty table) leave the database exactly as
the row-by-row way does: same rows (findings' rowids too), same schema, same index order.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3

import pytest

from zeekwatch.finding import Finding
from zeekwatch.store import upsert
from zeekwatch.store.db import Store
from zeekwatch.timefmt import iso, parse_iso

DAY = "2024-03-12T"
ODD = ["a\"quote", "back\\slash", "x\u00e9\u2603", "nul\x00byte", "'); DROP TABLE findings; --", ""]


def _time(rnd: random.Random, hour: int) -> str:
    return f"{DAY}{hour:02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}.{rnd.randrange(10**6):06d}Z"


def candidates(seed: int, n: int) -> list[Finding]:
    """``n`` findings as a busy network's run makes them: many entities seen once, some with
    several episodes (within the merge gap and beyond), 1..20 uids with repeats, odd values."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        e = rnd.randrange(n // 3 + 1)  # ~3 candidates an entity
        host, peer = f"10.20.{e % 7}.{e % 250}", f"198.51.{e % 5}.{e % 200}"
        hour = rnd.randrange(22)
        uids = [f"C{rnd.randrange(10**9):09d}x" for _ in range(rnd.randrange(1, 21))]
        uids += uids[:2]  # repeats: one evidence row each
        values = [rnd.choice(ODD + [peer, host])] if i % 5 == 0 else [peer]
        out.append(Finding(
            detector=("rare_destination", "unusual_port", "beacon")[e % 3], threat="c2",
            title="t", host=host, peer=peer, key=f"tcp/{1000 + e % 40}",
            first_seen=_time(rnd, hour), last_seen=_time(rnd, hour + 1),
            observed=float(rnd.randrange(1, 50)), threshold=3.0, distinct_total=len(values),
            values=values, evidence_total=len(uids), uids=uids,
            community_ids=[f"1:{u}=" for u in uids], summary=f"{host} -> {peer}",
            details={"bytes": rnd.randrange(10**6), "names": values}, urgency=5, tier=2,
            due_at=_time(rnd, hour + 2), score_terms={"terms": [{"term": "m", "value": 4}]}))
    return out


def _dump(path: str) -> dict:
    con = sqlite3.connect(path)
    try:
        return {
            "findings": con.execute("SELECT rowid, * FROM findings ORDER BY rowid").fetchall(),
            "evidence": con.execute("SELECT * FROM evidence ORDER BY 1, 2, 3").fetchall(),
            "audit": con.execute("SELECT finding_id, action, note FROM audit ORDER BY id").fetchall(),
            "schema": sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
                             .fetchall(), key=repr),
            "index_order": con.execute("PRAGMA index_list(findings)").fetchall(),
            "check": con.execute("PRAGMA integrity_check").fetchall(),
        }
    finally:
        con.close()


def _volatile(dump: dict) -> dict:
    """The dump without created_at / updated_at (the last two columns of findings)."""
    return {**dump, "findings": [r[:-2] for r in dump["findings"]]}


def _runs(path: str, batches: list[list[Finding]]) -> list[tuple]:
    store = Store(path)
    try:
        out = []
        for batch in batches:
            run = store.start_run(["x"], "analyze", "t")
            out.append(store.upsert_findings(batch, run, 600))
            out.append(tuple(sorted((c.id, c.stored) for c in batch)))
        return out
    finally:
        store.close()


@pytest.mark.parametrize("existing", [0, 40], ids=["empty-table", "a-few-stored"])
def test_bulk_writes_give_the_rows_of_row_by_row_writes(tmp_path, monkeypatch, existing):
    """A first batch (fresh or into a few stored findings), the same again (nothing new, no
    duplicates), then more: each way the same database."""
    first = candidates(1, 40)[:existing]
    batches = [candidates(2, 400), candidates(2, 400), candidates(3, 300) + candidates(2, 50)]
    if first:
        batches.insert(0, first)
    dumps = {}
    for way, (late, per) in {"bulk": (1, 7), "rows": (10**9, 1)}.items():
        monkeypatch.setattr(upsert, "LATE_INDEX_ROWS", late)
        monkeypatch.setattr(upsert, "ROWS_PER_INSERT", per)
        path = str(tmp_path / f"{way}.db")
        marks = _runs(path, [list(b) for b in batches])
        dumps[way] = (marks, _volatile(_dump(path)))
    assert dumps["bulk"] == dumps["rows"]
    marks, dump = dumps["bulk"]
    assert dump["check"] == [("ok",)] and len(dump["index_order"]) == 5
    assert marks[-4] == (0, 0) and dump["evidence"] and any("DROP" in (r[2] or "") for r in dump["evidence"])


def test_indexes_after_a_failure_are_as_before(tmp_path):
    """A write that fails between the dropped and the remade indexes leaves them (savepoint)."""
    store = Store(str(tmp_path / "f.db"))
    con = store.db.conn
    before = con.execute("SELECT name, sql FROM sqlite_master ORDER BY rowid").fetchall()
    with store.db.atomic():
        with pytest.raises(sqlite3.IntegrityError):
            with upsert.indexes_after(con, "findings"):
                con.execute("INSERT INTO findings (id, detector, host) VALUES ('F1', 'd', 'h')")
                con.execute("INSERT INTO findings (id, detector, host) VALUES ('F1', 'd', 'h')")
    assert con.execute("SELECT name, sql FROM sqlite_master ORDER BY rowid").fetchall() == before
    assert con.execute("SELECT count(*) FROM findings").fetchone() == (0,)
    store.close()


@pytest.mark.parametrize("text", ["2024-03-12T11:10:00.040000Z", "2024-12-31T23:55:00.000000Z",
                                  "1970-01-01T00:00:00.000000Z", "0999-01-01T00:05:00.000000Z",
                                  "2024-03-12T11:10:00Z", "2024-03-12 11:10:00.040000Z",
                                  "2024-03-12T11:10:00.04+01:00"])
def test_shift_writes_what_iso_writes(text):
    """The merge window's bounds: the fast path for the store's own texts, the rest as before."""
    gap = dt.timedelta(seconds=600)
    for delta in (gap, -gap, dt.timedelta(0)):
        assert upsert.shift(text, delta) == iso(parse_iso(text) + delta)
