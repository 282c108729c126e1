"""The Zeek TSV reader: real logs from ../shared/data, zat as the reference parser, and small
logs written here to pin how bad input is handled (line numbers, reasons, what is kept)."""

from __future__ import annotations

import datetime as dt
import gzip
import math
import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import SHARED, shared_file, shared_files
from helpers import CONN_FIELDS as CONN_LAYOUT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeekwatch import schema
from zeekwatch.errors import NotALogError
from zeekwatch.readers import plan, read_inputs, sniff
from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.zeek import tsv as zeek_tsv

# ---------------------------------------------------------------- helpers

CONN_FIELDS = [f for f, _ in CONN_LAYOUT]
CONN_TYPES = [t for _, t in CONN_LAYOUT]
DNS_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto trans_id query qtype_name "
              "rcode_name answers TTLs").split()
DNS_TYPES = ("time string addr port addr port enum count string string string vector[string] "
             "vector[interval]").split()
HEADER_LINES = 8


def header(path="conn", fields=CONN_FIELDS, types=CONN_TYPES, sep_line="#separator \\x09",
           set_sep=","):
    return (f"{sep_line}\n#set_separator\t{set_sep}\n#empty_field\t(empty)\n#unset_field\t-\n"
            f"#path\t{path}\n#open\t2024-01-01-00-00-00\n#fields\t" + "\t".join(fields) +
            "\n#types\t" + "\t".join(types) + "\n")


def conn_line(i=0, **over) -> str:
    values = {
        "ts": f"{1700000000 + i}.123456", "uid": f"Cabcdef{i:06d}", "id.orig_h": "10.0.0.1",
        "id.orig_p": str(40000 + i % 1000), "id.resp_h": "192.0.2.7", "id.resp_p": "80",
        "proto": "tcp", "service": "http", "duration": "0.5", "orig_bytes": "10",
        "resp_bytes": "20", "conn_state": "SF", "local_orig": "T", "local_resp": "F",
        "missed_bytes": "0", "history": "ShADadFf", "orig_pkts": "3", "orig_ip_bytes": "100",
        "resp_pkts": "4", "resp_ip_bytes": "200", "tunnel_parents": "(empty)",
    }
    values.update({k.replace("__", "."): v for k, v in over.items()})
    return "\t".join(values[f] for f in CONN_FIELDS) + "\n"


def dns_line(i=0, answers="192.0.2.1,192.0.2.2", query="example.com") -> str:
    return "\t".join([f"{1700000000 + i}.5", f"Cdns{i:06d}", "10.0.0.1", "5353", "10.0.0.53",
                      "53", "udp", "1", query, "A", "NOERROR", answers, "60.0"]) + "\n"


def write(tmp_path, text, name="x.log", gz=False) -> str:
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


def read_all(path, **kw) -> tuple[dict[str, pa.Table], IngestLog]:
    log = IngestLog()
    parts: dict[str, list[pa.Table]] = {}
    for table, chunk in zeek_tsv.read(path, log, **kw):
        assert chunk.schema == schema.TABLES[table]
        parts.setdefault(table, []).append(chunk)
    return {t: pa.concat_tables(c) for t, c in parts.items()}, log


def rejects(log):
    return [(r.line, r.reason) for r in log.rejects]


def _zeek_tsv_files() -> list[str]:
    out = []
    for rel in shared_files((".log", ".log.gz")):
        try:
            if sniff(str(SHARED / rel)) == "zeek_tsv":
                out.append(rel)
        except Exception:  # not a log at all: other tests cover refusals
            continue
    return out


# ---------------------------------------------------------------- real data

@pytest.mark.shared
@pytest.mark.parametrize("rel", _zeek_tsv_files() or ["zat/dns.log"])  # skips when data is absent
def test_every_shared_zeek_tsv_log_reads(rel):
    tables, log = read_all(shared_file(rel))
    assert tables or log.skipped, f"{rel}: no rows and not skipped"
    for table in tables.values():
        assert table.num_rows > 0
        assert table.column("source").unique().to_pylist() == [shared_file(rel)]


@pytest.mark.shared
@pytest.mark.parametrize("rel, table, count", [
    ("rita/proxy/conn.log", "conn", 463),
    ("perf/rita_missing_host_conn_72h.multi.log.gz", "conn", 105_918),
    ("zed-sample-data/zeek-default/dns.log.gz", "dns", 53_615),
    ("rita/open_conns/open/open_conn.log", "conn", 59),
])
def test_record_counts(rel, table, count):
    tables, log = read_all(shared_file(rel))
    assert list(tables) == [table]
    assert tables[table].num_rows == count
    assert log.reject_count == 0


@pytest.mark.shared
def test_multi_member_gzip_keeps_node_name_as_sensor():
    tables, _ = read_all(shared_file("perf/rita_missing_host_conn_72h.multi.log.gz"))
    conn = tables["conn"]
    assert conn.column("sensor").unique().to_pylist() == ["worker-eth0-1"]
    assert conn.column("ts").null_count == 0
    assert conn.filter(pc.equal(conn["conn_state"], "REJ")).num_rows == 55_342


@pytest.mark.shared
def test_archive_directory_equals_concatenated_logs():
    dns_total = read_all(shared_file("perf/rita_missing_host_dns_72h.multi.log.gz"))[0]["dns"].num_rows
    log = IngestLog()
    todo = plan([shared_file("rita/missing_host")], log)
    assert {kind for _, kind in todo} == {"zeek_tsv"}
    for _ in read_inputs(todo, log):
        pass
    assert log.records["conn"] == 105_918
    assert log.records["dns"] == dns_total == 5_432
    assert log.reject_count == 0


@pytest.mark.shared
def test_btest_baseline_masked_timestamps_and_ip_proto():
    path = shared_file("zeek/baseline/irc.basic.conn.log")
    tables, log = read_all(path)
    conn = tables["conn"]
    assert conn.column("ts").null_count == conn.num_rows > 0
    assert 6667 in conn.column("resp_p").to_pylist()
    assert f"{path}: {conn.num_rows} masked timestamps (ts NULL)" in log.notes
    assert log.reject_count == 0


@pytest.mark.shared
def test_real_truncated_logs():
    for rel in ("rita/truncated/conn.log", "rita/truncated/conn_top.log"):
        tables, log = read_all(shared_file(rel))
        assert tables["conn"].num_rows == 58
        [(line, reason)] = rejects(log)
        assert reason == "truncated record at end of data (no newline): 9 of 21 fields"
        assert line == (67 if rel.endswith("conn.log") else 59)
    assert any("inferred the Bro 2.5-Zeek 7 conn layout" in n for n in log.notes)


@pytest.mark.shared
def test_text_file_named_conn_log_is_refused():
    with pytest.raises(NotALogError, match=r"text_file/conn.log: not a Zeek TSV log: no #fields"):
        read_all(shared_file("rita/text_file/conn.log"))


@pytest.mark.shared
def test_unsupported_real_log_type_is_skipped():
    path = shared_file("zat/notice.log")
    tables, log = read_all(path)
    assert tables == {}
    assert log.skipped == [(path, "unsupported Zeek log type 'notice'")]


# ---------------------------------------------------------------- zat as the reference

def _zat_value(v):
    if v is None or v is pa.NA:
        return None
    try:
        import pandas as pd
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "total_seconds"):
        return v.total_seconds()
    if hasattr(v, "to_pydatetime"):
        return v.to_pydatetime(warn=False)
    if hasattr(v, "item"):
        return v.item()
    return v


def _ours_as_zat(col, v):
    """Our value as zat writes it: '(empty)' text for empty strings/lists, lists joined."""
    if col == "answers" and v is not None:
        return ",".join(v) if v else "(empty)"
    if isinstance(v, str) and v == "":
        return "(empty)"
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None)
    return v


_ZAT_NAMES = {"orig_h": "id.orig_h", "orig_p": "id.orig_p", "resp_h": "id.resp_h",
              "resp_p": "id.resp_p"}
_COMPARE = {
    "conn": ["ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "service", "duration",
             "orig_bytes", "resp_bytes", "conn_state", "history", "orig_pkts", "resp_pkts"],
    "dns": ["ts", "uid", "orig_h", "resp_h", "query", "qtype_name", "rcode_name", "answers"],
}


@pytest.mark.shared
@pytest.mark.parametrize("rel", [
    "zat/dns.log", "rita/proxy/conn.log", "rita/proxy/dns.log",
    "slips/port-scans/horizontal/conn.log",  # (vertical/conn.log is Zeek JSON)
])
def test_same_records_as_zat(rel):
    zat = pytest.importorskip("zat.log_to_dataframe")
    path = shared_file(rel)
    [(table, ours)] = read_all(path)[0].items()
    df = zat.LogToDataFrame().create_dataframe(path, ts_index=False)
    assert len(df) == ours.num_rows
    for col in _COMPARE[table]:
        theirs = [_zat_value(v) for v in df[_ZAT_NAMES.get(col, col)].tolist()]
        mine = [_ours_as_zat(col, v) for v in ours.column(col).to_pylist()]
        for i, (a, b) in enumerate(zip(mine, theirs)):
            if isinstance(a, float) and isinstance(b, float):
                assert math.isclose(a, b, abs_tol=1e-6), (col, i, a, b)
            elif isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
                assert abs(a - b) <= dt.timedelta(microseconds=1), (col, i, a, b)
            else:
                assert a == b, (col, i, a, b)


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("sep_line", ["#separator \\x09", "#separator\t\\x09"])
def test_separator_forms_and_btest_banner(tmp_path, sep_line):
    banner = "### BTest baseline data generated by btest-diff. Do not edit.\n"
    path = write(tmp_path, banner + header(sep_line=sep_line) + conn_line(1) + conn_line(2))
    tables, log = read_all(path)
    conn = tables["conn"]
    assert conn.num_rows == 2
    assert conn.column("ts")[0].as_py() == dt.datetime(2023, 11, 14, 22, 13, 21, 123456,
                                                      tzinfo=dt.timezone.utc)
    assert conn.column("source").to_pylist() == [path, path]
    assert log.reject_count == 0 and log.notes == []


def test_unset_is_null_and_empty_is_blank(tmp_path):
    text = header() + conn_line(1, service="-", duration="-", orig_bytes="-", history="(empty)") \
        + conn_line(2, service="(empty)", orig_pkts="0")
    conn = read_all(write(tmp_path, text))[0]["conn"]
    assert conn.column("service").to_pylist() == [None, ""]
    assert conn.column("history").to_pylist() == ["", "ShADadFf"]
    assert conn.column("duration").to_pylist() == [None, 0.5]
    assert conn.column("orig_bytes").to_pylist() == [None, 10]  # unset is NULL, never 0
    assert conn.column("orig_pkts").to_pylist() == [3, 0]


def test_sets_and_vectors_become_lists(tmp_path):
    text = header("dns", DNS_FIELDS, DNS_TYPES, set_sep="|") + dns_line(1, "a.example|192.0.2.1") \
        + dns_line(2, "(empty)") + dns_line(3, "-") + dns_line(4, "192.0.2.9")
    dns = read_all(write(tmp_path, text))[0]["dns"]
    assert dns.column("answers").to_pylist() == [["a.example", "192.0.2.1"], [], None, ["192.0.2.9"]]


def test_smtp_and_http_field_names(tmp_path):
    smtp_fields = "ts uid id.orig_h id.orig_p id.resp_h id.resp_p helo mailfrom rcptto".split()
    smtp_types = "time string addr port addr port string string set[string]".split()
    http_fields = "ts uid id.orig_h id.orig_p id.resp_h id.resp_p method host uri user_agent status_code".split()
    http_types = "time string addr port addr port string string string string count".split()
    text = (header("smtp", smtp_fields, smtp_types)
            + "1.0\tC1\t10.0.0.1\t1025\t10.0.0.2\t25\tpc\t<a@x.org>\t<b@y.org>,<c@z.org>\n"
            + header("http", http_fields, http_types)
            + "2.0\tC2\t10.0.0.1\t1026\t10.0.0.3\t80\tGET\t(empty)\t/x\tcurl/8\t404\n"
            + header("ssl", ["ts", "uid", "server_name"], ["time", "string", "string"])
            + "3.0\tC3\texample.org\n")
    tables, _ = read_all(write(tmp_path, text))
    assert tables["smtp"].select(["helo", "mail_from", "rcpt_to", "resp_p"]).to_pylist() == [
        {"helo": "pc", "mail_from": "<a@x.org>", "rcpt_to": ["<b@y.org>", "<c@z.org>"], "resp_p": 25}]
    assert tables["http"].select(["method", "host", "uri", "user_agent", "status"]).to_pylist() == [
        {"method": "GET", "host": "", "uri": "/x", "user_agent": "curl/8", "status": 404}]
    assert tables["tls"].column("server_name").to_pylist() == ["example.org"]


def test_hash_signs_inside_values_are_data(tmp_path):
    fields = "ts uid id.orig_h id.orig_p id.resp_h id.resp_p method host uri user_agent status_code".split()
    types = "time string addr port addr port string string string string count".split()
    rows = "".join(f"{i}.0\tC{i}\t10.0.0.1\t1025\t10.0.0.2\t80\tGET\tx.org\t/#a#{i}\t#ua\t200\n"
                   for i in range(1, 41))
    text = header("http", fields, types) + rows + "#close\t2024\n" + header("http", fields, types) + rows
    tables, log = read_all(write(tmp_path, text))
    assert tables["http"].column("uri").to_pylist() == [f"/#a#{i}" for i in range(1, 41)] * 2
    assert log.reject_count == 0


def test_several_header_blocks_with_different_columns(tmp_path):
    old = [f for f in CONN_FIELDS if f != "local_resp"]
    old_types = [t for f, t in zip(CONN_FIELDS, CONN_TYPES) if f != "local_resp"]
    new = ["_node_name"] + CONN_FIELDS + ["ip_proto", "community_id"]
    new_types = ["string"] + CONN_TYPES + ["count", "string"]
    old_line = "\t".join(v for f, v in zip(CONN_FIELDS, conn_line(1).rstrip("\n").split("\t"))
                         if f != "local_resp") + "\n"
    new_line = "worker-1\t" + conn_line(2).rstrip("\n") + "\t6\t1:abc=\n"
    text = (header(fields=old, types=old_types) + old_line + "#close\t2024-01-01-01-00-00\n"
            + header(fields=new, types=new_types) + new_line
            + header("dns", DNS_FIELDS, DNS_TYPES) + dns_line(3)
            + header("notice", ["ts", "note"], ["time", "string"]) + "4.0\tScan::Port_Scan\n"
            + header() + conn_line(5))
    path = write(tmp_path, text)
    tables, log = read_all(path)
    conn = tables["conn"]
    assert conn.column("uid").to_pylist() == ["Cabcdef000001", "Cabcdef000002", "Cabcdef000005"]
    assert conn.column("sensor").to_pylist() == [None, "worker-1", None]
    assert conn.column("community_id").to_pylist() == [None, "1:abc=", None]
    assert conn.column("orig_bytes").to_pylist() == [10, 10, 10]
    assert tables["dns"].column("query").to_pylist() == ["example.com"]
    assert log.skipped == [(path, "unsupported Zeek log type 'notice'")]
    assert log.reject_count == 0


def test_close_in_the_middle_keeps_the_header(tmp_path):
    text = header() + conn_line(1) + "#close\t2024-01-01-01-00-00\n" + conn_line(2) \
        + "#close\t2024-01-01-02-00-00\n"
    tables, log = read_all(write(tmp_path, text))
    assert tables["conn"].num_rows == 2 and log.reject_count == 0


def test_log_type_comes_from_path_not_file_name(tmp_path):
    text = header("dns", DNS_FIELDS, DNS_TYPES) + dns_line(1)
    tables, _ = read_all(write(tmp_path, text, name="conn.log"))
    assert list(tables) == ["dns"]
    open_conn = header("open_conn") + conn_line(1)
    assert list(read_all(write(tmp_path, open_conn, name="whatever.log"))[0]) == ["conn"]


def test_missing_types_line_uses_the_schema_types(tmp_path):
    text = "".join(ln + "\n" for ln in header().splitlines() if not ln.startswith("#types"))
    conn = read_all(write(tmp_path, text + conn_line(1, orig_bytes="-")))[0]["conn"]
    assert conn.select(["orig_p", "orig_bytes", "duration"]).to_pylist() == [
        {"orig_p": 40001, "orig_bytes": None, "duration": 0.5}]


def test_missing_path_is_recognised_by_fields(tmp_path):
    text = header().replace("#path\tconn\n", "") + conn_line(1)
    path = write(tmp_path, text)
    tables, log = read_all(path)
    assert tables["conn"].num_rows == 1
    assert log.notes == [f"{path}: no #path header; conn log recognised by its #fields"]


def test_headerless_conn_is_inferred(tmp_path):
    path = write(tmp_path, conn_line(1) + conn_line(2))
    tables, log = read_all(path)
    assert tables["conn"].column("resp_bytes").to_pylist() == [20, 20]
    assert log.notes == [f"{path}: no Zeek header; inferred the Bro 2.5-Zeek 7 conn layout "
                         "(21 fields) from the record shape"]


def test_gzip_and_crlf_line_ends(tmp_path):
    text = (header() + conn_line(1) + conn_line(2)).replace("\n", "\r\n")
    tables, log = read_all(write(tmp_path, text, name="x.log.gz", gz=True))
    assert tables["conn"].column("history").to_pylist() == ["ShADadFf"] * 2
    assert log.reject_count == 0


# ---------------------------------------------------------------- bad input

def test_wrong_field_count_in_the_middle(tmp_path):
    text = header() + conn_line(1) + conn_line(2) + "1700000003.0\tCbad\t10.0.0.1\t1\t2\n" + conn_line(4)
    tables, log = read_all(write(tmp_path, text))
    assert tables["conn"].num_rows == 3
    assert rejects(log) == [(HEADER_LINES + 3, "wrong number of fields: 5, expected 21")]
    assert log.rejects[0].raw == "1700000003.0\tCbad\t10.0.0.1\t1\t2"


def test_bad_numeric_values(tmp_path):
    text = (header() + conn_line(1) + conn_line(2, orig_bytes="abc") + conn_line(3, id__resp_p="http")
            + conn_line(4, ts="yesterday") + conn_line(5, duration="1.5s") + conn_line(6))
    tables, log = read_all(write(tmp_path, text))
    assert tables["conn"].column("uid").to_pylist() == ["Cabcdef000001", "Cabcdef000006"]
    assert rejects(log) == [
        (10, "bad count value 'abc' in field 'orig_bytes'"),
        (11, "bad port value 'http' in field 'id.resp_p'"),
        (12, "bad time value 'yesterday' in field 'ts'"),
        (13, "bad number value '1.5s' in field 'duration'"),
    ]
    assert log.rejects[0].raw == conn_line(2, orig_bytes="abc").rstrip("\n")


def test_truncated_last_line(tmp_path):
    text = header() + conn_line(1) + conn_line(2)[:40]
    tables, log = read_all(write(tmp_path, text))
    assert tables["conn"].num_rows == 1
    [(line, reason)] = rejects(log)
    assert line == HEADER_LINES + 2
    assert reason.startswith("truncated") and reason.endswith(": 3 of 21 fields")


def test_complete_last_line_without_newline_is_kept(tmp_path):
    tables, log = read_all(write(tmp_path, header() + conn_line(1) + conn_line(2).rstrip("\n")))
    assert tables["conn"].num_rows == 2 and log.reject_count == 0


def test_fields_types_mismatch_refuses_the_block(tmp_path):
    bad = header(types=CONN_TYPES[:-1])
    text = bad + conn_line(1) + conn_line(2) + header() + conn_line(3)
    path = write(tmp_path, text)
    tables, log = read_all(path)
    assert tables["conn"].column("uid").to_pylist() == ["Cabcdef000003"]
    reason = "#fields has 21 names but #types has 20; header block refused (#fields at line 7)"
    assert rejects(log) == [(9, reason), (10, reason)]
    assert f"{path}:7: #fields has 21 names but #types has 20; header block refused" in log.notes


def test_masked_timestamps(tmp_path):
    text = header() + conn_line(1, ts="XXXXXXXXXX.XXXXXX") + conn_line(2) + conn_line(3, ts="XXXXXXXXXX.XXXXXX")
    path = write(tmp_path, text)
    tables, log = read_all(path)
    assert tables["conn"].column("ts").is_null().to_pylist() == [True, False, True]
    assert log.notes == [f"{path}: 2 masked timestamps (ts NULL)"]
    assert log.reject_count == 0


def test_blank_lines_are_not_records(tmp_path):
    text = header() + conn_line(1) + "\n" + conn_line(3, orig_bytes="x") + conn_line(4)
    tables, log = read_all(write(tmp_path, text))
    assert tables["conn"].num_rows == 2
    assert rejects(log) == [(HEADER_LINES + 3, "bad count value 'x' in field 'orig_bytes'")]


def test_invalid_utf8_is_rejected(tmp_path):
    text = (header() + conn_line(1)).encode() + conn_line(2, history="S\udcff").encode("utf-8", "surrogateescape")
    tables, log = read_all(write(tmp_path, text))
    assert tables["conn"].num_rows == 1
    assert rejects(log) == [(HEADER_LINES + 2, "invalid UTF-8 in field 'history'")]


def test_line_numbers_stay_physical_across_pieces_and_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(zeek_tsv, "SUB_RANGE", 16 << 10)
    lines = [header()]
    expected = []
    line = HEADER_LINES
    for i in range(6000):
        line += 1
        if i == 2500:
            lines.append(header())  # a second block mid-file
            line += HEADER_LINES
            lines.append(conn_line(i))
            continue
        if i % 997 == 0:
            lines.append(conn_line(i, resp_pkts="-1x"))
            expected.append((line, "bad count value '-1x' in field 'resp_pkts'"))
        elif i % 1499 == 0:
            lines.append("garbage\n")
            expected.append((line, "wrong number of fields: 1, expected 21"))
        else:
            lines.append(conn_line(i))
    path = write(tmp_path, "".join(lines))
    tables, log = read_all(path, piece_size=64 << 10)
    assert rejects(log) == expected
    assert tables["conn"].num_rows == 6000 - len(expected)


def test_chunks_are_bounded_by_the_piece_size(tmp_path):
    path = write(tmp_path, header() + "".join(conn_line(i) for i in range(5000)))
    log = IngestLog()
    sizes = [c.num_rows for _, c in zeek_tsv.read(path, log, piece_size=64 << 10)]
    assert sum(sizes) == 5000 and max(sizes) <= (64 << 10) // len(conn_line(0)) + 1


def test_over_long_line_is_skipped(tmp_path):
    text = header() + conn_line(1) + "x" * (200 << 10) + "\n" + conn_line(3)
    tables, log = read_all(write(tmp_path, text), piece_size=64 << 10)
    assert tables["conn"].num_rows == 2
    assert rejects(log) == [(HEADER_LINES + 2, f"line longer than {64 << 10} bytes; skipped")]


def test_gzip_cut_short_keeps_what_was_decompressed(tmp_path):
    data = gzip.compress((header() + "".join(conn_line(i) for i in range(20000))).encode())
    path = write(tmp_path, data[: len(data) * 2 // 3], name="cut.log.gz")
    tables, log = read_all(path)
    kept = tables["conn"].num_rows
    assert 5000 < kept < 20000
    assert any(n.startswith(f"{path}: gzip stream truncated at byte ") for n in log.notes)
    reasons = [r.reason for r in log.rejects]
    assert reasons[-1].startswith("gzip stream truncated at byte ")
    assert all(r.startswith(("truncated", "gzip stream truncated")) for r in reasons)


def test_empty_file(tmp_path):
    assert read_all(write(tmp_path, ""))[0] == {}


def test_header_only_file(tmp_path):
    tables, log = read_all(write(tmp_path, header() + "#close\t2024-01-01-01-00-00\n"))
    assert tables == {} and log.reject_count == 0


def test_binary_garbage_is_refused(tmp_path):
    path = write(tmp_path, bytes(range(256)) * 64, name="garbage.log")
    with pytest.raises(NotALogError, match=r"garbage.log: not a Zeek TSV log"):
        read_all(path)


def test_binary_garbage_after_a_header_is_rejected_not_fatal(tmp_path):
    garbage = os.urandom(4096).replace(b"#", b"%")
    text = (header() + conn_line(1)).encode() + garbage + b"\n" + conn_line(9).encode()
    tables, log = read_all(write(tmp_path, text))
    assert tables["conn"].column("uid").to_pylist()[0] == "Cabcdef000001"
    assert tables["conn"].column("uid").to_pylist()[-1] == "Cabcdef000009"
    assert log.reject_count >= 1


def test_headerless_text_is_refused(tmp_path):
    path = write(tmp_path, "hello world\nthis is not a log\n", name="notes.log")
    with pytest.raises(NotALogError, match=r"notes.log: not a Zeek TSV log: no #fields header, "
                                           r"and the records match no Zeek conn layout"):
        read_all(path)


def test_data_before_a_header_is_rejected_when_a_header_follows(tmp_path):
    path = write(tmp_path, "half a line\n" + header() + conn_line(1))
    tables, log = read_all(path)
    assert tables["conn"].num_rows == 1
    assert rejects(log) == [(1, "data line without a #fields header")]


def test_progress_counts_the_bytes_on_disk(tmp_path):
    path = write(tmp_path, header() + "".join(conn_line(i) for i in range(3000)), gz=True, name="p.log.gz")
    seen = []
    log = IngestLog(progress=seen.append)
    for _ in zeek_tsv.read(path, log):
        pass
    assert sum(seen) == os.path.getsize(path)


# ---------------------------------------------------------------- nothing is silently dropped

_JUNK = st.lists(st.sampled_from(["\t", "-", "x", "7", ".", "(empty)", "XX.X", "\udcff", "é", " "]),
                 max_size=30).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.tuples(st.sampled_from(["good", "junk", "blank", "bad_count"]), _JUNK),
                      min_size=1, max_size=40),
       final_newline=st.booleans(), piece=st.sampled_from([2048, 1 << 20]))
def test_every_data_line_is_kept_or_rejected(tmp_path, kinds, final_newline, piece):
    lines = []
    for i, (kind, junk) in enumerate(kinds):
        if kind == "good":
            lines.append(conn_line(i))
        elif kind == "blank":
            lines.append("\n")
        elif kind == "bad_count":
            lines.append(conn_line(i, tunnel_parents="a\tb"))
        else:
            lines.append(junk.lstrip("#") + "\n")
    text = header() + "".join(lines)
    if not final_newline:
        text = text[:-1]
    path = write(tmp_path, text.encode("utf-8", "surrogateescape"))
    tables, log = read_all(path, piece_size=piece)
    rows = tables["conn"].num_rows if tables else 0
    blank = sum(1 for ln in lines if ln == "\n")
    assert rows + log.reject_count + blank == len(lines)
    assert all(HEADER_LINES < r.line <= HEADER_LINES + len(lines) for r in log.rejects)
    kept = set(tables["conn"].column("uid").to_pylist()) if tables else set()
    good = {f"Cabcdef{i:06d}" for i, (kind, _) in enumerate(kinds) if kind == "good"}
    assert good <= kept
