"""Suricata EVE reader: real alert files from ../shared/data, and small fixtures written here."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pyarrow as pa
import pytest
from conftest import SHARED, shared_file, shared_files

from zeekwatch import schema
from zeekwatch.errors import InputError, ZeekwatchError
from zeekwatch.readers import sniff
from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.eve import dns as eve_dns
from zeekwatch.readers.eve import reader as eve

UTC = dt.timezone.utc
T0 = "2024-05-01T10:00:00.000000+0000"


def read_all(path) -> tuple[dict[str, pa.Table], IngestLog]:
    log = IngestLog()
    parts: dict[str, list[pa.Table]] = {}
    for table, chunk in eve.read(str(path), log):
        assert chunk.schema == schema.TABLES[table]
        parts.setdefault(table, []).append(chunk)
    return {t: pa.concat_tables(c) for t, c in parts.items()}, log


def rows(path, table) -> list[dict]:
    tables, _ = read_all(path)
    return tables[table].drop_columns(["source"]).to_pylist() if table in tables else []


def write_events(path, events, end="\n") -> str:
    path.write_text("\n".join(e if isinstance(e, str) else json.dumps(e) for e in events) + end)
    return str(path)


def event(kind: str, ts: str = T0, flow_id=1001, src=("10.0.0.5", 51000), dst=("192.0.2.53", 53),
          proto="UDP", **body) -> dict:
    return {"timestamp": ts, "flow_id": flow_id, "event_type": kind, "src_ip": src[0],
            "src_port": src[1], "dest_ip": dst[0], "dest_port": dst[1], "proto": proto, **body}


def _kind(rel: str) -> str | None:
    try:
        return sniff(str(SHARED / rel))
    except ZeekwatchError:
        return None


EVE_FILES = [f for f in shared_files(("",)) if _kind(f) == "eve"]


# --- real data ---------------------------------------------------------------------------

@pytest.mark.parametrize("rel", EVE_FILES or ["(none)"])
def test_every_shared_eve_file_reads(rel):
    path = shared_file(rel)
    tables, log = read_all(path)
    assert tables and log.reject_count == 0


def test_wrccdc_alert_mapping_and_offset():
    tables, log = read_all(shared_file("frank-suricata/wrccdc-2018/alerts-only.eve.ndjson"))
    alerts = tables["alert"]
    assert alerts.num_rows == 207 and not log.notes
    first = alerts.slice(0, 1).to_pylist()[0]
    assert first["ts"] == dt.datetime(2018, 3, 24, 20, 37, 19, 37299, tzinfo=UTC)  # -0600
    assert (first["orig_h"], first["orig_p"], first["resp_h"], first["resp_p"], first["proto"]) == (
        "0.0.0.0", 26078, "10.47.8.150", 22, "tcp")
    assert (first["gid"], first["sid"], first["rev"], first["severity"]) == (1, 2001219, 20, 2)
    assert first["signature"] == "ET SCAN Potential SSH Scan"
    assert first["category"] == "Attempted Information Leak" and first["action"] == "allowed"
    assert first["flow_id"] == 928532049924531


def test_honeypot_timestamps_without_offset_are_utc_with_one_note():
    path = shared_file("frank-suricata/honeypot-2018/alerts-only.eve.ndjson")
    tables, log = read_all(path)
    assert tables["alert"].column("ts")[0].as_py() == dt.datetime(2019, 1, 2, 3, 50, 11, 315110, tzinfo=UTC)
    assert log.notes == [f"{path}: 44 timestamps without a UTC offset, read as UTC"]


# --- alert, flow, app layers -------------------------------------------------------------

def test_alert_icmp_uses_type_and_code_as_ports(tmp_path):
    e = event("alert", proto="ICMP", src=("10.0.0.5", None), dst=("192.0.2.1", None), icmp_type=8,
              icmp_code=0, alert={"gid": 1, "signature_id": 2100384, "rev": 6, "signature": "GPL ICMP PING",
                                  "category": "Misc activity", "severity": 3, "action": "allowed"},
              app_proto="failed", community_id="1:xyz")
    row = rows(write_events(tmp_path / "eve.json", [e]), "alert")[0]
    assert (row["proto"], row["orig_p"], row["resp_p"]) == ("icmp", 8, 0)
    assert (row["sid"], row["app_proto"], row["community_id"]) == (2100384, "failed", "1:xyz")


def flow(state, ts_flags, tc_flags, pkts=(3, 2), proto="TCP", **extra):
    body = {"flow": {"pkts_toserver": pkts[0], "pkts_toclient": pkts[1], "bytes_toserver": 200,
                     "bytes_toclient": 1500, "start": "2024-05-01T10:00:00.250000+0200",
                     "end": "2024-05-01T10:00:02.750000+0200", "state": state, "reason": "timeout"}}
    if ts_flags is not None:
        body["tcp"] = {"tcp_flags_ts": ts_flags, "tcp_flags_tc": tc_flags}
    return event("flow", proto=proto, dst=("192.0.2.80", 443), **body, **extra)


def test_flow_to_conn(tmp_path):
    e = flow("closed", "1b", "1b", app_proto="tls", community_id="1:c", host="sensor-a")
    row = rows(write_events(tmp_path / "eve.json", [e]), "conn")[0]
    assert row == {
        "ts": dt.datetime(2024, 5, 1, 8, 0, 0, 250000, tzinfo=UTC), "uid": "1001",
        "orig_h": "10.0.0.5", "orig_p": 51000, "resp_h": "192.0.2.80", "resp_p": 443,
        "proto": "tcp", "service": "ssl", "duration": 2.5, "orig_bytes": 200, "resp_bytes": 1500,
        "conn_state": "SF", "history": None, "orig_pkts": 3, "resp_pkts": 2,
        "community_id": "1:c", "sensor": "sensor-a",
        "local_orig": None, "local_resp": None,  # EVE does not say
    }


@pytest.mark.parametrize("state, ts_flags, tc_flags, pkts, proto, expect", [
    ("new", "02", None, (1, 0), "TCP", "S0"),  # SYN only
    ("closed", "02", "14", (1, 1), "TCP", "REJ"),  # SYN answered by RST-ACK
    ("established", "1a", "1a", (4, 3), "TCP", "S1"),
    ("closed", "1f", "1a", (4, 3), "TCP", "RSTO"),
    ("closed", "1b", "1e", (4, 3), "TCP", "RSTR"),
    ("closed", "18", "18", (4, 3), "TCP", "OTH"),  # midstream: no SYN seen
    ("new", None, None, (1, 0), "TCP", "S0"),  # no tcp object: from flow.state
    ("established", None, None, (2, 2), "TCP", "S1"),
    ("new", None, None, (1, 0), "UDP", "S0"),
    ("established", None, None, (1, 1), "UDP", "SF"),
])
def test_flow_conn_state(tmp_path, state, ts_flags, tc_flags, pkts, proto, expect):
    e = flow(state, ts_flags, tc_flags, pkts=pkts, proto=proto)
    assert rows(write_events(tmp_path / "eve.json", [e]), "conn")[0]["conn_state"] == expect


def test_icmp_flow_follows_zeek(tmp_path):
    e = flow("established", None, None, pkts=(4, 4), proto="IPv6-ICMP", icmp_type=128, icmp_code=0)
    row = rows(write_events(tmp_path / "eve.json", [e]), "conn")[0]
    assert (row["proto"], row["orig_p"], row["resp_p"], row["conn_state"]) == ("icmp", 128, 0, "OTH")


def test_http_tls_smtp(tmp_path):
    tcp = {"proto": "TCP", "dst": ("192.0.2.80", 80)}
    path = write_events(tmp_path / "eve.json", [
        event("http", **tcp, http={"hostname": "www.example.com", "url": "/a?b=1", "http_user_agent": "UA/1",
                                   "http_method": "POST", "status": 302, "length": 5}),
        event("tls", proto="TCP", dst=("192.0.2.80", 443), tls={"sni": "secure.example.com", "version": "TLS 1.3"}),
        event("smtp", proto="TCP", dst=("192.0.2.25", 25),
              smtp={"helo": "pc1", "mail_from": "<a@example.com>", "rcpt_to": ["<b@example.org>", "<c@example.org>"]}),
    ])
    tables, _ = read_all(path)
    base = {"ts": dt.datetime(2024, 5, 1, 10, tzinfo=UTC), "uid": "1001", "orig_h": "10.0.0.5", "source": path}
    assert tables["http"].to_pylist() == [base | {
        "resp_h": "192.0.2.80", "resp_p": 80, "host": "www.example.com", "uri": "/a?b=1",
        "user_agent": "UA/1", "method": "POST", "status": 302}]
    assert tables["tls"].to_pylist() == [base | {"resp_h": "192.0.2.80", "resp_p": 443,
                                                 "server_name": "secure.example.com"}]
    assert tables["smtp"].to_pylist() == [base | {
        "resp_h": "192.0.2.25", "resp_p": 25, "helo": "pc1", "mail_from": "a@example.com",
        "rcpt_to": ["b@example.org", "c@example.org"]}]


def test_other_event_types_are_counted_in_one_note(tmp_path):
    path = write_events(tmp_path / "eve.json", [
        {"timestamp": T0, "event_type": "stats", "stats": {}}, event("fileinfo"), event("anomaly"),
        event("fileinfo"), event("alert", alert={"signature_id": 1}), event("http")])
    tables, log = read_all(path)
    assert tables["alert"].num_rows == 1
    assert log.notes == [f"{path}: 5 events of types not used: anomaly (1), fileinfo (2), "
                         f"http without an 'http' object (1), stats (1)"]


@pytest.mark.parametrize("stamp, expect", [
    ("2024-05-01T10:00:00.123456+0000", dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2024-05-01T10:00:00.123456-0500", dt.datetime(2024, 5, 1, 15, 0, 0, 123456, tzinfo=UTC)),
    ("2024-05-01T10:00:00.123456", dt.datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
])
def test_timestamps_to_utc(tmp_path, stamp, expect):
    e = event("alert", ts=stamp, alert={"signature_id": 1})
    assert rows(write_events(tmp_path / "eve.json", [e]), "alert")[0]["ts"] == expect


def test_unreadable_timestamp_is_null_with_a_note(tmp_path):
    events = [event("alert", ts="yesterday", alert={"signature_id": 1}),
              event("alert", ts="2024-05-01T10:00:00Z", alert={"signature_id": 2}),
              event("alert", ts="2024-05-01T10:00:00", alert={"signature_id": 3})]
    path = write_events(tmp_path / "eve.json", events)
    tables, log = read_all(path)
    assert tables["alert"].column("ts").to_pylist() == [None] + [dt.datetime(2024, 5, 1, 10, tzinfo=UTC)] * 2
    assert log.notes == [f"{path}: 1 timestamps without a UTC offset, read as UTC",
                         f"{path}: 1 timestamps that could not be parsed (NULL)"]


def test_gzip_eve(tmp_path):
    path = tmp_path / "eve.json.gz"
    path.write_bytes(gzip.compress(json.dumps(event("alert", alert={"signature_id": 7})).encode() + b"\n"))
    assert rows(path, "alert")[0]["sid"] == 7


# --- dns ---------------------------------------------------------------------------------

SERVER, CLIENT = ("192.0.2.53", 53), ("10.0.0.5", 51000)
ANSWERS = [{"rrname": "www.suricata.io", "rrtype": "CNAME", "ttl": 3597, "rdata": "suricata.io"},
           {"rrname": "suricata.io", "rrtype": "A", "ttl": 597, "rdata": "35.212.0.44"}]
T1 = "2024-05-01T10:00:00.020000+0000"


def dns_v2(grouped=False):
    answer = {"version": 2, "type": "answer", "id": 7, "flags": "8180", "rrname": "www.suricata.io",
              "rrtype": "A", "rcode": "NOERROR"}
    if grouped:
        answer["grouped"] = {"CNAME": ["suricata.io"], "A": ["35.212.0.44"]}
    else:
        answer["answers"] = ANSWERS
    return [
        event("dns", dns={"type": "query", "id": 7, "rrname": "www.suricata.io", "rrtype": "A", "tx_id": 0}),
        event("dns", dns={"type": "query", "id": 9, "rrname": "nx.example", "rrtype": "MX", "tx_id": 1},
              flow_id=1002),
        event("dns", ts=T1, src=SERVER, dst=CLIENT, dns=answer),
        event("dns", ts=T1, flow_id=1002, dns={"version": 2, "type": "answer", "id": 9, "rrname": "nx.example",
                                               "rrtype": "MX", "rcode": "NXDOMAIN"}),
    ]


def dns_v3():
    return [
        event("dns", dns={"version": 3, "type": "request", "id": 7, "tx_id": 0,
                          "queries": [{"rrname": "www.suricata.io", "rrtype": "A"}]}),
        event("dns", flow_id=1002, dns={"version": 3, "type": "request", "id": 9,
                                        "queries": [{"rrname": "nx.example", "rrtype": "MX"}]}),
        event("dns", ts=T1, src=SERVER, dst=CLIENT, dns={
            "version": 3, "type": "response", "id": 7, "rcode": "NOERROR",
            "queries": [{"rrname": "www.suricata.io", "rrtype": "A"}], "answers": ANSWERS}),
        event("dns", ts=T1, src=SERVER, dst=CLIENT, flow_id=1002, dns={
            "version": 3, "type": "response", "id": 9, "rcode": "NXDOMAIN",
            "queries": [{"rrname": "nx.example", "rrtype": "MX"}]}),
    ]


def dns_v1():  # one answer event per record
    return [
        event("dns", dns={"type": "query", "id": 7, "rrname": "www.suricata.io", "rrtype": "A"}),
        event("dns", flow_id=1002, dns={"type": "query", "id": 9, "rrname": "nx.example", "rrtype": "MX"}),
        *[event("dns", ts=T1, src=SERVER, dst=CLIENT, dns={"type": "answer", "id": 7, "rcode": "NOERROR", **a})
          for a in ANSWERS],
        event("dns", ts=T1, flow_id=1002, src=SERVER, dst=CLIENT,
              dns={"type": "answer", "id": 9, "rrname": "nx.example", "rrtype": "MX", "rcode": "NXDOMAIN"}),
    ]


EXPECTED_DNS = [
    {"ts": dt.datetime(2024, 5, 1, 10, tzinfo=UTC), "uid": "1001", "orig_h": "10.0.0.5",
     "resp_h": "192.0.2.53", "query": "www.suricata.io", "qtype_name": "A", "rcode_name": "NOERROR",
     "answers": ["suricata.io", "35.212.0.44"], "community_id": None},
    {"ts": dt.datetime(2024, 5, 1, 10, tzinfo=UTC), "uid": "1002", "orig_h": "10.0.0.5",
     "resp_h": "192.0.2.53", "query": "nx.example", "qtype_name": "MX", "rcode_name": "NXDOMAIN",
     "answers": None, "community_id": None},
]


@pytest.mark.parametrize("layout", [dns_v1, dns_v2, lambda: dns_v2(grouped=True), dns_v3],
                         ids=["v1", "v2-detailed", "v2-grouped", "v3"])
def test_dns_layouts_give_the_same_rows(tmp_path, layout):
    got = rows(write_events(tmp_path / "eve.json", layout()), "dns")
    assert sorted(got, key=lambda r: r["uid"]) == EXPECTED_DNS


def test_dns_response_without_request_makes_its_own_row(tmp_path):
    for version, events in (("v2", dns_v2()[2:3]), ("v3", dns_v3()[2:3])):
        got = rows(write_events(tmp_path / f"{version}.json", events), "dns")
        assert got == [EXPECTED_DNS[0] | {"ts": dt.datetime(2024, 5, 1, 10, 0, 0, 20000, tzinfo=UTC)}], version


def test_dns_unanswered_query_is_written_after_the_pending_window(tmp_path, monkeypatch):
    monkeypatch.setattr(eve_dns, "PENDING_EVENTS", 5)
    monkeypatch.setattr(eve, "CHUNK_EVENTS", 3)
    events = dns_v2()[:1] + [event("alert", alert={"signature_id": i}) for i in range(10)]
    log = IngestLog()
    chunks = list(eve.read(write_events(tmp_path / "eve.json", events), log))
    assert [t for t, _ in chunks].index("dns") < len(chunks) - 1  # before the end of the file
    dns = [c for t, c in chunks if t == "dns"][0].to_pylist()
    assert [(r["query"], r["rcode_name"], r["answers"]) for r in dns] == [("www.suricata.io", None, None)]


# --- bad input ---------------------------------------------------------------------------

def test_bad_lines_rejected_neighbours_kept(tmp_path):
    good = event("alert", alert={"signature_id": 5})
    path = write_events(tmp_path / "eve.json", [
        good, '{"timestamp": "2024-05-01T10:00:00", "event_type": "al', good,
        '{"timestamp": "2024-05-01T10:00:00"}', "", good, '{"event_type": "alert", "tim'], end="")
    tables, log = read_all(path)
    assert tables["alert"].num_rows == 3
    assert [(r.line, r.reason.split(":")[0]) for r in log.rejects] == [
        (2, "malformed JSON"), (4, "not an EVE event (no event_type)"),
        (7, "truncated last line (no newline at end of file)")]


def test_array_file_that_does_not_parse_is_refused(tmp_path):
    path = tmp_path / "alerts.json"
    path.write_text('[\n  {"event_type": "alert"}\n  {"event_type": "alert"}\n]\n')  # a comma missing
    with pytest.raises(InputError, match=r"alerts\.json:3: JSON array does not parse at line 3 column 3 "
                                         r"\(byte 30\): unexpected character, expected ',' or ']'"):
        list(eve.read(str(path), IngestLog()))
    path.write_text('[\n  {"event_type": "alert"},\n  {"event_type": \n')  # cut short
    with pytest.raises(InputError, match=r"alerts\.json:4: JSON array does not parse at line 4 column 1 "
                                         r"\(byte 47\): unexpected end of data"):
        list(eve.read(str(path), IngestLog()))


def test_array_element_that_is_not_an_event_is_rejected(tmp_path):
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps([event("alert", alert={"signature_id": 5}), 42, {"x": 1}]))
    tables, log = read_all(path)
    assert tables["alert"].num_rows == 1
    assert [(r.line, r.reason) for r in log.rejects] == [
        (None, "array element 1 is not an EVE event"), (None, "array element 2 is not an EVE event")]


def test_values_of_the_wrong_type_become_null(tmp_path):
    e = event("flow", proto="TCP", src=("10.0.0.5", 10**12), dst=({"ip": 1}, "80"),
              flow={"start": 1714557600.5, "end": "later", "pkts_toserver": "x", "bytes_toserver": 3.0})
    row = rows(write_events(tmp_path / "eve.json", [e]), "conn")[0]
    assert (row["orig_p"], row["resp_h"], row["resp_p"]) == (None, None, 80)
    assert row["ts"] == dt.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert (row["duration"], row["orig_pkts"], row["orig_bytes"]) == (None, None, 3)


def test_dns_answer_after_a_chunk_boundary_still_merges(tmp_path, monkeypatch):
    monkeypatch.setattr(eve, "CHUNK_EVENTS", 3)
    filler = [event("alert", alert={"signature_id": i}) for i in range(10)]
    v2 = dns_v2()
    got = rows(write_events(tmp_path / "eve.json", v2[:2] + filler + v2[2:]), "dns")
    assert sorted(got, key=lambda r: r["uid"]) == EXPECTED_DNS
