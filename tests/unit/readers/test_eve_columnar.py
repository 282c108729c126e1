"""EVE in Arrow columns (issue 17): the fast paths (``eve.columnar``: DuckDB over the file, then
pyarrow.json blocks) must give exactly what the event-by-event path gives — every table, every
row, the rejects with their line numbers, the notes — on real alerts, on generated flow/dns
events, on every flow state and app layer, and on files whose bad lines send the rest of the
file to blocks and the bad block to the event-by-event path."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest
from conftest import ROOT, shared_file

from zeekwatch.readers import jsonlines
from zeekwatch.readers.base import IngestLog
from zeekwatch.readers.eve import columnar
from zeekwatch.readers.eve import reader as eve

FLOWS = [  # (state, tcp_flags_ts, tcp_flags_tc, pkts, proto)
    ("closed", "1b", "1b", (3, 2), "TCP"), ("new", "02", "00", (1, 0), "TCP"),
    ("closed", "02", "14", (1, 1), "TCP"), ("closed", "1e", "12", (3, 1), "TCP"),
    ("closed", "1a", "16", (3, 2), "TCP"), ("established", None, None, (2, 2), "TCP"),
    ("new", None, None, (1, 0), "TCP"), ("new", None, None, (1, 1), "TCP"),
    ("closed", None, None, (3, 3), "TCP"), ("bypassed", "zz", None, (2, 0), "TCP"),
    ("closed", None, None, (1, 1), "UDP"), ("new", None, None, (1, 0), "UDP"),
    ("new", None, None, (0, 1), "UDP"), ("new", None, None, (0, 0), "UDP"),
    ("closed", None, None, (4, 4), "IPv6-ICMP"), ("closed", None, None, (1, 1), "sctp"),
]


def read(path, mode: str, monkeypatch) -> tuple[dict, IngestLog]:
    """mode: "duckdb" (as shipped for files of 1 MB and more: these test files are smaller, so
    the size rule is lifted), "blocks" (no DuckDB), "events" (event by event only)."""
    with monkeypatch.context() as m:
        if mode == "duckdb":
            m.setattr(jsonlines, "SMALL_FILE", 0)
        else:
            m.setattr(columnar, "duckdb_batches", _no_duckdb)
        if mode == "events":
            m.setattr(columnar, "parse_block", _refuse)
        log = IngestLog()
        parts: dict[str, list] = {}
        for table, chunk in eve.read(str(path), log):
            parts.setdefault(table, []).append(chunk)
    return {t: sorted(pa.concat_tables(c).to_pylist(), key=repr) for t, c in parts.items()}, log


def _refuse(block):
    raise columnar.Fallback("test: the event-by-event path")


def _no_duckdb(path, gzip):
    import duckdb

    raise duckdb.Error("test: no DuckDB")
    yield


def same(path, monkeypatch) -> dict:
    slow, slog = read(path, "events", monkeypatch)
    for mode in ("duckdb", "blocks"):
        fast, flog = read(path, mode, monkeypatch)
        assert fast.keys() == slow.keys(), mode
        for table in fast:
            assert fast[table] == slow[table], (mode, table)
        assert [(r.line, r.reason, r.raw) for r in flog.rejects] == [
            (r.line, r.reason, r.raw) for r in slog.rejects], mode
        assert flog.notes == slog.notes, mode
    return fast


def ev(kind, i, proto="TCP", **body):
    return {"timestamp": f"2024-05-01T10:00:{i % 60:02d}.{i:06d}+0200", "flow_id": 1000 + i,
            "event_type": kind, "src_ip": f"10.0.0.{i % 250}", "src_port": 40000 + i,
            "dest_ip": "192.0.2.80", "dest_port": 443, "proto": proto, **body}


def variety() -> list[dict]:
    out = []
    for i, (state, fts, ftc, pkts, proto) in enumerate(FLOWS):
        body = {"app_proto": ["tls", "http", "failed", "dcerpc", "krb5", None][i % 6], "host": "s1",
                "flow": {"pkts_toserver": pkts[0], "pkts_toclient": pkts[1], "bytes_toserver": 100 + i,
                         "bytes_toclient": 900, "start": f"2024-05-01T10:00:0{i % 10}.250000+0200",
                         "end": "2024-05-01T10:01:00.000000+0200", "state": state}}
        if fts is not None:
            body["tcp"] = {"tcp_flags_ts": fts, "tcp_flags_tc": ftc}
        if "ICMP" in proto:
            body.update(icmp_type=128, icmp_code=0)
        out.append(ev("flow", i, proto, **body))
    out.append(ev("flow", 90))  # no flow object
    out += [ev("alert", 91, alert={"gid": 1, "signature_id": 7, "rev": 2, "signature": "x", "category": "c",
                                   "severity": 1, "action": "allowed"}, app_proto="http", community_id="1:a"),
            ev("alert", 92), ev("http", 93, http={"hostname": "a.example", "url": "/x", "status": 200,
                                                  "http_method": "GET", "http_user_agent": "ua"}),
            ev("tls", 94, tls={"sni": "b.example"}), ev("smtp", 95, smtp={"helo": "h", "mail_from": "<a@b>",
                                                                         "rcpt_to": [" <c@d> ", "e@f"]}),
            ev("stats", 96), ev("fileinfo", 97),
            ev("dns", 98, "UDP", dns={"type": "query", "id": 7, "rrname": "q.example", "rrtype": "A"}),
            ev("dns", 98, "UDP", dns={"version": 2, "type": "answer", "id": 7, "rrname": "q.example",
                                      "rrtype": "A", "rcode": "NOERROR", "answers": [{"rdata": "192.0.2.9"}]})]
    return out


def write(path, lines) -> str:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(path)


def test_real_alerts(monkeypatch):
    for rel in ("frank-suricata/wrccdc-2018/alerts-only.eve.ndjson",
                "frank-suricata/honeypot-2018/alerts-only.eve.ndjson"):
        assert same(shared_file(rel), monkeypatch)["alert"]


def test_every_flow_state_and_app_layer(tmp_path, monkeypatch):
    got = same(write(tmp_path / "eve.json", variety()), monkeypatch)
    assert {r["conn_state"] for r in got["conn"]} >= {"SF", "S0", "REJ", "RSTO", "RSTR", "S1", "OTH", "SHR"}
    assert {t for t in got} == {"conn", "alert", "http", "tls", "smtp", "dns"}


def test_generated_flows_and_dns(tmp_path, monkeypatch):
    out = tmp_path / "g"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_logs.py"), str(out), "--small", "--eve", "-q"],
                   check=True)
    got = same(out / "eve.json", monkeypatch)
    assert len(got["conn"]) == 20_000 and len(got["dns"]) == 5_000


@pytest.mark.parametrize("bad", ['{"event_type": "flow", "src_port": "80"}', "not json", "[1, 2]",
                                 '{"no": "event type"}', "   ", '{"event_type": "flow", "flow_id": 1e30}',
                                 '{"event_type": "flow", "dest_port": 99999999999}'])
def test_a_bad_line_sends_its_block_only_event_by_event(tmp_path, monkeypatch, bad):
    monkeypatch.setattr(jsonlines, "BLOCK_SIZE", 2000)  # several blocks
    lines = variety() * 3
    lines.insert(20, bad)
    path = write(tmp_path / "eve.json", lines)
    got = same(path, monkeypatch)
    assert len(got["conn"]) >= 3 * len(FLOWS)
    slow = {"events": 0}
    real = eve._block_events

    def counting(block, p, log):
        for e in real(block, p, log):
            slow["events"] += 1
            yield e

    monkeypatch.setattr(eve, "_block_events", counting)
    read(path, "duckdb", monkeypatch)
    assert slow["events"] < len(lines) / 2  # only the bad line's block went event by event


def test_a_small_file_skips_duckdb_and_a_large_one_uses_it(tmp_path, monkeypatch):
    """Below ``SMALL_FILE`` a DuckDB connection costs more than the parse (~25 ms a file against
    ~1 ms): small files take the blocks of lines from the start; larger ones DuckDB."""
    calls = []
    real = columnar.duckdb_batches

    def counted(path, gzip):
        calls.append(path)
        yield from real(path, gzip)

    monkeypatch.setattr(columnar, "duckdb_batches", counted)
    small = tmp_path / "small.json"
    small.write_text("".join(json.dumps(e) + "\n" for e in variety()))
    assert small.stat().st_size < jsonlines.SMALL_FILE
    rows = sum(len(c) for t, c in eve.read(str(small), IngestLog()) if t == "conn")
    assert calls == [] and rows == len(read(small, "events", monkeypatch)[0]["conn"]) > 0
    big = tmp_path / "big.json"
    with big.open("w") as f:
        while f.tell() < jsonlines.SMALL_FILE:
            f.write(json.dumps(ev("flow", f.tell() % 997, flow={"pkts_toserver": 1, "pkts_toclient": 1,
                                                              "state": "closed"})) + "\n")
    log = IngestLog()
    rows = sum(len(c) for t, c in eve.read(str(big), log) if t == "conn")
    assert calls == [str(big)] and rows == big.read_text().count("\n")


def dns_variety() -> list:
    """DNS in every layout and every way a transaction can go: answered, unanswered,
    answered without its request, answered record by record (v1), asked again under the
    same id, without a flow id (matched by endpoints, either direction), odd values."""
    q = lambda i, **d: ev("dns", i, "UDP", dns={"type": "query", "id": i, "rrname": f"q{i}.example",  # noqa: E731
                                              "rrtype": "A", **d})
    a = lambda i, **d: ev("dns", i, "UDP", dns={"version": 2, "type": "answer", "id": i, "rcode": "NOERROR",  # noqa: E731
                                              "rrname": f"q{i}.example", "rrtype": "A", **d})
    out = [q(1), a(1, answers=[{"rdata": "192.0.2.1"}, {"rrname": "x"}, {"rdata": "c.example"}]),
           q(2), a(2, answers=[], grouped={"CNAME": ["c2.example"], "A": ["192.0.2.2", None], "MX": None}),
           q(3),  # never answered
           a(4, answers=[{"rdata": "192.0.2.4"}]),  # answered without its request
           q(5), *[a(5, answers=None, rdata=f"192.0.2.{k}") for k in range(3)],  # v1, record by record
           a(5, rcode="SERVFAIL"),
           q(6), q(6, rrname="again.example"), a(6, answers=[{"rdata": "192.0.2.6"}]),  # asked again
           ev("dns", 7, "UDP", dns={"version": 3, "type": "request", "id": 7,
                                    "queries": [{"rrname": "v3.example", "rrtype": "AAAA"}, None,
                                                {"rrname": "v3b.example", "rrtype": "A"}]}),
           ev("dns", 7, "UDP", dns={"version": 3, "type": "response", "id": 7, "rcode": "NOERROR",
                                    "queries": [], "answers": [{"rdata": "2001:db8::7"}]}),
           ev("dns", 8, "UDP", src_ip="192.0.2.80", src_port=53, dest_ip="10.0.0.8",  # v3: responder first
              dns={"version": 3, "type": "response", "id": 8, "rcode": "NXDOMAIN",
                   "queries": [{"rrname": "orphan3.example", "rrtype": "A"}]}),
           ev("dns", 9, "UDP", dns={"type": "query", "id": "9", "rrname": 12345, "rrtype": "TXT"}),
           ev("dns", 10, "UDP", dns=None), ev("dns", 11, "UDP", dns={"type": "other", "id": 11}),
           ev("dns", 12, "UDP", dns={"type": "query"})]
    for e in out:  # the server's port, as on the wire
        e["dest_port"] = 53 if e["dest_ip"] == "192.0.2.80" else 40008
    no_flow = {k: v for k, v in q(13).items() if k != "flow_id"} | {"dest_port": 53}
    back = {k: v for k, v in a(13).items() if k != "flow_id"}
    back.update(src_ip=no_flow["dest_ip"], src_port=53, dest_ip=no_flow["src_ip"], dest_port=no_flow["src_port"])
    orphan = a(14)
    orphan.update(src_ip=orphan["dest_ip"], src_port=53, dest_ip=orphan["src_ip"], dest_port=40014)
    return out + [no_flow, back, orphan]


def test_dns_in_columns_gives_the_event_by_event_rows(tmp_path, monkeypatch):
    got = same(write(tmp_path / "eve.json", dns_variety() * 2), monkeypatch)
    rows = {(r["query"], r["rcode_name"], tuple(r["answers"] or ())) for r in got["dns"]}
    assert ("q1.example", "NOERROR", ("192.0.2.1", "c.example")) in rows
    assert ("q2.example", "NOERROR", ("c2.example", "192.0.2.2")) in rows
    assert ("q3.example", None, ()) in rows  # the second copy's orphan answer joins the first's:
    assert ("q4.example", "NOERROR", ("192.0.2.4", "192.0.2.4")) in rows
    assert ("q5.example", "SERVFAIL", ("192.0.2.0", "192.0.2.1", "192.0.2.2")) in rows
    assert {("q6.example", None, ()), ("again.example", "NOERROR", ("192.0.2.6",))} <= rows
    assert {("v3.example", "NOERROR", ("2001:db8::7",)), ("v3b.example", "NOERROR", ("2001:db8::7",))} <= rows
    assert ("12345", None, ()) in rows
    assert ("q13.example", "NOERROR", ()) in rows and ("q13.example", None, ()) not in rows
    orphans = [r for r in got["dns"] if r["query"] in ("q14.example", "orphan3.example")]
    assert len(orphans) == 2 and all(r["orig_h"].startswith("10.0.0.") for r in orphans)


@pytest.mark.parametrize("odd", [{"rrname": True}, {"rrtype": 1.5}, {"rrname": {"x": 1}},
                                 {"answers": [{"rdata": 5}]}, {"id": 7.0}, {"grouped": {"A": [7]}},
                                 {"rcode": ["NOERROR"]}, {"queries": ["q"]}, {"grouped": {"A": "1.2.3.4"}}])
def test_dns_values_of_other_types_read_as_event_by_event(tmp_path, monkeypatch, odd):
    lines = dns_variety()
    body = dict(lines[1]["dns"], answers=None)
    lines.insert(2, dict(lines[1], dns={**body, **odd}))
    lines += [ev("stats", 90), dict(ev("alert", 91, alert={"signature_id": 1}), timestamp="2024-05-01T10:00:00")]
    same(write(tmp_path / "eve.json", lines), monkeypatch)  # notes too: counted once


def test_dns_read_by_duckdb_is_merged_in_columns_across_batches(tmp_path, monkeypatch):
    from zeekwatch.readers.eve import dns

    calls = []
    real = dns.event_values
    monkeypatch.setattr(dns, "event_values", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(columnar, "BATCH_ROWS", 7)  # requests and responses in different batches
    path = write(tmp_path / "eve.json", dns_variety() * 3)
    fast, _ = read(path, "duckdb", monkeypatch)
    assert calls == []
    slow, _ = read(path, "events", monkeypatch)
    assert calls and fast["dns"] == slow["dns"]




def test_duckdb_on_two_threads_keeps_event_order(tmp_path, monkeypatch):
    """A file over one of DuckDB's 16 MB buffers but under one batch of rows, read as shipped:
    DuckDB's parallel scan splits it (two batches or more), flows arrive in file order and
    every DNS request pairs with its response; with a bad line in the middle, the same rows
    but that flow, and the line rejected with its number."""
    def flow(i):
        return ev("flow", i, flow={"pkts_toserver": 1, "pkts_toclient": 1, "bytes_toserver": 60,
                                   "bytes_toclient": 60, "start": "2024-05-01T10:00:00.000000+0200",
                                   "end": "2024-05-01T10:00:01.000000+0200", "state": "closed"})

    def dns_pair(i):
        body = {"id": i % 65536, "rrname": f"h{i}.example", "rrtype": "A"}
        return [ev("dns", i, "UDP", dns={"type": "query", **body}),
                ev("dns", i, "UDP", dns={"version": 2, "type": "answer", "rcode": "NOERROR", **body,
                                         "answers": [{"rdata": "192.0.2.1"}]})]

    def read_back(path):
        log, parts = IngestLog(), {}
        for table, chunk in eve.read(path, log):
            parts.setdefault(table, []).append(chunk)
        conn, dns = pa.concat_tables(parts["conn"]), pa.concat_tables(parts["dns"])
        assert dns.num_rows == n and dns.column("answers").to_pylist() == [["192.0.2.1"]] * n
        return conn.column("uid").to_pylist(), [r.line for r in log.rejects]

    n = 25_000
    lines = []
    for i in range(n):
        lines += [flow(i)] + dns_pair(i)
    sizes = []
    real = columnar.duckdb_batches
    monkeypatch.setattr(columnar, "duckdb_batches",
                        lambda *a: (sizes.append(len(t)) or t for t in real(*a)))
    path = write(tmp_path / "eve.json", lines)
    assert (tmp_path / "eve.json").stat().st_size > 16 << 20 and 3 * n < columnar.BATCH_ROWS
    assert read_back(path) == ([str(1000 + i) for i in range(n)], [])
    assert len(sizes) >= 2 and sum(sizes) == 3 * n
    lines[3 * (n // 2)] = "{oops"  # the flow of pair n // 2
    assert read_back(write(tmp_path / "eve.json", lines)) == (
        [str(1000 + i) for i in range(n) if i != n // 2], [3 * (n // 2) + 1])
