"""Zeek JSON reader: real logs from ../shared/data, and small fixtures written here."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pyarrow as pa
import pytest
from conftest import SHARED, shared_file, shared_files

from zeekwatch import schema
from zeekwatch.errors import ZeekwatchError
from zeekwatch.readers import jsonlines, sniff
from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.zeek import jsonl as zeek_json

UTC = dt.timezone.utc


def read_all(path) -> tuple[dict[str, pa.Table], IngestLog]:
    log = IngestLog()
    parts: dict[str, list[pa.Table]] = {}
    for table, chunk in zeek_json.read(str(path), log):
        assert chunk.schema == schema.TABLES[table]
        parts.setdefault(table, []).append(chunk)
    return {t: pa.concat_tables(c) for t, c in parts.items()}, log


def write_lines(path, records, end="\n") -> str:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + end)
    return str(path)


def conn_record(i: int, **extra) -> dict:
    rec = {"ts": 1600000000.0 + i, "uid": f"C{i:05d}", "id.orig_h": "10.0.0.1", "id.orig_p": 40000 + i,
           "id.resp_h": "192.0.2.7", "id.resp_p": 80, "proto": "tcp", "service": "http",
           "duration": 1.5, "orig_bytes": 10, "resp_bytes": 20, "conn_state": "SF",
           "history": "ShADadFf", "orig_pkts": 3, "resp_pkts": 4}
    rec.update(extra)
    return rec


def _kind(rel: str) -> str | None:
    try:
        return sniff(str(SHARED / rel))
    except ZeekwatchError:
        return None


ZEEK_JSON_FILES = [f for f in shared_files(("",)) if _kind(f) == "zeek_json"]


# --- real data ---------------------------------------------------------------------------

@pytest.mark.parametrize("rel", ZEEK_JSON_FILES or ["(none)"])
def test_every_shared_zeek_json_log_reads(rel):
    path = shared_file(rel)
    tables, log = read_all(path)
    assert tables or log.skipped, "neither rows nor a reason for having none"
    for t in tables.values():
        assert t.num_rows > 0
        assert t.column("source").to_pylist()[0] == path


def test_zed_dns_json_gz_rows():
    tables, log = read_all(shared_file("zed-sample-data/zeek-json/dns.json.gz"))
    dns = tables["dns"]
    assert list(tables) == ["dns"] and dns.num_rows == 53_615
    first = dns.slice(0, 1).to_pylist()[0]
    assert first["ts"] == dt.datetime(2018, 3, 24, 17, 15, 20, 865716, tzinfo=UTC)
    assert first["uid"] == "CqKst53mF3det3eDV9"
    assert (first["orig_h"], first["resp_h"]) == ("10.47.1.100", "10.0.0.100")
    assert (first["query"], first["qtype_name"], first["rcode_name"]) == ("ise.wrccdc.org", "A", "NOERROR")
    assert first["answers"] == ["ise.wrccdc.cpp.edu", "134.71.3.16"]
    assert log.reject_count == 0 and not log.notes


def test_rita_spaced_json_keeps_long_tls_connection():
    tables, log = read_all(shared_file("rita/json_with_all_fields/conn.log"))
    conn = tables["conn"].to_pylist()
    assert len(conn) == 29 and log.reject_count == 0
    longest = max(conn, key=lambda r: r["duration"])
    assert longest["service"] == "ssl" and longest["resp_p"] == 443 and longest["duration"] >= 2340


def test_open_conn_path_is_conn():
    tables, _ = read_all(shared_file("rita/json_with_all_fields/open_conn.log"))
    assert list(tables) == ["conn"] and tables["conn"].num_rows == 59


def test_slips_relative_timestamps_are_kept_with_a_note():
    path = shared_file("slips/test9-mixed-zeek-dir/conn.log")
    tables, log = read_all(path)
    ts = tables["conn"].column("ts").to_pylist()
    assert min(ts) < dt.datetime(1970, 1, 1, 0, 5, tzinfo=UTC)
    assert any("relative" in n and n.startswith(path) for n in log.notes)


def test_slips_smtp_last_line_without_newline_is_read():
    tables, log = read_all(shared_file("slips/test9-mixed-zeek-dir/smtp.log"))
    smtp = tables["smtp"].to_pylist()
    assert len(smtp) == 5 and log.reject_count == 0
    assert smtp[0]["mail_from"] == "aon.913289727@aon.at"
    assert smtp[0]["rcpt_to"] == ["JohnDoe1236677@gmail.com"]
    assert smtp[0]["helo"] == "[0.0.0.0]" and smtp[0]["resp_p"] == 25


def test_rita_truncated_json_rejects_only_the_cut_line():
    tables, log = read_all(shared_file("rita/truncated/conn_json.log"))
    assert tables["conn"].num_rows == 3
    assert [(r.line, r.reason.split(":")[0]) for r in log.rejects] == [
        (4, "truncated last line (no newline at end of file)")]


# --- mapping -----------------------------------------------------------------------------

def test_conn_fields_sensor_and_source(tmp_path):
    path = write_lines(tmp_path / "c.json", [conn_record(1, _node_name="worker-1", community_id="1:abc",
                                                              local_orig=True, local_resp=False)])
    tables, _ = read_all(path)
    row = tables["conn"].to_pylist()[0]
    assert row == {
        "ts": dt.datetime.fromtimestamp(1600000001, UTC), "uid": "C00001", "orig_h": "10.0.0.1",
        "orig_p": 40001, "resp_h": "192.0.2.7", "resp_p": 80, "proto": "tcp", "service": "http",
        "duration": 1.5, "orig_bytes": 10, "resp_bytes": 20, "conn_state": "SF",
        "history": "ShADadFf", "orig_pkts": 3, "resp_pkts": 4, "community_id": "1:abc",
        "sensor": "worker-1", "source": path, "local_orig": True, "local_resp": False,
    }


def test_epoch_and_iso_timestamps_agree(tmp_path):
    epoch = write_lines(tmp_path / "a.json", [conn_record(0, ts=1521911720.865716)])
    iso = write_lines(tmp_path / "b.json", [conn_record(0, ts="2018-03-24T17:15:20.865716Z")])
    a, b = read_all(epoch)[0]["conn"], read_all(iso)[0]["conn"]
    assert a.column("ts").to_pylist() == b.column("ts").to_pylist() == [
        dt.datetime(2018, 3, 24, 17, 15, 20, 865716, tzinfo=UTC)]


def test_path_values_map_to_tables(tmp_path):
    base = {"ts": 1600000000.5, "uid": "Cx", "id.orig_h": "10.0.0.1", "id.orig_p": 5555,
            "id.resp_h": "192.0.2.9", "id.resp_p": 443}
    path = write_lines(tmp_path / "mixed.json", [
        {**base, "_path": "ssl", "server_name": "example.org", "version": "TLSv12"},
        {**base, "_path": "http", "host": "h.example", "uri": "/x", "method": "GET",
         "user_agent": "curl/8", "status_code": 404},
        {**base, "_path": "open_conn", "proto": "tcp", "conn_state": "S1"},
        {**base, "_path": "x509", "certificate.version": 3},
    ])
    tables, log = read_all(path)
    assert tables["tls"].column("server_name").to_pylist() == ["example.org"]
    http = tables["http"].to_pylist()[0]
    assert (http["host"], http["uri"], http["method"], http["user_agent"], http["status"]) == (
        "h.example", "/x", "GET", "curl/8", 404)
    assert tables["conn"].column("conn_state").to_pylist() == ["S1"]
    assert log.notes == [f"{path}: 1 records not used: x509 (1)"]


@pytest.mark.parametrize("record, table", [
    (conn_record(1), "conn"),
    ({"ts": 1.0, "uid": "C1", "proto": "udp", "query": "a.example", "qtype_name": "A"}, "dns"),
    ({"ts": 1.0, "uid": "C1", "server_name": "a.example", "cipher": "TLS_AES_128"}, "tls"),
    ({"ts": 1.0, "uid": "C1", "method": "GET", "uri": "/", "host": "a"}, "http"),
    ({"ts": 1.0, "uid": "C1", "helo": "x", "mailfrom": "a@b", "rcptto": ["c@d"]}, "smtp"),
    ({"ts": 1.0, "uid": "C1", "proto": "tcp", "duration": 2.0, "history": "Sh"}, "conn"),
])
def test_type_from_shape_without_path(tmp_path, record, table):
    tables, log = read_all(write_lines(tmp_path / "x.log", [record]))
    assert list(tables) == [table] and not log.skipped


def test_records_with_and_without_path_in_one_file(tmp_path):
    dns = {"ts": 1600000002.0, "uid": "C2", "proto": "udp", "query": "a.example", "qtype_name": "A"}
    weird = {"ts": 1600000003.0, "uid": "C3", "name": "bad_checksum"}
    path = write_lines(tmp_path / "mixed.json", [
        conn_record(1, _path="conn"), dns, {**weird, "_path": "weird"}, weird, conn_record(5)])
    tables, log = read_all(path)
    assert sorted(tables["conn"].column("uid").to_pylist()) == ["C00001", "C00005"]
    assert tables["dns"].column("query").to_pylist() == ["a.example"]
    assert log.notes == [f"{path}: 2 records not used: unknown shape (1), weird (1)"]


def test_unsupported_log_is_skipped_with_reason(tmp_path):
    notice = {"ts": 1.0, "uid": "C1", "proto": "tcp", "note": "Scan::Port_Scan", "msg": "x"}
    path = write_lines(tmp_path / "notice.json", [notice])
    tables, log = read_all(path)
    assert tables == {}
    assert log.skipped == [(path, "Zeek JSON log of a type zeekwatch does not use: unknown shape (1)")]
    path2 = write_lines(tmp_path / "conn.json", [{"_path": "files", "ts": 1.0, "fuid": "F1"}])
    tables, log = read_all(path2)
    assert tables == {} and log.skipped == [(path2, "Zeek JSON log of a type zeekwatch does not use: files (1)")]


def test_gzip_is_read(tmp_path):
    path = tmp_path / "conn.log.gz"
    path.write_bytes(gzip.compress(b"".join(json.dumps(conn_record(i)).encode() + b"\n" for i in range(5))))
    tables, _ = read_all(path)
    assert tables["conn"].column("uid").to_pylist() == [f"C{i:05d}" for i in range(5)]


def test_empty_file_gives_nothing(tmp_path):
    path = tmp_path / "e.json"
    path.write_text("")
    assert read_all(path)[0] == {}


# --- bad input ---------------------------------------------------------------------------

def test_bad_lines_are_rejected_and_neighbours_kept(tmp_path):
    records = [conn_record(0), '{"ts": 1600000001, "uid": "Cbad', "", conn_record(2),
               "[1, 2]", "   ", conn_record(4), '{"ts": 1600000005, "uid": "Ccut']
    path = write_lines(tmp_path / "bad.json", records, end="")
    tables, log = read_all(path)
    assert tables["conn"].column("uid").to_pylist() == ["C00000", "C00002", "C00004"]
    assert [(r.line, r.reason) for r in log.rejects] == [
        (2, "malformed JSON: unexpected end of data: line 1 column 32 (char 31)"),
        (5, "not a JSON object (a list)"),
        (8, "truncated last line (no newline at end of file): "
            "unexpected end of data: line 1 column 32 (char 31)"),
    ]
    assert log.rejects[0].raw == '{"ts": 1600000001, "uid": "Cbad'


def test_bad_first_line_does_not_refuse_the_file(tmp_path):
    path = write_lines(tmp_path / "conn.json", ["{not json", conn_record(1)])
    assert sniff(path) == "zeek_json"
    tables, log = read_all(path)
    assert tables["conn"].num_rows == 1 and [r.line for r in log.rejects] == [1]


def test_value_of_wrong_type_becomes_null(tmp_path):
    path = write_lines(tmp_path / "conn.json", [conn_record(0), conn_record(1, **{"id.orig_p": "abc"}),
                                                "{broken"])
    tables, log = read_all(path)
    assert tables["conn"].column("orig_p").to_pylist() == [40000, None]
    assert [r.line for r in log.rejects] == [3]


def test_no_row_lost_or_doubled_when_fast_path_stops(tmp_path, monkeypatch):
    """DuckDB delivers some batches, then fails; the robust path resumes right after them."""
    real = zeek_json._duckdb_batches

    def stops_after_1000(path, ts_type):
        for raw in real(path, ts_type):
            yield raw.slice(0, 1000)
            raise OSError("Invalid Input Error: Malformed JSON (simulated)")

    monkeypatch.setattr(zeek_json, "_duckdb_batches", stops_after_1000)
    monkeypatch.setattr(jsonlines, "BLOCK_SIZE", 4096)
    bad_at = {1500, 1501, 2222, 2999}
    lines = ["{oops" if i in bad_at else conn_record(i) for i in range(3000)]
    lines[300:300] = ["", "  "]  # blank lines before the stop shift line numbers, not records
    tables, log = read_all(write_lines(tmp_path / "big.json", lines))
    uids = tables["conn"].column("uid").to_pylist()
    assert uids == [f"C{i:05d}" for i in range(3000) if i not in bad_at]
    assert [r.line for r in log.rejects] == sorted(i + 3 for i in bad_at)


def test_bad_lines_across_many_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonlines, "BLOCK_SIZE", 4096)
    bad_at = {0, 777, 1999}
    lines = ["{oops" if i in bad_at else conn_record(i) for i in range(2000)]
    tables, log = read_all(write_lines(tmp_path / "big.json", lines))
    assert tables["conn"].num_rows == 1997
    assert [r.line for r in log.rejects] == [1, 778, 2000]


def test_file_name_with_glob_characters(tmp_path):
    (tmp_path / "conn1.json").write_text(json.dumps(conn_record(9)) + "\n")
    path = write_lines(tmp_path / "conn?.json", [conn_record(1), "{bad"])
    tables, log = read_all(path)
    assert tables["conn"].column("uid").to_pylist() == ["C00001"] and [r.line for r in log.rejects] == [2]




def test_duckdb_on_two_threads_keeps_file_order_and_line_numbers(tmp_path, monkeypatch):
    """A file over one of DuckDB's 16 MB buffers but under one batch of rows, read as shipped:
    DuckDB's parallel scan splits it (two batches) and every row arrives once, in file order.
    With a bad line in the middle, DuckDB stops (maybe before delivering the rows ahead of it:
    the other thread's range failed), the robust path reads on from what was delivered, and
    the bad line is rejected with its physical line number (blank lines early shift numbers,
    not records)."""
    n = 70_000
    lines = [conn_record(i) for i in range(n)]
    lines[10:10] = ["", ""]
    batches = []
    real = zeek_json._duckdb_batches
    monkeypatch.setattr(zeek_json, "_duckdb_batches",
                        lambda *a: (batches.append(t.num_rows) or t for t in real(*a)))
    path = write_lines(tmp_path / "conn.json", lines)
    assert (tmp_path / "conn.json").stat().st_size > 16 << 20 and n < zeek_json.BATCH_ROWS
    tables, log = read_all(path)
    assert len(batches) >= 2 and sum(batches) == n and not log.rejects
    assert tables["conn"].column("uid").to_pylist() == [f"C{i:05d}" for i in range(n)]
    bad = n // 2
    lines[bad + 2] = "{oops"
    tables, log = read_all(write_lines(tmp_path / "conn.json", lines))
    assert tables["conn"].column("uid").to_pylist() == [f"C{i:05d}" for i in range(n) if i != bad]
    assert [r.line for r in log.rejects] == [bad + 3]
