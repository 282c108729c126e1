"""Hostile values on the terminal, analyst input, and the store's faults, through the real
`zeekwatch` command (issue 11, items 5, 6, 10, 12)."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import conn, zeek_tsv

EXE = Path(sys.executable).parent / "zeekwatch"
HOSTILE = "\x1b[31mEVIL\x1b]0;title\x07\x1b[2J\nF0000000000000000   9    3  FORGED ROW"


def run(*args, cwd=None, preexec=None, env=None):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, preexec_fn=preexec, env=env)


def eve_alerts(path: Path, signature: str = "ET TROJAN test", host: str = "10.0.0.5") -> Path:
    with open(path, "w") as f:
        for i in range(3):
            f.write(json.dumps({
                "timestamp": f"2024-01-01T00:00:0{i}Z", "event_type": "alert", "src_ip": host,
                "src_port": 1000 + i, "dest_ip": "203.0.113.9", "dest_port": 80, "proto": "TCP",
                "alert": {"signature_id": 9000001, "rev": 1, "gid": 1, "signature": signature,
                          "category": "A Network Trojan was detected", "severity": 1}}) + "\n")
    return path


def scan_log(tmp_path) -> str:
    rows = [conn(1_700_000_000 + i, "10.0.0.7", f"203.0.113.{i + 1}", 445, conn_state="S0")
            for i in range(30)]
    return zeek_tsv(tmp_path / "conn.log", "conn", rows)


def analyzed(tmp_path, *paths) -> Path:
    db = tmp_path / "f.db"
    p = run("analyze", "-q", *paths, "--db", db)
    assert p.returncode == 0, p.stderr
    return db


@pytest.fixture(scope="module")
def scan_db_once(tmp_path_factory):
    """One analysed scan, made once per module; tests get a copy (``scan_db``)."""
    tmp = tmp_path_factory.mktemp("scan")
    return analyzed(tmp, scan_log(tmp))


@pytest.fixture
def scan_db(scan_db_once, tmp_path):
    db = tmp_path / "f.db"
    shutil.copy(scan_db_once, db)
    return db


def query(db, sql, params=()):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def finding_of(db, detector):
    return query(db, "SELECT id FROM findings WHERE detector = ?", [detector])[0][0]


# -- item 5: control characters escaped on the terminal, exports exact -----------------------

def test_terminal_output_escapes_control_characters(tmp_path):
    db = analyzed(tmp_path, eve_alerts(tmp_path / "eve.json", HOSTILE))
    fid = finding_of(db, "ids_alert")
    for args in (("findings",), ("findings", "show", fid), ("findings", "--status", "all")):
        p = run(*args, "--db", db)
        assert p.returncode == 0, p.stderr
        assert "\x1b" not in p.stdout and "\x07" not in p.stdout
        assert "\\x1b[31mEVIL\\x1b]0;title\\x07\\x1b[2J\\x0aF0000000000000000" in p.stdout
        assert not any(line.startswith("F0000000000000000") for line in p.stdout.splitlines())


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_exports_keep_the_exact_data_on_stdout_and_in_a_file(tmp_path, fmt):
    db = analyzed(tmp_path, eve_alerts(tmp_path / "eve.json", HOSTILE))
    out = tmp_path / f"x.{fmt}"
    assert run("findings", "export", "--format", fmt, "-o", out, "--db", db).returncode == 0
    piped = subprocess.run([str(EXE), "findings", "export", "--format", fmt, "--db", str(db)],
                           capture_output=True, timeout=300)
    assert piped.returncode == 0
    assert piped.stdout == out.read_bytes()
    if fmt == "jsonl":
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        assert rows[0]["details"]["signature"] == HOSTILE
    else:
        assert HOSTILE.replace("\n", "\n").encode() in piped.stdout.replace(b'""', b'"')


def test_error_messages_escape_file_names(tmp_path):
    bad = tmp_path / "x\x1b[2Jy.log"
    bad.write_text("lorem ipsum dolor\n")
    p = run("analyze", "-q", bad, "--db", tmp_path / "f.db")
    assert p.returncode == 3
    assert "\x1b" not in p.stderr and "x\\x1b[2Jy.log" in p.stderr


# -- item 6: an error applies nothing -------------------------------------------------------

@pytest.mark.parametrize("extra", [
    ("--suppress", "signature"),  # a scan finding has no Suricata signature
    ("--suppress", "host", "--expires", "not-a-date"),
    ("--suppress", "host", "--expires", "2001-01-01"),  # in the past
    ("--expires", "2030-01-01"),  # an expiry without a rule
])
def test_a_refused_status_change_writes_nothing(scan_db, extra):
    db = scan_db
    fid = finding_of(db, "horizontal_scan")
    before = query(db, "SELECT status, (SELECT count(*) FROM audit), (SELECT count(*) FROM "
                       "suppressions) FROM findings WHERE id = ?", [fid])
    p = run("findings", "set-status", fid, "false_positive", "--note", "benign", *extra,
            "--db", db)
    assert p.returncode == 2, p.stdout + p.stderr
    assert query(db, "SELECT status, (SELECT count(*) FROM audit), (SELECT count(*) FROM "
                     "suppressions) FROM findings WHERE id = ?", [fid]) == before


# -- item 12: analyst input -> exit 2/3 with a clear message, never 1 -----------------------

ANALYST = [
    (("suppress", "add", "--cidr", "10.0.0.1/8"), 2, "host bits set"),
    (("suppress", "add", "--peer", "nonsense"), 2, "not an address"),
    (("suppress", "add", "--detector", "no_such_detector"), 2, "unknown detector"),
    (("suppress", "add", "--cidr", "10.0.0.0/8", "--start", "2024-02-01", "--end", "2024-01-01"),
     2, "after --end"),
    (("suppress", "add", "--sid", "-5"), 2, "range"),
    (("suppress", "add", "--sid", "99999999999999999999999"), 2, "range"),
    (("suppress", "add", "--cidr", "10.0.0.0/8", "--start", "0999-01-01"), 2, "out of range"),
    (("suppress", "add", "--cidr", "10.0.0.0/8", "--start", "9999-12-31T23:59:59-05:00"), 2,
     "out of range"),
    (("suppress", "remove", "999999999999999999999"), 2, "range"),
]
FINDINGS_ARGS = [
    (("findings", "--since", "99999999d"), 2, "before 1970"),
    (("findings", "--since", "0999-01-01"), 2, "out of range"),
    (("findings", "--host", "10.0.0.1/8"), 2, "host bits set"),
    (("findings", "--host", "garbage"), 2, "not an address"),
    (("findings", "--detector", "no_such_detector"), 2, "unknown detector"),
]


@pytest.mark.parametrize("args,code,message", ANALYST + FINDINGS_ARGS, ids=lambda x: str(x)[:40])
def test_analyst_input_is_validated(scan_db, args, code, message):
    db = scan_db
    rules = query(db, "SELECT count(*) FROM suppressions")
    extra = ("--owner", "a", "--reason", "b") if args[:2] == ("suppress", "add") else ()
    p = run(*args, *extra, "--db", db)
    assert p.returncode == code, p.stdout + p.stderr
    assert message in p.stderr
    assert query(db, "SELECT count(*) FROM suppressions") == rules


def test_analyze_refuses_an_unknown_detector_before_writing(tmp_path):
    db = tmp_path / "f.db"
    p = run("analyze", "--detector", "no_such_detector", scan_log(tmp_path), "--db", db)
    assert p.returncode == 2 and "unknown detector" in p.stderr
    assert not db.exists()


@pytest.mark.parametrize("encoding,code", [("latin-1", 3), ("utf-16", 0)])
def test_inventory_encodings(scan_db, tmp_path, encoding, code):
    db = scan_db
    csv = tmp_path / "assets.csv"
    csv.write_bytes("address,class,name,owner\n10.0.0.7,server,caf\u00e9,ops\n".encode(encoding))
    p = run("assets", "import", csv, "--db", db)
    assert p.returncode == code, p.stderr
    if code:
        assert f"{csv}:2" in p.stderr and "UTF-8" in p.stderr
    else:
        assert query(db, "SELECT name FROM assets") == [("caf\u00e9",)]


# -- item 10: the store -----------------------------------------------------------------------

def test_concurrent_analyze_runs_on_a_fresh_database_both_succeed(tmp_path):
    log = scan_log(tmp_path)
    db = tmp_path / "f.db"
    procs = [subprocess.Popen([str(EXE), "analyze", "-q", log, "--db", str(db)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], results
    assert query(db, "SELECT count(*), min(status), max(status) FROM runs") == [(3, "ok", "ok")]
    assert query(db, "SELECT count(*) FROM findings WHERE detector = 'horizontal_scan'") == [(1,)]


def test_foreign_sqlite_database_is_refused_untouched(tmp_path):
    db = tmp_path / "crm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'x')")
    con.commit()
    con.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    for args in (("analyze", "-q", scan_log(tmp_path)), ("findings",), ("findings", "export"),
                 ("suppress", "add", "--cidr", "10.0.0.0/8", "--owner", "a", "--reason", "b")):
        p = run(*args, "--db", db)
        assert p.returncode == 5, (args, p.stderr)
        assert "not a zeekwatch database" in p.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert sorted(os.listdir(tmp_path)) == ["conn.log", "crm.db"]


def test_old_schema_is_migrated(tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at TEXT, status TEXT)")
    con.execute("CREATE TABLE findings (id TEXT PRIMARY KEY, detector TEXT NOT NULL, "
                "host TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'new', summary TEXT)")
    con.execute("INSERT INTO findings (id, detector, host, summary) VALUES ('Fold', 'x', "
                "'10.9.9.9', 'from an old version')")
    con.commit()
    con.close()
    p = run("analyze", "-q", scan_log(tmp_path), "--db", db)
    assert p.returncode == 0, p.stderr
    assert query(db, "SELECT summary FROM findings WHERE id = 'Fold'") == [("from an old version",)]
    assert query(db, "SELECT count(*) FROM findings WHERE detector = 'horizontal_scan'") == [(1,)]


def test_triage_changes_are_in_the_main_database_file(tmp_path):
    db = analyzed(tmp_path, scan_log(tmp_path))
    fid = finding_of(db, "horizontal_scan")
    assert run("findings", "set-status", fid, "investigating", "--note", "x", "--db", db).returncode == 0
    p = run("suppress", "add", "--cidr", "10.0.0.0/8", "--owner", "a", "--reason", "b", "--db", db)
    assert p.returncode == 0, p.stderr
    copy = tmp_path / "copy" / "f.db"
    copy.parent.mkdir()
    shutil.copy(db, copy)  # the main file alone, without its -wal
    assert query(copy, "SELECT status FROM findings WHERE id = ?", [fid]) == [("suppressed",)]
    assert query(copy, "SELECT count(*) FROM audit WHERE finding_id = ?", [fid]) == [(2,)]


def test_findings_and_export_work_on_a_read_only_database(tmp_path):
    """Read commands open the database read-only (SQLite ``mode=ro``; ``immutable`` when not
    even its -shm can be made): they never write to it, so they work on a file or directory
    the user cannot write. (Root writes whatever the mode: then that the bytes stay the same
    is what is checked.)"""
    db = analyzed(tmp_path, scan_log(tmp_path))
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(db, ro / "f.db")
    digest = hashlib.sha256((ro / "f.db").read_bytes()).hexdigest()
    (ro / "f.db").chmod(0o444)
    ro.chmod(0o555)
    try:
        for args in (("findings",), ("findings", "show", finding_of(db, "horizontal_scan")),
                     ("findings", "export", "--format", "csv"), ("suppress", "list"),
                     ("assets", "list"), ("tune", "suricata")):
            p = run(*args, "--db", ro / "f.db")
            assert p.returncode == 0, (args, p.stderr)
        assert "10.0.0.7" in run("findings", "--db", ro / "f.db").stdout
        assert hashlib.sha256((ro / "f.db").read_bytes()).hexdigest() == digest
        if os.geteuid() != 0:
            p = run("findings", "set-status", finding_of(db, "horizontal_scan"), "investigating",
                    "--note", "x", "--db", ro / "f.db")
            assert p.returncode == 5 and "read-only" in p.stderr
    finally:
        ro.chmod(0o755)


def _small_files():
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG


def test_disk_full_is_a_store_error(tmp_path):
    """The store cannot grow past 300 KB (RLIMIT_FSIZE: a real write error, as on a full
    disk) while the run has 3,000 rejected lines of 400 bytes to record."""
    rows = [conn(1_700_000_000 + i, "10.0.0.7", f"203.0.113.{i % 250}", 445, conn_state="S0")
            for i in range(100)]
    log = Path(zeek_tsv(tmp_path / "conn.log", "conn", rows))
    with open(log, "a") as f:
        for i in range(3000):
            f.write(f"{i}\tnot-a-record\t" + "x" * 400 + "\n")
    p = run("analyze", "-q", log, "--db", tmp_path / "f.db", preexec=_small_files)
    assert p.returncode == 5, p.stderr
    assert "disk is full" in p.stderr or "disk full" in p.stderr
    assert "internal error" not in p.stderr
