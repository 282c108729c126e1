"""The store: stable ids, idempotent re-runs, episode merging, analyst fields kept."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from zeekwatch.errors import StoreError
from zeekwatch.finding import Finding
from zeekwatch.readers.base import IngestLog
from zeekwatch.store.db import Store


def cand(first, last, observed=25.0, host="10.0.0.5"):
    return Finding(detector="horizontal_scan", threat="worm", title="Horizontal scan", host=host,
                   peer=None, key="tcp/445", first_seen=first, last_seen=last, observed=observed,
                   threshold=20.0, summary=f"{host} tried {int(observed)}", urgency=6, tier=2,
                   due_at=first, values=["203.0.113.1"], uids=["C1", "C2"])


def test_rerun_adds_nothing_and_keeps_analyst_status(tmp_path):
    db = str(tmp_path / "f.db")
    s = Store(db)
    run = s.start_run(["x"], "analyze", "t")
    assert s.upsert_findings([cand("2024-01-01T00:00:00.000000Z", "2024-01-01T00:01:00.000000Z")], run, 300) == (1, 0)
    fid = s.findings()[0]["id"]
    s.db["findings"].update(fid, {"status": "investigating"})
    run2 = s.start_run(["x"], "analyze", "t")
    assert s.upsert_findings([cand("2024-01-01T00:00:00.000000Z", "2024-01-01T00:01:00.000000Z")], run2, 300) == (0, 0)
    rows = s.findings()
    assert len(rows) == 1 and rows[0]["id"] == fid and rows[0]["status"] == "investigating"
    assert s.db["evidence"].count == 3


@pytest.mark.parametrize("made_before", [False, True], ids=["new", "rowid-evidence-of-before"])
def test_evidence_is_kept_once_in_either_table_layout(tmp_path, made_before):
    """New databases keep evidence WITHOUT ROWID (the primary key is the table: half the
    bytes); a database made before keeps its rowid table, and both behave alike."""
    db = str(tmp_path / "f.db")
    if made_before:
        with sqlite3.connect(db) as c:
            c.execute('CREATE TABLE "evidence" ("finding_id" TEXT, "kind" TEXT, "value" TEXT, '
                      'PRIMARY KEY ("finding_id", "kind", "value"))')
    s = Store(db)
    for _ in range(2):
        run = s.start_run(["x"], "analyze", "t")
        s.upsert_findings([cand("2024-01-01T00:00:00.000000Z", "2024-01-01T00:01:00.000000Z")], run, 300)
    assert sorted(s.evidence(s.findings()[0]["id"]), key=lambda r: (r["kind"], r["value"])) == [
        {"kind": "uid", "value": "C1"}, {"kind": "uid", "value": "C2"},
        {"kind": "value", "value": "203.0.113.1"}]
    sql = s.db.execute("SELECT sql FROM sqlite_master WHERE name = 'evidence'").fetchone()[0]
    assert sql.rstrip().endswith("WITHOUT ROWID") is not made_before


def test_episode_within_merge_gap_extends_the_finding(tmp_path):
    s = Store(str(tmp_path / "f.db"))
    run = s.start_run([], "analyze", "t")
    s.upsert_findings([cand("2024-01-01T00:00:00.000000Z", "2024-01-01T00:01:00.000000Z")], run, 300)
    # 4 minutes later: same episode; 1 hour later: a new one
    assert s.upsert_findings([cand("2024-01-01T00:05:00.000000Z", "2024-01-01T00:05:30.000000Z", 40.0)], run, 300) == (0, 1)
    assert s.upsert_findings([cand("2024-01-01T01:05:00.000000Z", "2024-01-01T01:05:30.000000Z")], run, 300) == (1, 0)
    rows = s.findings(order="first_seen")
    assert [(r["first_seen"][11:19], r["last_seen"][11:19], r["observed"]) for r in rows] == [
        ("00:00:00", "00:05:30", 40.0), ("01:05:00", "01:05:30", 25.0)]


def test_finish_run_records_counts_and_rejects(tmp_path):
    s = Store(str(tmp_path / "f.db"))
    run = s.start_run(["a.log"], "analyze", "t")
    log = IngestLog()
    log.records["conn"] = 10
    log.reject("a.log", 7, "wrong number of fields (3, expected 21)", b"x\ty\tz")
    s.finish_run(run, log, 1.5, 0, 0)
    r = s.runs()[0]
    assert (r["conn_records"], r["rejects"], r["status"]) == (10, 1, "ok")
    assert list(s.db["rejects"].rows) == [{"run_id": run, "path": "a.log", "line": 7,
                                           "reason": "wrong number of fields (3, expected 21)",
                                           "raw": "x\ty\tz"}]


def test_not_a_database_is_a_store_error(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk.db: cannot open as a zeekwatch database"):
        Store(str(p))


def test_wal_mode(tmp_path):
    Store(str(tmp_path / "f.db")).close()
    assert sqlite3.connect(tmp_path / "f.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_known_services_span_widens_both_ways(tmp_path):
    s = Store(str(tmp_path / "f.db"))
    row = {"host": "10.0.0.5", "port": 22, "proto": "tcp", "origin": "learned"}
    s.learn_services([dict(row, first_seen="2024-02-01T00:00:00.000000Z", last_seen="2024-02-02T00:00:00.000000Z")])
    s.learn_services([dict(row, first_seen="2024-01-01T00:00:00.000000Z", last_seen="2024-01-02T00:00:00.000000Z")])
    s.learn_services([dict(row, first_seen="2024-03-01T00:00:00.000000Z", last_seen="2024-03-02T00:00:00.000000Z")])
    (k,) = s.known_services()
    assert (k["first_seen"][:10], k["last_seen"][:10]) == ("2024-01-01", "2024-03-02")


def test_scratch_of_a_killed_run_is_removed(tmp_path):
    import subprocess
    import sys

    from zeekwatch.config import Config
    from zeekwatch.engine.core import Engine

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / "zeekwatch-stale"
    stale.mkdir()
    (stale / "pid").write_text(dead)
    (stale / "tables.duckdb").write_bytes(b"x" * 1000)
    foreign = tmp_path / "zeekwatch-foreign"  # no pid file: left alone
    foreign.mkdir()
    cfg = Config()
    cfg.engine.temp_directory = str(tmp_path)
    eng = Engine(cfg)
    assert not stale.exists() and foreign.exists()
    eng.close()


def test_the_store_does_not_load_pandas_but_leaves_it_importable():
    # sqlite-utils imports pandas when it is installed (~0.2 s of every triage command);
    # the store loads it with pandas hidden, and pandas stays importable afterwards
    pytest.importorskip("pandas", reason="pandas is not installed here: nothing to hide")
    code = ("import sys; import zeekwatch.store.db, zeekwatch.store.triage; "
            "print('pandas' in sys.modules); import pandas; print(pandas.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "pandas"]
