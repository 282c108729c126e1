"""Follow mode: tailing through rotation, copytruncate, late files, partial lines and header
changes; exactly-once across kill -9; the same findings as `analyze` on the final files.

Live tests run the ``Follower`` in a thread (or the real command in a subprocess) with a
0.1-0.2 s interval and wait on the database, so each takes a few seconds at most.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import conn, zeek_tsv

from zeekwatch.app.analyze import analyze
from zeekwatch.app.follow import Follower, FollowOptions
from zeekwatch.app.follow.parse import header_after
from zeekwatch.config import Config

EXE = Path(sys.executable).parent / "zeekwatch"
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
# Windowed detectors: exact sliding windows, so follow must equal analyze on them.
WINDOWED = ("horizontal_scan", "vertical_scan", "ping_sweep", "mass_mailer", "mx_burst")
KEY = "detector, host, coalesce(peer, ''), coalesce(key, '')"


# -- writing Zeek logs piece by piece --------------------------------------------------------

def tsv_parts(tmp_path, rows, log_path="conn", fields=None):
    """(header lines, data lines, #close line) of the log helpers.zeek_tsv would write."""
    text = Path(zeek_tsv(tmp_path / f".parts-{log_path}", log_path, rows, fields)).read_text()
    lines = text.splitlines(keepends=True)
    return "".join(lines[:8]), lines[8:-1], lines[-1]


def append(path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def scan_rows(n=30, host="10.0.0.5", start=T0, port=445, step=1.0):
    return [conn(start + i * step, host, f"203.0.113.{i + 1}", port, conn_state="S0",
                 uid=f"C{host.replace('.', '')}p{port}n{i}") for i in range(n)]


def quiet_rows(n=20, start=T0):
    return [conn(start + i, "10.0.0.7", "10.0.0.9", 80, service="http", uid=f"Cq{i}")
            for i in range(n)]


# -- running follow and analyze ---------------------------------------------------------------

def follow_once(paths, db, **opt):
    return Follower([str(p) for p in paths], Config(), str(db),
                    FollowOptions(once=True, interval=0.1, **opt)).run()


class LiveFollower:
    """A Follower in a thread, stopped (batch finished and committed) on exit."""

    def __init__(self, paths, db, **opt):
        self.reports = []
        self.follower = Follower([str(p) for p in paths], Config(), str(db),
                                 FollowOptions(interval=0.1, grace=0.3, **opt),
                                 on_batch=self.reports.append)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.result = self.follower.run()
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.follower.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


def query(db, sql, params=()):
    con = sqlite3.connect(str(db), timeout=10)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def records(db, table="conn") -> int:
    if not os.path.exists(db):
        return -1
    try:
        return query(db, f"SELECT coalesce(sum({table}_records), 0) FROM runs")[0][0]
    except sqlite3.OperationalError:
        return -1


def wait_for(check, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the follower")


def findings(db, detectors=None):
    sql = ("SELECT id, detector, host, peer, key, first_seen, last_seen, observed FROM findings")
    if detectors:
        sql += f" WHERE detector IN ({', '.join('?' for _ in detectors)})"
    return sorted(query(db, sql, list(detectors or ())))


def analyze_db(tmp_path, paths, name="analyze.db"):
    db = tmp_path / name
    analyze([str(p) for p in paths], Config(), str(db))
    return db


def rejects(db):
    return sorted(query(db, "SELECT path, line, reason FROM rejects"))


# -- the header tracker ------------------------------------------------------------------------

def test_header_after_tracks_the_block_in_force():
    head = ["#separator \\x09", "#path\tconn", "#fields\ta\tb"]
    assert header_after(head, b"1\t2\n") == head
    assert header_after(head, b"1\t2\n#fields\ta\tb\tc\n#close\tx\n") == [
        "#separator \\x09", "#path\tconn", "#fields\ta\tb\tc"]
    assert header_after(head, b"#separator \\x09\n#path\tdns\n1\n") == ["#separator \\x09", "#path\tdns"]


# -- tailing ---------------------------------------------------------------------------------

def test_partial_last_line_waits_for_its_newline(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, quiet_rows(10))
    cut = len(lines[5]) // 2
    log.write_text(head + "".join(lines[:5]) + lines[5][:cut])
    follow_once([log], db)
    assert records(db) == 5
    append(log, lines[5][cut:] + "".join(lines[6:]) + close)
    follow_once([log], db)
    assert records(db) == 10
    assert rejects(db) == []
    assert records(analyze_db(tmp_path, [log])) == 10


def test_rotation_by_rename_finishes_the_old_file_then_starts_the_new(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, scan_rows(30))
    head2, lines2, close2 = tsv_parts(tmp_path, quiet_rows(8, start=T0 + 40))
    log.write_text(head + "".join(lines[:10]))
    with LiveFollower([log], db):
        wait_for(lambda: records(db) == 10)
        append(log, "".join(lines[10:20]))  # written just before the rename ...
        os.rename(log, tmp_path / "conn.2023-11-14-22-00-00.log")
        append(tmp_path / "conn.2023-11-14-22-00-00.log", "".join(lines[20:]) + close)  # ... and after
        log.write_text(head2 + "".join(lines2) + close2)
        wait_for(lambda: records(db) == 38)
    final = [tmp_path / "conn.2023-11-14-22-00-00.log", log]
    assert records(db) == records(analyze_db(tmp_path, final)) == 38
    assert findings(db, WINDOWED) == findings(tmp_path / "analyze.db", WINDOWED)
    assert len(findings(db, WINDOWED)) == 1


def test_rotation_while_stopped_is_finished_after_restart(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, scan_rows(30))
    log.write_text(head + "".join(lines[:12]))
    follow_once([log], db)
    append(log, "".join(lines[12:]) + close)
    os.rename(log, tmp_path / "conn.1.log")  # rotated while zeekwatch was not running
    head2, lines2, close2 = tsv_parts(tmp_path, quiet_rows(5, start=T0 + 50))
    log.write_text(head2 + "".join(lines2))
    follow_once([log], db)
    assert records(db) == 35
    assert findings(db, WINDOWED) == findings(analyze_db(tmp_path, [tmp_path / "conn.1.log", log]), WINDOWED)


def test_copytruncate_starts_again_at_zero(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, quiet_rows(12))
    log.write_text(head + "".join(lines[:8]))
    with LiveFollower([log], db):
        wait_for(lambda: records(db) == 8)
        (tmp_path / "conn.log.1").write_text(log.read_text())  # logrotate copytruncate
        with open(log, "r+") as f:
            f.truncate(0)
        time.sleep(0.3)
        append(log, head + "".join(lines[8:]) + close)
        wait_for(lambda: records(db) == 12)
    assert rejects(db) == []
    notes = json.loads(query(db, "SELECT notes FROM runs")[0][0])
    assert any("truncated" in n for n in notes)


def test_copytruncate_regrown_past_the_offset_is_noticed(tmp_path):
    """Truncated and rewritten beyond the old offset between two polls: the first bytes differ."""
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, quiet_rows(6))
    log.write_text(head + "".join(lines[:2]))
    follow_once([log], db)
    head2, lines2, _ = tsv_parts(tmp_path, quiet_rows(6, start=T0 + 100))
    log.write_text(head2.replace("2024-01-01-00-00-00", "2024-01-01-01-00-00") + "".join(lines2))
    follow_once([log], db)
    assert records(db) == 2 + 6


def test_a_file_that_does_not_exist_yet_is_waited_for(tmp_path):
    log, db = tmp_path / "later" / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, quiet_rows(7))
    with LiveFollower([log], db):
        time.sleep(0.4)
        log.parent.mkdir()
        log.write_text(head + "".join(lines) + close)
        wait_for(lambda: records(db) == 7)


def test_header_change_mid_stream(tmp_path):
    """A new header block with other #fields (Zeek restarted with more fields) mid-file."""
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, _ = tsv_parts(tmp_path, scan_rows(15))
    from helpers import CONN_FIELDS
    wider = [("community_id", "string")] + [f for f in CONN_FIELDS if f[0] != "service"]
    rows2 = [dict(r, community_id=f"1:x{i}=") for i, r in enumerate(scan_rows(30)[15:])]
    head2, lines2, close2 = tsv_parts(tmp_path, rows2, fields=wider)
    log.write_text(head + "".join(lines))
    follow_once([log], db)
    append(log, head2 + "".join(lines2[:5]))
    follow_once([log], db)  # a restart: the new header comes from the checkpoint
    append(log, "".join(lines2[5:]) + close2)
    follow_once([log], db)
    assert records(db) == 30 and rejects(db) == []
    assert findings(db, WINDOWED) == findings(analyze_db(tmp_path, [log]), WINDOWED)
    assert query(db, "SELECT observed FROM findings WHERE detector = 'horizontal_scan'") == [(30.0,)]


def test_bad_lines_become_rejects_with_their_physical_line(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, quiet_rows(6))
    log.write_text(head + "".join(lines[:3]))
    follow_once([log], db)
    append(log, "garbage\twith\ttoo few fields\n" + "".join(lines[3:]) + close)
    follow_once([log], db)
    assert records(db) == 6
    got = rejects(db)
    assert [(p, line) for p, line, _ in got] == [(str(log), 12)]
    assert [(p, line) for p, line, _ in rejects(analyze_db(tmp_path, [log]))] == [(str(log), 12)]


def test_directory_follows_new_logs_and_skips_non_logs(tmp_path):
    d, db = tmp_path / "current", tmp_path / "f.db"
    d.mkdir()
    head, lines, close = tsv_parts(tmp_path, scan_rows(25))
    (d / "conn.log").write_text(head + "".join(lines[:10]))
    (d / "stderr.log").write_text("listening on eth0\n")
    with LiveFollower([d], db):
        wait_for(lambda: records(db) == 10)
        dns_head, dns_lines, dns_close = tsv_parts(tmp_path, [
            dict(ts=T0 + i, uid=f"D{i}", orig_h="10.0.0.5", orig_p=5000, resp_h="10.0.0.53",
                 resp_p=53, proto="udp", query=f"n{i}.example", qtype_name="A",
                 rcode_name="NOERROR", answers=[f"198.51.100.{i}"]) for i in range(3)], "dns")
        (d / "dns.log").write_text(dns_head + "".join(dns_lines) + dns_close)
        append(d / "conn.log", "".join(lines[10:]) + close)
        wait_for(lambda: records(db) == 25 and records(db, "dns") == 3)
    skipped = json.loads(query(db, "SELECT skipped FROM runs")[0][0])
    assert [s["path"] for s in skipped] == [str(d / "stderr.log")]


def test_eve_lines_are_followed(tmp_path):
    eve, db = tmp_path / "eve.json", tmp_path / "f.db"

    def alert(i):
        return json.dumps({"timestamp": f"2023-11-14T22:13:{20 + i:02d}.000000+0000", "event_type": "alert",
                           "src_ip": "10.0.0.5", "src_port": 40000 + i, "dest_ip": "203.0.113.9",
                           "dest_port": 443, "proto": "TCP", "flow_id": 1000 + i,
                           "alert": {"gid": 1, "signature_id": 2024217, "rev": 3, "severity": 1,
                                     "signature": "ET MALWARE test", "category": "A Network Trojan was detected",
                                     "action": "allowed"}}) + "\n"
    eve.write_text(alert(0) + alert(1) + '{"broken": \n')
    follow_once([eve], db)
    assert records(db, "alert") == 2 and rejects(db) == [(str(eve), 3, rejects(db)[0][2])]
    append(eve, alert(2))
    follow_once([eve], db)
    assert records(db, "alert") == 3
    assert query(db, "SELECT detector, observed FROM findings") == [("ids_alert", 3.0)]


# -- findings across batches -------------------------------------------------------------------

def test_a_burst_across_batches_is_one_finding_that_grows(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, scan_rows(40))
    log.write_text(head + "".join(lines[:25]))
    follow_once([log], db)
    first = findings(db, ["horizontal_scan"])
    assert [f[7] for f in first] == [25.0]
    append(log, "".join(lines[25:]) + close)
    follow_once([log], db)
    grown = findings(db, ["horizontal_scan"])
    assert [(f[0], f[5], f[7]) for f in grown] == [(first[0][0], first[0][5], 40.0)]
    assert grown[0][6] > first[0][6]
    assert grown == findings(analyze_db(tmp_path, [log]), ["horizontal_scan"])


def generated_stream(tmp_path):
    """Background traffic, a horizontal scan, a vertical scan and a ping sweep, in ts order."""
    rows = [conn(T0 + i * 0.5, f"10.0.1.{i % 7 + 1}", "10.0.0.9", 443, service="ssl", uid=f"Cb{i}")
            for i in range(400)]
    rows += scan_rows(45, start=T0 + 30, step=1.7)  # 45 hosts over 75 s
    rows += [conn(T0 + 90 + i, "10.0.0.6", "10.0.0.20", 1000 + i, conn_state="REJ", uid=f"Cv{i}")
             for i in range(25)]
    rows += [conn(T0 + 150 + i * 0.5, "10.0.0.8", f"10.0.2.{i + 1}", 0, proto="icmp", orig_p=8,
                  conn_state="OTH", uid=f"Cp{i}") for i in range(14)]
    rows += scan_rows(25, start=T0 + 400, port=23)  # a later, separate burst
    return sorted(rows, key=lambda r: r["ts"])


@pytest.mark.slow
def test_follow_equals_analyze_on_a_generated_stream(tmp_path):
    """Windowed detectors: identical findings (ids, times, observed) whatever the batching.

    Excluded: the whole-data detectors (unusual_port, rare_destination, new_listener,
    off_hours: prevalence/baselines/per-night counts over all the data; not run by follow by
    default) and the counts of per-connection detectors (c2_port, ids_alert, ...: same
    entities, but counted per look-back rather than over the whole file; see docs/follow.md).
    """
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, generated_stream(tmp_path))
    log.write_text(head)
    with LiveFollower([log], db):
        for i in range(0, len(lines), 60):  # pieces over several batches
            append(log, "".join(lines[i:i + 60]))
            time.sleep(0.12)
        append(log, close)
        wait_for(lambda: records(db) == len(lines))
    want = findings(analyze_db(tmp_path, [log]), WINDOWED)
    assert {f[1] for f in want} == {"horizontal_scan", "vertical_scan", "ping_sweep"}
    assert len([f for f in want if f[1] == "horizontal_scan"]) == 2
    assert findings(db, WINDOWED) == want
    # restarting on every piece (replay of the look-back) gives the same
    db2 = tmp_path / "f2.db"
    log2 = tmp_path / "b" / "conn.log"
    log2.parent.mkdir()
    log2.write_text(head)
    for i in range(0, len(lines), 45):
        append(log2, "".join(lines[i:i + 45]))
        follow_once([log2], db2)
    append(log2, close)
    follow_once([log2], db2)
    assert [f[1:] for f in findings(db2, WINDOWED)] == [f[1:] for f in want]


# -- the real command ------------------------------------------------------------------------

def start(*args):
    return subprocess.Popen([str(EXE), "follow", "--interval", "0.2", "-q", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_and_restart_loses_and_doubles_nothing(tmp_path):
    """The real command, killed with SIGKILL three times while the log grows, then stopped
    with SIGTERM: rows, rejects and windowed findings exactly as `analyze` gives them."""
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, generated_stream(tmp_path))
    lines.insert(200, "bad line\n")
    log.write_text(head)
    pos, out = 0, ""
    # each follower gets new lines of its own to commit (else it would never commit again)
    limits = [len(lines) * k // 4 for k in (1, 2, 3)] + [len(lines)]
    for kill_after, limit in zip((0.05, 0.3, 0.15, None), limits):  # seconds after its first commit
        proc = start(log, "--db", db, "--jsonl")
        before, committed_at = max(records(db), 0), None
        deadline = time.monotonic() + 60
        while kill_after is not None and (committed_at is None or time.monotonic() - committed_at < kill_after):
            assert time.monotonic() < deadline, "the follower committed nothing within 60 s"
            if pos < limit:  # the log grows while the follower works
                append(log, "".join(lines[pos:min(pos + 6, limit)]))
                pos = min(pos + 6, limit)
            time.sleep(0.04)
            if committed_at is None and records(db) > before:
                committed_at = time.monotonic()
        if kill_after is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert proc.returncode == -signal.SIGKILL
            continue
        append(log, "".join(lines[pos:]) + close)
        try:
            wait_for(lambda: records(db) == len(lines) - 1, timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    adb = analyze_db(tmp_path, [log])
    assert records(db) == records(adb) == len(lines) - 1
    assert len(rejects(db)) == len(rejects(adb)) == 1
    assert findings(db, WINDOWED) == findings(adb, WINDOWED)
    statuses = [s for (s,) in query(db, "SELECT status FROM runs ORDER BY id")]
    assert statuses[-1] == "ok" and set(statuses[:-1]) <= {"interrupted"}
    for line in out.splitlines():
        assert json.loads(line)["change"] in ("new", "updated")


def test_once_and_jsonl_output(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, scan_rows(30))
    log.write_text(head + "".join(lines) + close)
    res = subprocess.run([str(EXE), "follow", "--once", "--jsonl", str(log), "--db", str(db)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    # the scan (live) and, from the whole-data pass at the end, the off-hours activity (22:13 UTC)
    got = {(f["detector"], f["host"], f["key"], f["change"])
           for f in map(json.loads, res.stdout.splitlines())}
    assert got == {("horizontal_scan", "10.0.0.5", "tcp/445", "new"),
                   ("off_hours", "10.0.0.5", "2023-11-14 night", "new")}
    assert "follow run 1: " in res.stderr


def test_a_second_follower_on_the_same_database_is_refused(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    with LiveFollower([log], db):
        time.sleep(0.3)
        res = subprocess.run([str(EXE), "follow", "--once", str(log), "--db", str(db)],
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 5
    assert "another `zeekwatch follow` is writing to this database" in res.stderr


def test_lookback_shorter_than_the_window_is_refused(tmp_path):
    res = subprocess.run([str(EXE), "follow", "--once", "--lookback", "30", str(tmp_path / "x.log"),
                          "--db", str(tmp_path / "f.db")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 4 and "--lookback 30 s is shorter" in res.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_the_batch_and_exits_0(tmp_path, sig):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, quiet_rows(5))
    log.write_text(head + "".join(lines) + close)
    proc = start(log, "--db", db)
    wait_for(lambda: records(db) == 5, timeout=30)
    proc.send_signal(sig)
    proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert query(db, "SELECT status, conn_records FROM runs") == [("ok", 5)]


@pytest.mark.slow
def test_lookback_memory_is_bounded_by_data_time(tmp_path):
    """Rows older than the look-back are dropped with their segment: the engine holds about
    ``lookback`` seconds of data however long the stream is."""
    log, db = tmp_path / "conn.log", tmp_path / "f.db"
    head, lines, close = tsv_parts(tmp_path, [conn(T0 + i, f"10.0.1.{i % 5 + 1}", "10.0.0.9", 443,
                                                   service="ssl", uid=f"Cm{i}") for i in range(1500)])
    log.write_text(head + "".join(lines) + close)
    reports = []
    Follower([str(log)], Config(), str(db), FollowOptions(once=True, lookback=100, max_read=8192),
             on_batch=reports.append).run()
    assert records(db) == 1500 and len(reports) > 10
    # each batch holds ~83 s of data here: at most the look-back, a segment and two batches
    assert max(r.lookback_rows for r in reports) <= 100 + 100 // 8 + 2 * 83


def test_checkpoints_follow_the_file_not_the_watch(tmp_path):
    """Followed as a file first, then through its directory: not read twice."""
    d, db = tmp_path / "current", tmp_path / "f.db"
    d.mkdir()
    head, lines, close = tsv_parts(tmp_path, quiet_rows(9))
    (d / "conn.log").write_text(head + "".join(lines[:6]))
    follow_once([d / "conn.log"], db)
    append(d / "conn.log", "".join(lines[6:]) + close)
    follow_once([d], db)
    assert records(db) == 9


def test_whole_data_detectors_run_by_default_and_the_summary_says_so(tmp_path):
    log = tmp_path / "conn.log"
    head, lines, close = tsv_parts(tmp_path, scan_rows(30))  # 22:13 UTC: off-hours
    log.write_text(head + "".join(lines) + close)
    off = follow_once([log], tmp_path / "plain.db", population_interval=0)
    assert {d for _, d, *_ in findings(tmp_path / "plain.db")} == {"horizontal_scan"}
    assert off.population_runs == 0 and "off_hours" in off.periodic
    res = follow_once([log], tmp_path / "pop.db")  # the default: every 300 s, and at the end
    got = {(d, h) for _, d, h, *_ in findings(tmp_path / "pop.db")}
    assert ("off_hours", "10.0.0.5") in got and ("horizontal_scan", "10.0.0.5") in got
    assert res.population_runs == 1 and res.population_interval == 300
    assert "horizontal_scan" in res.live and "horizontal_scan" not in res.periodic
    cli = subprocess.run([str(EXE), "follow", "--once", str(log), "--db", str(tmp_path / "cli.db")],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    text = " ".join(cli.stderr.split())
    assert "detectors live on every batch: " in text and "horizontal_scan" in text
    assert "over the look-back every 300 s (1 run(s)): " in text and "new_listener" in text
    helptext = subprocess.run([str(EXE), "follow", "--help"], capture_output=True, text=True).stdout
    helptext = " ".join(helptext.split())
    assert "default: 300.0" in helptext and "(off_hours, new_listener," in helptext


def test_cli_default_population_interval_is_the_library_default():
    from zeekwatch.app.follow.runner import POPULATION_INTERVAL
    from zeekwatch.cli.follow import POPULATION_INTERVAL as CLI_DEFAULT

    assert CLI_DEFAULT == POPULATION_INTERVAL == FollowOptions().population_interval


def test_a_named_file_that_is_not_a_log_is_refused(tmp_path):
    p = tmp_path / "conn.log"
    p.write_text("Lorem ipsum dolor sit amet\nconsectetur adipiscing elit\n")
    res = subprocess.run([str(EXE), "follow", "--once", str(p), "--db", str(tmp_path / "f.db")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 3
    assert f"error: {p}: not a Zeek log, Suricata EVE file or capture" in res.stderr
    assert not (tmp_path / "f.db").exists()


def test_zeek_json_lines_are_followed(tmp_path):
    log, db = tmp_path / "conn.log", tmp_path / "f.db"

    def line(r):
        return json.dumps({"_path": "conn", "ts": r["ts"], "uid": r["uid"], "id.orig_h": r["orig_h"],
                           "id.orig_p": r["orig_p"], "id.resp_h": r["resp_h"], "id.resp_p": r["resp_p"],
                           "proto": r["proto"], "conn_state": r["conn_state"], "history": r["history"]}) + "\n"
    lines = [line(r) for r in scan_rows(30)]
    log.write_text("".join(lines[:12]) + lines[12][:20])
    follow_once([log], db)
    assert records(db) == 12
    append(log, lines[12][20:] + "not json\n" + "".join(lines[13:]))
    follow_once([log], db)
    assert records(db) == 30
    assert [(p, n) for p, n, _ in rejects(db)] == [(str(log), 14)]
    assert findings(db, WINDOWED) == findings(analyze_db(tmp_path, [log]), WINDOWED)
