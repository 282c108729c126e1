"""``zeekwatch enrich`` on every shared Zeek TSV / Zeek JSON / EVE variant: the records come back
byte for byte with the zw fields after them, the zw fields of cited records name the findings
that cite them, header blocks stay valid (read back by zeekwatch, and by zat for TSV)."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
from pathlib import Path

import orjson
import pytest
from conftest import SHARED, shared_file

from zeekwatch.app.enrich.annotate import FIELDS
from zeekwatch.detectors import REGISTRY

EXE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "zeekwatch"
ZW = ["zw." + n for n, _ in FIELDS]
ZW_TYPES = [t for _, t in FIELDS]

TSV = ["zat/conn_date_issue.log", "zat/dns.log", "zat/smtp.log", "zat/notice.log",
       "zeek/baseline/irc.basic.conn.log", "rita/proxy/conn.log", "rita/proxy/dns.log",
       "rita/open_conns/open/open_conn.log", "rita/open_conns/open/conn.log",
       "rita/open_conns/open/dns.log", "rita/open_conns/closed/conn.log",
       "rita/truncated/conn.log", "rita/truncated/conn_top.log",
       "slips/port-scans/horizontal/conn.log", "zed-sample-data/zeek-default/smtp.log.gz",
       "zed-sample-data/zeek-default/dns.log.gz",
       "rita/missing_host/2024-04-21/conn.13:00:00-14:00:00.log.gz",
       "perf/rita_missing_host_conn_72h.multi.log.gz"]
JSON = ["zat/json/conn.log", "zat/json/dns.log", "rita/json_with_all_fields/conn.log",
        "rita/json_with_all_fields/dns.log", "rita/json_with_all_fields/open_conn.log",
        "rita/truncated/conn_json.log", "slips/port-scans/vertical/conn.log",
        "slips/test9-mixed-zeek-dir/conn.log", "slips/test9-mixed-zeek-dir/dns.log",
        "slips/test9-mixed-zeek-dir/smtp.log", "zed-sample-data/zeek-json/smtp.json.gz",
        "zed-sample-data/zeek-json/dns.json.gz"]
EVE = ["frank-suricata/honeypot-2018/alerts-only.eve.ndjson",
       "frank-suricata/wrccdc-2018/alerts-only.eve.ndjson",
       "frank-suricata/honeypot-2018/alerts-only.json",
       "frank-suricata/wrccdc-2018/alerts-only.json"]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _enrich(src: str, tmp_path: Path) -> tuple[Path, dict, str]:
    out, db = tmp_path / "out", str(tmp_path / "f.db")
    res = subprocess.run([str(EXE), "enrich", src, "-o", str(out), "--db", db, "--json"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    return out / Path(src).name, summary["files"][0], db


def _cites(db: str) -> dict[str, set[str]]:
    con = sqlite3.connect(db)
    out: dict[str, set[str]] = {}
    for value, fid in con.execute("SELECT value, finding_id FROM evidence "
                                  "WHERE kind IN ('uid', 'community_id')"):
        out.setdefault(value, set()).add(fid)
    con.close()
    return out


def _set(text: str) -> set[str]:
    return set() if text in ("-", "(empty)") else set(text.split(","))


BIG = {"perf/rita_missing_host_conn_72h.multi.log.gz", "zed-sample-data/zeek-default/dns.log.gz",
       "zed-sample-data/zeek-json/dns.json.gz"}


def _existing(paths):
    if SHARED.is_dir():
        paths = [p for p in paths if (SHARED / p).exists()] or paths
    return [pytest.param(p, marks=pytest.mark.slow) if p in BIG else p for p in paths]


@pytest.mark.shared
@pytest.mark.parametrize("rel", _existing(TSV))
def test_tsv_round_trip(rel, tmp_path):
    src = shared_file(rel)
    out, summary, db = _enrich(src, tmp_path)
    assert (_read(str(out))[:2] != b"\x1f\x8b")
    assert (open(out, "rb").read(2) == b"\x1f\x8b") == src.endswith(".gz")  # gzip in, gzip out
    before, after = _read(src).split(b"\n"), _read(str(out)).split(b"\n")
    synthesized, fields = 0, None
    if not before[0].startswith(b"#") and after[0].startswith(b"#separator"):  # headerless input
        synthesized = next(i for i, x in enumerate(after) if not x.startswith(b"#"))
        fields = after[synthesized - 2].decode().split("\t")[1:]
        assert fields[-len(ZW):] == ZW
        fields = fields[:-len(ZW)]
    after = after[synthesized:]
    assert len(before) == len(after)
    cites = _cites(db)
    records = rejects = cited = 0
    for a, b in zip(before, after):
        if a.startswith(b"#fields"):
            fields = a.decode().split("\t")[1:]
            assert b == a + ("\t" + "\t".join(ZW)).encode()
        elif a.startswith(b"#types"):
            assert b == a + ("\t" + "\t".join(ZW_TYPES)).encode()
        elif a.startswith(b"#") or fields is None:
            assert b == a
        elif b == a:  # a reject (or an empty last piece) comes back untouched
            rejects += bool(a.strip())
        else:
            assert b.startswith(a + b"\t"), (a, b)
            records += 1
            names = fields or []
            row = dict(zip(names + ZW, b.decode("utf-8", "replace").split("\t")))
            assert len(row) == len(names) + len(ZW) if names else True
            expect = set()
            for key in ("uid", "community_id"):
                expect |= cites.get(row.get(key, "-"), set())
            assert _set(row["zw.finding_ids"]) == expect
            if expect:
                cited += 1
                assert row["zw.urgency"] != "-" and row["zw.tier"] in ("1", "2", "3")
                dets = _set(row["zw.detectors"])
                assert dets and _set(row["zw.techniques"]) == {
                    t for d in dets for t in REGISTRY[d].attack}
            if "id.orig_h" in row:
                assert row["zw.orig_side"] in ("internal", "external")
    assert (summary["records"], summary["rejects"], summary["cited"]) == (records, rejects, cited)


@pytest.mark.shared
@pytest.mark.parametrize("rel", _existing(JSON + EVE))
def test_json_round_trip(rel, tmp_path):
    src = shared_file(rel)
    out, summary, db = _enrich(src, tmp_path)
    eve = rel.startswith("frank")
    before, after = _read(src), _read(str(out))
    cites = _cites(db)
    if before.lstrip().startswith(b"["):  # an EVE JSON array: compare the parsed records
        old, new = json.loads(before), json.loads(after)
        pairs = list(zip(old, new))
        assert len(old) == len(new)
        for a, b in pairs:
            assert {k: v for k, v in b.items() if k != "zw"} == a
        # bytes between and inside the records are kept: removing the zw members gives the input
        stripped = after
        for b in new:
            member = b',"zw":' + orjson.dumps(b["zw"])
            stripped = stripped.replace(member, b"", 1)
        assert stripped == before
        objs = [b for _, b in pairs]
    else:
        lines_a, lines_b = before.split(b"\n"), after.split(b"\n")
        assert len(lines_a) == len(lines_b)
        objs = []
        for a, b in zip(lines_a, lines_b):
            if a == b:
                continue
            obj = orjson.loads(b)
            added = {k: v for k, v in obj.items() if k == "zw" or k.startswith("zw.")}
            member = (b',"zw":' + orjson.dumps(added["zw"]) if eve else
                      b"," + orjson.dumps(added)[1:-1])
            assert b.replace(member, b"", 1) == a  # the record's own bytes, untouched
            objs.append(obj)
    cited = 0
    for obj in objs:
        zw = obj["zw"] if eve else {k[3:]: v for k, v in obj.items() if k.startswith("zw.")}
        keys = ([str(obj.get("flow_id")), obj.get("community_id")] if eve
                else [obj.get("uid"), obj.get("community_id")])
        expect = set().union(*(cites.get(k, set()) for k in keys if k))
        assert set(zw.get("finding_ids", [])) == expect
        cited += bool(expect)
        if expect:
            assert 1 <= zw["urgency"] <= 10 and zw["tier"] in (1, 2, 3)
    assert summary["cited"] == cited
    if rel.startswith("frank"):  # every alert is an ids_alert finding's evidence
        assert cited == len(objs) > 0


@pytest.mark.shared
@pytest.mark.slow
def test_enriched_logs_read_back_by_zeekwatch_and_zat(tmp_path):
    """The enriched TSV (several header blocks, gzip) and JSON are logs zeekwatch reads to the
    same record counts, and zat reads the TSV with the zw columns."""
    srcs = [shared_file("perf/rita_missing_host_conn_72h.multi.log.gz"),
            shared_file("zat/dns.log"), shared_file("zat/json/conn.log")]
    out = tmp_path / "out"
    db1, db2 = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    for i, src in enumerate(srcs):
        r = subprocess.run([str(EXE), "enrich", src, "-o", str(out / str(i)), "--db", db1,
                            "--json"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        if i == 0:  # the Internet-facing sensor's scanners and beacon are cited
            assert json.loads(r.stdout)["files"][0]["cited"] > 100
    r = subprocess.run([str(EXE), "analyze", str(out), "--db", db2, "--json", "-q"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    runs1 = sqlite3.connect(db1).execute("SELECT sum(conn_records), sum(dns_records), "
                                         "sum(rejects) FROM runs").fetchone()
    runs2 = sqlite3.connect(db2).execute("SELECT conn_records, dns_records, rejects "
                                         "FROM runs").fetchone()
    assert runs1 == runs2
    zat = pytest.importorskip("zat.log_to_dataframe")
    plain = out / "1" / "dns.log"
    df = zat.LogToDataFrame().create_dataframe(str(plain))
    original = zat.LogToDataFrame().create_dataframe(shared_file("zat/dns.log"))
    assert len(df) == len(original)
    assert [c for c in df.columns if c.startswith("zw.")] == ZW
    assert set(df["zw.orig_side"]) <= {"internal", "external"}


def test_refuses_to_overwrite_its_input(tmp_path):
    log = tmp_path / "conn.log"
    log.write_text("#separator \\x09\n#fields\tts\tuid\n1.0\tCabc\n")
    r = subprocess.run([str(EXE), "enrich", str(log), "-o", str(tmp_path), "--no-analyze",
                        "--db", str(tmp_path / "f.db")], capture_output=True, text=True)
    assert r.returncode == 3 and "is an input" in r.stderr
    assert log.read_text() == "#separator \\x09\n#fields\tts\tuid\n1.0\tCabc\n"


def test_damaged_lines_pass_through_and_are_counted(tmp_path):
    """A written log: two header blocks with different columns, a short line, an over-wide
    line, a value with terminal control codes, and a JSON log with a broken line."""
    head = ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
            "#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
            "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\n")
    head2 = head.replace("\tproto\n", "\tproto\tservice\n").replace("\tenum\n", "\tenum\tstring\n")
    good = "1.0\tCa1\t10.0.0.1\t1\t8.8.8.8\t53\tudp\n"
    lines = [head, good, "2.0\tCa2\t10.0.0.1\n", good.replace("udp", "udp\textra\tmore"),
             "3.0\tCa\x1b[31m3\t10.0.0.2\t2\t10.0.0.3\t80\ttcp\n", head2,
             "4.0\tCa4\t8.8.4.4\t5\t10.0.0.9\t22\ttcp\tssh\n", "#close\t2024\n"]
    tsv = tmp_path / "in" / "conn.log"
    tsv.parent.mkdir()
    tsv.write_text("".join(lines))
    js = tmp_path / "in" / "j.log"
    js.write_text('{"ts":1.0,"uid":"Cb1","id.orig_h":"10.0.0.1","id.resp_h":"1.1.1.1"}\n'
                  '{"ts":2.0,"uid":"Cb2","id.orig_h":\n[1,2]\n\n')
    out, db = tmp_path / "out", str(tmp_path / "f.db")
    r = subprocess.run([str(EXE), "enrich", str(tsv.parent), "-o", str(out), "--db", db,
                        "--no-analyze"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 5 and "no such database" in r.stderr  # --no-analyze needs findings
    r = subprocess.run([str(EXE), "enrich", str(tsv.parent), "-o", str(out), "--db", db,
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    files = {Path(f["input"]).name: f for f in json.loads(r.stdout)["files"]}
    assert (files["conn.log"]["records"], files["conn.log"]["rejects"]) == (3, 2)
    assert (files["j.log"]["records"], files["j.log"]["rejects"]) == (1, 2)
    got = (out / "conn.log").read_text().splitlines()
    assert got[8] == lines[2].rstrip("\n") and got[9] == lines[3].rstrip("\n")  # as read
    assert got[10].startswith(lines[4].rstrip("\n") + "\tinternal\tinternal\t")  # data, not markup
    assert got[16].endswith("\tservice\t" + "\t".join(ZW)) and got[-1] == "#close\t2024"
    assert got[18].startswith("4.0\tCa4\t8.8.4.4\t5\t10.0.0.9\t22\ttcp\tssh\texternal\tinternal\t-\t")
    j = (out / "j.log").read_text().split("\n")
    assert j[1:] == ['{"ts":2.0,"uid":"Cb2","id.orig_h":', "[1,2]", "", ""]
    assert json.loads(j[0])["zw.orig_side"] == "internal"
    # enriching the enriched output again copies it as read (no second set of zw fields)
    again = tmp_path / "again"
    r = subprocess.run([str(EXE), "enrich", str(out), "-o", str(again), "--db", db,
                        "--no-analyze", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (again / "conn.log").read_bytes() == (out / "conn.log").read_bytes()
    assert (again / "j.log").read_bytes() == (out / "j.log").read_bytes()


def test_refuses_a_file_that_is_not_a_log(tmp_path):
    src = shared_file("rita/text_file/conn.log")
    r = subprocess.run([str(EXE), "enrich", src, "-o", str(tmp_path / "o"), "--db",
                        str(tmp_path / "f.db")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 3 and "not a Zeek log" in r.stderr
    assert not (tmp_path / "o").exists()


def test_a_corrupt_deflate_block_is_an_input_error_and_leaves_no_part_file(tmp_path):
    """A gzip log whose second member holds an invalid deflate block (reserved block type):
    exit 3 naming the file, no output and no ``.part`` left behind (it was exit 1, "internal
    error", with python-isal's IsalError uncaught)."""
    header = "#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.resp_h\n"
    rows = "".join(f"{1700000000 + i}.5\tC{i:017x}\t10.0.0.{i % 250}\t192.0.2.{i % 250}\n"
                   for i in range(2000))
    bad = bytearray(gzip.compress(rows.encode()))
    bad[10] |= 0b110  # the first deflate block's type bits: 11, reserved
    src = tmp_path / "conn.log.gz"
    src.write_bytes(gzip.compress((header + rows).encode()) + bytes(bad))
    out = tmp_path / "o"
    r = subprocess.run([str(EXE), "enrich", str(src), "-o", str(out), "--db", str(tmp_path / "f.db")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stderr
    assert str(src) in r.stderr and "cannot enrich" in r.stderr
    assert not out.exists() or list(out.iterdir()) == []
