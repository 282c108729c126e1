"""follow's hand-off outputs: RFC 5424 syslog to a real local receiver (every new finding arrives
once, parsable), --jsonl --format ecs|ocsf with the fields of `findings export`, and
--enrich-dir appending the followed log's lines with zw fields."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import shared_file
from syslog_rfc5424_parser import SyslogMessage

from zeekwatch.app.enrich.annotate import FIELDS
from zeekwatch.export import syslog

EXE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "zeekwatch"


class Receiver:
    """A syslog receiver on a real socket: UDP datagrams, or a unix datagram socket."""

    def __init__(self, kind: str, path: str | None = None):
        if kind == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.url = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(path)
            self.url = f"unix://{path}"
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.settimeout(0.2)
        self.messages: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(65535))
            except socket.timeout:
                continue

    def close(self) -> list[dict]:
        self._stop.set()
        self.thread.join()
        self.sock.close()
        return [SyslogMessage.parse(m.decode("utf-8")).as_dict() for m in self.messages]


def follow(*args, db):
    r = subprocess.run([str(EXE), "follow", "--once", "--db", db, *args], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout


def finding_ids(db: str) -> set[str]:
    return {r[0] for r in sqlite3.connect(db).execute("SELECT id FROM findings")}


@pytest.mark.shared
@pytest.mark.slow
def test_syslog_every_new_finding_arrives_once(tmp_path):
    log = tmp_path / "conn.log"
    log.write_bytes(Path(shared_file("slips/port-scans/horizontal/conn.log")).read_bytes())
    db = str(tmp_path / "f.db")
    rx = Receiver("udp")
    out = follow(str(log), "--syslog", rx.url, "--jsonl", "--format", "ecs", db=db)
    follow(str(log), "--syslog", rx.url, db=db)  # a restart: nothing new, nothing sent again
    msgs = rx.close()
    ids = finding_ids(db)
    assert ids and len(msgs) == len(ids)
    assert sorted(m["sd"]["zeekwatch@32473"]["id"] for m in msgs) == sorted(ids)
    lines = [json.loads(x) for x in out.splitlines()]
    for m in msgs:
        assert (m["appname"], m["msgid"], m["facility"]) == ("zeekwatch", "finding", "local0")
        sd = m["sd"]["zeekwatch@32473"]
        doc = json.loads(m["msg"].lstrip("\ufeff"))  # the ECS document, as on stdout
        assert doc["event"]["id"] == sd["id"] and doc["zeekwatch"]["change"] == sd["change"] == "new"
        assert doc in lines
        u = doc["event"]["severity"]  # the urgency
        assert m["severity"] == ("crit" if u >= 8 else "err" if u >= 6 else
                                 "warning" if u >= 4 else "notice")
        assert doc["threat"]["technique"]["id"]
        assert doc["zeekwatch"]["evidence"]["uids"]


def test_syslog_over_a_unix_socket_and_tcp(tmp_path):
    path = str(tmp_path / "log.sock")
    rx = Receiver("unix", path)
    rec = {"id": "F1", "detector": "c2_port", "host": "10.0.0.1", "urgency": 9, "tier": 3,
           "status": "new"}
    body = json.dumps({"summary": 'tab\there ] "quoted" \\ \x1b[31m'})
    sender = syslog.Sender(rx.url)
    sender.send(syslog.message(dict(rec, detector='evil"] x\n'), body, "new"))
    sender.close()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    sender = syslog.Sender(f"tcp://127.0.0.1:{tcp.getsockname()[1]}")
    conn, _ = tcp.accept()
    sender.send(syslog.message(rec, body))
    sender.close()
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    conn.close()
    tcp.close()
    length, _, framed = data.partition(b" ")  # RFC 6587 octet counting
    assert int(length) == len(framed)
    for m in rx.close() + [SyslogMessage.parse(framed.decode()).as_dict()]:
        assert m["severity"] == "crit"
        assert json.loads(m["msg"].lstrip("\ufeff")) == json.loads(body)
    with pytest.raises(Exception):
        syslog.Sender("http://127.0.0.1:514")


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "ocsf"])
def test_follow_jsonl_carries_the_export_fields(tmp_path, fmt):
    log = tmp_path / "conn.log"
    log.write_bytes(Path(shared_file("slips/port-scans/horizontal/conn.log")).read_bytes())
    db = str(tmp_path / "f.db")
    # live detectors only: the whole-data pass at the end would rescore what was already printed
    lines = [json.loads(x) for x in follow(str(log), "--jsonl", "--format", fmt,
                                            "--population-interval", "0", db=db).splitlines()]
    r = subprocess.run([str(EXE), "findings", "export", "--format", fmt, "--db", db],
                       capture_output=True, text=True)
    exported = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == len(exported) > 0
    for line in lines:
        if fmt == "jsonl":
            assert line.pop("change") == "new"
        else:
            assert line["activity_id"] == 1
        assert line in exported


@pytest.mark.shared
@pytest.mark.slow
def test_follow_enrich_dir(tmp_path):
    src = Path(shared_file("slips/port-scans/horizontal/conn.log")).read_bytes()
    log = tmp_path / "in" / "conn.log"
    log.parent.mkdir()
    log.write_bytes(src)
    db, out = str(tmp_path / "f.db"), tmp_path / "enriched"
    follow(str(log), "--enrich-dir", str(out), db=db)
    enriched = (out / "conn.log").read_bytes().split(b"\n")
    original = src.split(b"\n")
    assert len(enriched) == len(original)
    cited = 0
    for a, b in zip(original, enriched):
        if a.startswith(b"#fields"):
            assert b == a + b"\t" + "\t".join("zw." + n for n, _ in FIELDS).encode()
        elif a.startswith(b"#") or not a:
            assert b == a or a.startswith(b"#types")
        else:
            assert b.startswith(a + b"\t")
            cited += b.split(b"\t")[-6] != b"-"
    assert cited > 0
    with open(log, "ab") as f:  # new lines appended to the input are appended to the output
        f.write(original[-2] + b"\n")  # a record line
    follow(str(log), "--enrich-dir", str(out), db=db)
    assert len((out / "conn.log").read_bytes().split(b"\n")) == len(original) + 1
    assert os.path.getsize(out / "conn.log") > len(src)
