"""Hostile and damaged input through the real `zeekwatch` command (issue 11, items 1-4, 13).

Every hostile file is generated here, from real shared data plus the damage; nothing is
committed. Each case asserts the exit code, that the damage is named (file and line or byte
offset, in ``rejects`` or ``runs.skipped``), that the good records around it are analysed,
and, for the decompression bombs, the peak RSS of the real process.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_file

EXE = Path(sys.executable).parent / "zeekwatch"
EVE = "frank-suricata/wrccdc-2018/alerts-only.eve.ndjson"  # 207 alert lines
ZEEK_JSON = "zat/json/conn.log"  # 50 conn records
TSV = "rita/proxy/conn.log"  # 463 conn records under an 8-line header
RSS_LIMIT_MB = 500
# run a command and report the child's peak RSS (ru_maxrss of the waited-for children)
RSS_RUNNER = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
              "sys.exit(p.returncode)")


def run(*args, cwd=None, timeout=600):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def run_measured(*args, timeout=600):
    """(completed process, peak RSS in MB) of a real ``zeekwatch`` process."""
    p = subprocess.run([sys.executable, "-c", RSS_RUNNER, str(EXE), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    *rest, rss = p.stderr.rstrip("\n").split("\n")
    p.stderr = "\n".join(rest)
    return p, int(rss) / 1024


def lines_of(rel: str) -> list[bytes]:
    return [x for x in Path(shared_file(rel)).read_bytes().split(b"\n") if x.strip()]


def run_row(db) -> dict:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone())
    row["reject_rows"] = [dict(r) for r in con.execute("SELECT path, line, reason FROM rejects "
                                                        "WHERE run_id = ?", [row["id"]])]
    con.close()
    row["skipped"] = json.loads(row["skipped"] or "[]")
    return row


# -- item 2: timestamps out of range are rejects, the rest is analysed ----------------------

BAD_JSON_TS = ["1e15", "1e300", "-1e12", '"9999-12-31T23:59:59Z"', '"0001-01-01T00:00:00Z"']


@pytest.mark.parametrize("ts", BAD_JSON_TS)
def test_zeek_json_timestamp_out_of_range_is_a_reject(tmp_path, ts):
    good = lines_of(ZEEK_JSON)
    bad = ('{"ts":%s,"uid":"Cbad","id.orig_h":"10.0.0.1","id.orig_p":1,"id.resp_h":"10.0.0.2",'
           '"id.resp_p":80,"proto":"tcp","conn_state":"S0"}' % ts).encode()
    log = tmp_path / "conn.json"
    log.write_bytes(b"\n".join(good[:20] + [bad] + good[20:]) + b"\n")
    db = tmp_path / "f.db"
    p = run("analyze", "-q", log, "--db", db)
    assert p.returncode == 0, p.stderr
    row = run_row(db)
    assert row["status"] == "ok" and row["conn_records"] == len(good)
    assert [(r["path"], r["line"]) for r in row["reject_rows"]] == [(str(log), 21)]
    assert "out of range" in row["reject_rows"][0]["reason"]


@pytest.mark.parametrize("ts", ["1e300", "-1e12", "1e15"])
def test_eve_timestamp_out_of_range_is_a_reject(tmp_path, ts):
    good = lines_of(EVE)[:100]
    bad = ('{"timestamp":%s,"event_type":"alert","src_ip":"10.0.0.1","dest_ip":"10.0.0.2",'
           '"alert":{"signature_id":1,"signature":"x"}}' % ts).encode()
    log = tmp_path / "eve.json"
    log.write_bytes(b"\n".join(good[:50] + [bad] + good[50:]) + b"\n")
    db = tmp_path / "f.db"
    p = run("analyze", "-q", log, "--db", db)
    assert p.returncode == 0, p.stderr
    row = run_row(db)
    assert row["alert_records"] == 100
    assert [(r["path"], r["line"]) for r in row["reject_rows"]] == [(str(log), 51)]


@pytest.mark.parametrize("ts", ["10000000000.0", "99999999999.0", "-5.0"])
def test_tsv_timestamp_out_of_range_is_a_reject(tmp_path, ts):
    lines = Path(shared_file(TSV)).read_bytes().split(b"\n")
    header = [x for x in lines if x.startswith(b"#") and not x.startswith(b"#close")]
    records = [x for x in lines if x and not x.startswith(b"#")]
    bad = records[0].split(b"\t")
    bad[0] = ts.encode()
    log = tmp_path / "conn.log"
    log.write_bytes(b"\n".join(header + records[:10] + [b"\t".join(bad)] + records[10:]) + b"\n")
    db = tmp_path / "f.db"
    p = run("analyze", "-q", log, "--db", db)
    assert p.returncode == 0, p.stderr
    row = run_row(db)
    assert row["conn_records"] == len(records)
    assert [(r["path"], r["line"]) for r in row["reject_rows"]] == [(str(log), len(header) + 11)]
    assert "time" in row["reject_rows"][0]["reason"]


# -- item 1: follow splits a failing batch down to the bad line -----------------------------

def test_follow_keeps_the_good_alerts_beside_a_bad_line(tmp_path):
    good = lines_of(EVE)[:100]
    bad = b'{"timestamp":1e15,"event_type":"alert","src_ip":"1.2.3.4","dest_ip":"5.6.7.8","alert":{"signature_id":1}}'
    eve = tmp_path / "eve.json"
    eve.write_bytes(b"\n".join(good[:50] + [bad] + good[50:]) + b"\n")
    db = tmp_path / "f.db"
    p = run("follow", eve, "--once", "--db", db)
    assert p.returncode == 0, p.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT sum(alert_records) FROM runs").fetchone()[0] == 100
    assert con.execute("SELECT path, line FROM rejects").fetchall() == [(str(eve), 51)]


def test_follow_batch_split_isolates_a_line_the_reader_crashes_on(tmp_path, monkeypatch):
    """A reader that fails on one line (a bug) costs that line only: the batch is split."""
    from zeekwatch.app.follow import parse as parsemod
    from zeekwatch.readers import reader_for
    from zeekwatch.readers.base import IngestLog

    real = reader_for("eve")

    def crashing(path, log):
        if b"POISON" in Path(path).read_bytes():
            raise OverflowError("injected reader failure")
        return real(path, log)

    monkeypatch.setattr(parsemod, "reader_for", lambda kind: crashing)
    good = lines_of(EVE)[:40]
    data = b"\n".join(good[:13] + [b'{"event_type":"alert","POISON":1}'] + good[13:]) + b"\n"
    parser, log = parsemod.BufferParser(), IngestLog()
    try:
        chunks = parser.parse("eve", "/x/eve.json", data, 101, [], log)
    finally:
        parser.close()
    assert sum(c.num_rows for t, c in chunks if t == "alert") == 40
    assert [(r.path, r.line) for r in log.rejects] == [("/x/eve.json", 114)]
    assert "OverflowError" in log.rejects[0].reason


# -- item 3: one bad file in a directory is skipped and listed, the rest analysed -----------

def _directory_with(tmp_path, make_bad) -> tuple[Path, str]:
    d = tmp_path / "logs"
    d.mkdir()
    (d / "good.json").write_bytes(Path(shared_file(EVE)).read_bytes())
    return d, make_bad(d)


def _truncated_gz(d):
    data = gzip.compress(Path(shared_file(TSV)).read_bytes())
    (d / "conn.log.gz").write_bytes(data[:len(data) // 2])
    return "conn.log.gz"


def _tiny_pcap(d):
    (d / "x.pcap").write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00")
    return "x.pcap"


def _dangling(d):
    os.symlink(d / "nowhere.json", d / "dangling.json")
    return "dangling.json"


def _loop(d):
    os.symlink(d / "loop2", d / "loop1")
    os.symlink(d / "loop1", d / "loop2")
    return "loop1"


def _socket(d):  # a directory entry that cannot be opened for reading, even by root
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "sock.json"))
    s.close()
    return "sock.json"


BAD_ENTRIES = {"truncated_gzip": _truncated_gz, "ten_byte_pcap": _tiny_pcap,
               "dangling_symlink": _dangling, "symlink_loop": _loop, "socket": _socket}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_a_bad_file_in_a_directory_costs_only_itself(tmp_path, case):
    d, bad = _directory_with(tmp_path, BAD_ENTRIES[case])
    db = tmp_path / "f.db"
    p = run("analyze", "-q", d, "--db", db)
    assert p.returncode == 0, p.stderr
    row = run_row(db)
    assert row["alert_records"] == 207  # the good file
    assert row["status"] == "ok"
    if case == "truncated_gzip":  # what decoded is kept; the damage is a reject naming the file
        assert 0 < row["conn_records"] < 463
        damage = [r for r in row["reject_rows"] if "gzip stream truncated" in r["reason"]]
        assert damage and damage[0]["path"] == str(d / bad)
        assert "byte" in damage[0]["reason"]
    else:
        assert [s["path"] for s in row["skipped"]] == [str(d / bad)] or case == "symlink_loop"
        assert str(d / bad) in {s["path"] for s in row["skipped"]}
        assert all(s["reason"] for s in row["skipped"])
        assert f"skipped {d / bad}" in p.stderr.replace("\n", " ")


def test_latin1_file_name_is_read_and_shown_escaped(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    name = os.fsdecode(b"caf\xe9.json")
    (d / name).write_bytes(Path(shared_file(EVE)).read_bytes())
    (d / "skip\x1b[2J.txt").write_bytes(b"not a log\n")
    db = tmp_path / "f.db"
    p = run("analyze", "-q", d, "--db", db)
    assert p.returncode == 0, p.stderr
    row = run_row(db)
    assert row["alert_records"] == 207
    assert "\x1b" not in p.stderr and "skip\\x1b[2J.txt" in p.stderr  # the name, escaped
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM findings").fetchone()[0] > 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_and_subdirectory_are_listed(tmp_path):
    d = tmp_path / "logs"
    (d / "sub").mkdir(parents=True)
    (d / "good.json").write_bytes(Path(shared_file(EVE)).read_bytes())
    (d / "locked.json").write_bytes(b"{}\n")
    (d / "locked.json").chmod(0)
    (d / "sub").chmod(0)
    try:
        p = run("analyze", "-q", d, "--db", tmp_path / "f.db")
    finally:
        (d / "sub").chmod(0o755)
    assert p.returncode == 0, p.stderr
    skipped = {s["path"] for s in run_row(tmp_path / "f.db")["skipped"]}
    assert {str(d / "locked.json"), str(d / "sub")} <= skipped


def test_truncated_eve_gzip_keeps_what_decoded(tmp_path):
    data = gzip.compress(Path(shared_file(EVE)).read_bytes())
    eve = tmp_path / "eve.json.gz"
    eve.write_bytes(data[:len(data) * 2 // 3])
    db = tmp_path / "f.db"
    p = run("analyze", "-q", eve, "--db", db)
    assert p.returncode == 0, p.stderr
    row = run_row(db)
    assert 50 < row["alert_records"] < 207
    reasons = {r["reason"] for r in row["reject_rows"]}
    assert any("gzip stream truncated at byte offset" in r for r in reasons)


# -- item 13: binary damage after a valid header --------------------------------------------

@pytest.mark.parametrize("rel,column", [(TSV, "conn_records"), (EVE, "alert_records")])
def test_binary_after_a_valid_start_keeps_the_records(tmp_path, rel, column):
    lines = Path(shared_file(rel)).read_bytes().split(b"\n")
    keep = 8 if rel == TSV else 1
    noise = bytes((i * 37 + 11) % 256 for i in range(4000)).replace(b"\n", b"")
    log = tmp_path / Path(rel).name
    log.write_bytes(b"\n".join(lines[:keep] + [noise] + lines[keep:]))
    db = tmp_path / "f.db"
    p = run("analyze", "-q", log, "--db", db)
    assert p.returncode == 0, p.stderr
    row = run_row(db)
    assert row[column] == (463 if rel == TSV else 207)
    assert [r["line"] for r in row["reject_rows"]] == [keep + 1]


# -- item 4: decompression bombs and blank floods stay bounded ------------------------------

def _bomb(path: Path, head: bytes, tail: bytes, members: int) -> None:
    """A multi-member gzip: ``head``, then ``members`` x 16 MB of 'A' (no newline), ``tail``."""
    block = gzip.compress(b"A" * (16 << 20), compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(head))
        for _ in range(members):
            f.write(block)
        f.write(gzip.compress(tail))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["eve_line", "zeek_json_line", "eve_array", "tsv_blank_lines"])
def test_bombs_stay_under_500_mb(tmp_path, case):
    eve, zj = Path(shared_file(EVE)).read_bytes(), Path(shared_file(ZEEK_JSON)).read_bytes()
    path = tmp_path / f"{case}.gz"
    if case == "eve_line":  # good lines, then one 1 GB line with no newline, then good lines
        _bomb(path, eve + b'{"event_type":"alert","x":"', b'"}\n' + eve, 64)
        column, want = "alert_records", 414
    elif case == "zeek_json_line":
        _bomb(path, zj + b'{"ts":1575413096.0,"_path":"conn","x":"', b'"}\n' + zj, 64)
        column, want = "conn_records", 100
    elif case == "eve_array":
        _bomb(path, b'[{"event_type":"alert","timestamp":"2024-01-01T00:00:00Z","x":"', b'"}]', 64)
        column, want = "alert_records", 0
    else:  # 7 header lines, 100 MB of newlines, then the records
        path = tmp_path / "conn.log"
        lines = Path(shared_file(TSV)).read_bytes().split(b"\n")
        with open(path, "wb") as f:
            f.write(b"\n".join(lines[:8]) + b"\n" + b"\n" * (100 << 20) + b"\n".join(lines[8:]))
        column, want = "conn_records", 463
    db = tmp_path / "f.db"
    p, rss = run_measured("analyze", "-q", path, "--db", db)
    assert p.returncode == 0, p.stderr
    assert rss < RSS_LIMIT_MB, f"{case}: peak RSS {rss:.0f} MB"
    row = run_row(db)
    assert row[column] == want
    if case != "tsv_blank_lines":
        assert len(row["reject_rows"]) == 1 and row["reject_rows"][0]["path"] == str(path)
        assert "32 MB" in row["reject_rows"][0]["reason"] or "33554432" in row["reject_rows"][0]["reason"]
    else:
        assert row["reject_rows"] == []
