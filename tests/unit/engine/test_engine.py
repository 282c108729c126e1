"""The engine's storage and the enriched conn rows (zeekwatch/enrich.py)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from helpers import conn, table

from zeekwatch.config import Config, from_dict
from zeekwatch.engine.core import Engine

CFG = {"networks": {"internal": ["10.0.0.0/8", "fd00::/8"], "mail_servers": ["10.0.0.25"],
                    "dns_servers": ["10.0.0.53", "fd00::53"], "vpn": ["10.9.0.0/16"],
                    "vpn_gateways": ["198.51.100.1"]}}


def enriched(rows, config=None, **engine_args) -> list[dict]:
    eng = Engine(from_dict(config or CFG), **engine_args)
    try:
        eng.load("conn", table("conn", rows))
        return eng.con.sql("SELECT * FROM cx ORDER BY rid").to_arrow_table().to_pylist()
    finally:
        eng.close()


def row(**kw):
    base = dict(ts=1000.0, uid="C1", orig_h="10.0.0.5", orig_p=40000, resp_h="203.0.113.7",
                resp_p=443, proto="tcp")
    base.update(kw)
    return base


# (conn_state, history, proto, resp_bytes, resp_pkts) -> failed, established, initiated, answered
FLAG_CASES = [
    (("S0", "S", "tcp", 0, 0), (True, False, True, False)),
    (("REJ", "Sr", "tcp", 0, 0), (True, False, True, False)),
    (("SH", "SF", "tcp", 0, 0), (True, False, True, False)),
    (("RSTOS0", "SR", "tcp", 0, 0), (True, False, True, False)),
    (("SF", "ShADadFf", "tcp", 10, 3), (False, True, True, True)),
    (("S1", "ShAD", "tcp", 0, 1), (False, True, True, True)),
    (("RSTR", "ShADr", "tcp", 5, 2), (False, True, True, True)),
    (("OTH", "D", "tcp", 5, 2), (False, False, False, False)),  # mid-stream pickup
    (("SHR", "Hr", "tcp", 0, 1), (False, False, False, False)),  # backscatter
    (("RSTRH", "Hr", "tcp", 0, 1), (False, False, False, False)),
    (("S3", "Dh", "tcp", 5, 1), (False, True, False, True)),  # answered, no SYN seen
    # no state (other sensors): established by a reply, failed unknown (NULL)
    ((None, None, "tcp", 10, 2), (None, True, True, False)),
    ((None, None, "tcp", 0, 2), (None, False, True, False)),
    ((None, None, "udp", 0, 2), (None, True, True, False)),
    ((None, None, "udp", None, None), (None, False, True, False)),
    ((None, "Sh", "tcp", None, None), (None, True, True, True)),
    # UDP: a state but the history rules are TCP's
    (("SF", "Dd", "udp", 30, 1), (False, True, True, True)),
    (("S0", "D", "udp", 0, 0), (True, False, True, False)),
]


@pytest.mark.parametrize("case,want", FLAG_CASES)
def test_connection_flags(case, want):
    state, history, proto, rb, rp = case
    got = enriched([row(conn_state=state, history=history, proto=proto, resp_bytes=rb, resp_pkts=rp)])[0]
    assert (got["failed"], got["established"], got["initiated"], got["answered"]) == want


# outbound: internal originator, TCP/UDP with a port, external non-special responder, initiated
OUTBOUND_CASES = [
    (row(), True),
    (row(proto="udp", resp_p=53), True),
    (row(resp_h="2001:db8::7"), True),
    (row(orig_h="203.0.113.9", resp_h="10.0.0.5"), False),  # inbound
    (row(resp_h="10.0.0.9"), False),  # internal peer
    (row(resp_h="224.0.0.251", proto="udp"), False),  # special
    (row(resp_h="ff02::fb", proto="udp"), False),
    (row(proto="icmp", resp_p=0), False),
    (row(resp_p=None), False),
    (row(resp_h=None), False),
    (row(orig_h=None), False),
    (row(conn_state="SHR", history="Hr"), False),  # backscatter: not initiated
]


@pytest.mark.parametrize("case,want", OUTBOUND_CASES)
def test_outbound_flag(case, want):
    assert enriched([case])[0]["outbound"] is want


def test_address_classes_ids_and_special_addresses():
    rows = [row(orig_h="10.0.0.25", resp_h="224.0.0.251"),  # mail server -> multicast
            row(orig_h="10.9.1.1", resp_h="10.0.0.53"),  # VPN client -> DNS server
            row(orig_h="fd00::5", resp_h="fd00::53"),
            row(orig_h="10.0.0.5", resp_h="198.51.100.1"),  # to the VPN gateway
            row(orig_h="10.0.0.5", resp_h="ff02::fb"),
            row(orig_h="10.0.0.5", resp_h="fe80::1"),
            row(orig_h="10.0.0.5", resp_h="255.255.255.255"),
            row(orig_h="10.0.0.5", resp_h="127.0.0.1"),
            row(orig_h="10.0.0.5", resp_h="169.254.1.1"),
            row(orig_h="10.0.0.5", resp_h="8.8.8.8"),
            row(orig_h="not-an-address", resp_h=None),
            row(orig_h="10.0.0.5", resp_h="300.1.1.1")]  # dotted, but no IPv4 address
    got = enriched(rows)
    pick = [(r["orig_internal"], r["orig_mail"], r["orig_vpn"], r["resp_internal"], r["resp_dns"],
             r["resp_vpngw"], r["resp_special"]) for r in got]
    assert pick == [
        (True, True, False, False, False, False, True),
        (True, False, True, True, True, False, False),
        (True, False, False, True, True, False, False),
        (True, False, False, False, False, True, False),
        (True, False, False, False, False, False, True),
        (True, False, False, False, False, False, True),
        (True, False, False, False, False, False, True),
        (True, False, False, False, False, False, True),
        (True, False, False, False, False, False, True),
        (True, False, False, False, False, False, False),
        (False, False, False, False, False, False, False),
        (True, False, False, False, False, False, False),
    ]
    # one id per distinct address, the same in every row; NULL for NULL
    ids = {}
    for r in got:
        for side in ("orig", "resp"):
            a, i = r[f"{side}_h"], r[f"{side}_id"]
            assert (a is None) == (i is None)
            if a is not None:
                assert ids.setdefault(a, i) == i
    assert len(set(ids.values())) == len(ids)
    assert [r["rid"] for r in got] == list(range(len(rows)))
    assert got[0]["t"] == 1000.0


def test_enrichment_is_the_same_in_memory_in_the_scratch_file_and_in_follow_mode():
    rows = [conn(1000 + i, f"10.0.{i % 3}.{i % 7}", f"203.0.{i % 5}.{i % 11}", 20 + i % 40,
                 conn_state=["S0", "SF", "REJ", "OTH", "SH"][i % 5], uid=f"C{i}") for i in range(300)]
    memory = enriched(rows, table_bytes=0)
    scratch = enriched(rows)  # no size given: the scratch database file

    eng = Engine(from_dict(CFG), raw_conn=True)
    try:
        eng.con.register("rows", eng.enrich(table("conn", rows)))
        eng.con.execute("INSERT INTO conn SELECT * FROM rows")
        follow = eng.con.sql("SELECT * FROM cx ORDER BY rid").to_arrow_table().to_pylist()
    finally:
        eng.close()
    assert memory == scratch == follow
    assert len(memory) == 300


def test_findings_are_the_same_in_memory_and_in_the_scratch_file():
    # a horizontal scan, a vertical scan, SMTP to many servers and a C2 port, in one batch
    rows = [conn(1000 + i, "10.0.0.5", f"203.0.113.{i}", 445, conn_state="S0") for i in range(30)]
    rows += [conn(2000 + i, "10.0.0.6", "198.51.100.9", 1000 + i, conn_state="REJ") for i in range(30)]
    rows += [conn(3000 + i, "10.0.0.7", f"192.0.2.{i}", 25) for i in range(25)]
    rows += [conn(4000, "10.0.0.8", "198.51.100.66", 6667)]
    found = {}
    for mode, args in (("memory", {"table_bytes": 0}), ("file", {})):
        eng = Engine(Config(), **args)
        try:
            assert eng.in_memory == (mode == "memory")
            eng.load("conn", table("conn", rows))
            found[mode] = sorted((f.detector, f.host, f.key or "", f.observed, tuple(f.uids))
                                 for f in eng.detect())
        finally:
            eng.close()
    assert found["memory"] == found["file"]
    assert {d for d, *_ in found["memory"]} >= {"horizontal_scan", "vertical_scan", "mass_mailer", "c2_port"}


def test_chunks_loaded_in_pieces_keep_classes_and_ids_consistent():
    eng = Engine(from_dict(CFG), table_bytes=0)
    try:
        eng.load("conn", table("conn", [row(orig_h="10.0.0.5", resp_h="8.8.8.8")]))
        eng.load("conn", table("conn", [row(orig_h="8.8.8.8", resp_h="10.0.0.5"),
                                        row(orig_h="10.0.0.6", resp_h="fd00::1")]))
        got = eng.con.execute("SELECT orig_h, orig_id, orig_internal, resp_h, resp_id, resp_internal, rid "
                              "FROM cx ORDER BY rid").fetchall()
        addr = dict(eng.con.execute("SELECT a, id FROM zw_addr").fetchall())
    finally:
        eng.close()
    assert got[0][1] == got[1][4] == addr["10.0.0.5"] and got[0][4] == got[1][1] == addr["8.8.8.8"]
    assert [(r[2], r[5]) for r in got] == [(True, False), (False, True), (True, True)]
    assert [r[6] for r in got] == [0, 1, 2]
    assert pa.types.is_dictionary(eng._schema("conn").field("orig_h").type)


def test_address_book_forgets_addresses_but_never_reuses_an_id():
    eng = Engine(from_dict(CFG), table_bytes=0)
    try:
        book = eng.book
        book.add(pa.array(["10.0.0.1", "10.0.0.2", "8.8.8.8"]))
        ids = dict(eng.con.execute("SELECT a, id FROM zw_addr").fetchall())
        assert book.retain(pa.array(["10.0.0.2", "8.8.8.8"])) == 1
        assert len(book) == 2
        assert dict(eng.con.execute("SELECT a, id FROM zw_addr").fetchall()) == {
            "10.0.0.2": ids["10.0.0.2"], "8.8.8.8": ids["8.8.8.8"]}
        book.add(pa.array(["10.0.0.1", "10.0.0.3"]))  # seen again: a new id
        again = dict(eng.con.execute("SELECT a, id FROM zw_addr").fetchall())
        assert again["10.0.0.1"] not in ids.values() and len(set(again.values())) == 4
        got = book.lookup(pa.array(["8.8.8.8", "10.0.0.1", None]))
        assert got["id"].to_pylist() == [ids["8.8.8.8"], again["10.0.0.1"], None]
        assert got["internal"].to_pylist() == [False, True, False]
    finally:
        eng.close()


def test_follow_keeps_the_address_book_to_the_look_back(monkeypatch, tmp_path):
    from zeekwatch.app.follow import lookback

    monkeypatch.setattr(lookback, "BOOK_MIN", 10)
    lb = lookback.Lookback(from_dict(CFG), lookback=600, window=60)
    try:
        for k in range(6):  # every 10 minutes 20 new external addresses
            rows = [conn(1000 + 600 * k + i, "10.0.0.5", f"203.0.{k}.{i}", 443) for i in range(20)]
            lb.stage({"conn": table("conn", rows)})
            lb.evict()
        assert len(lb.engine.book) <= 2 * 20 + 1 + 20  # the look-back's, not all 121
        ids = lb.con.execute("SELECT resp_h, resp_id FROM conn").fetchall()
        addr = dict(lb.con.execute("SELECT a, id FROM zw_addr").fetchall())
        assert ids and all(addr[a] == i for a, i in ids)
    finally:
        lb.engine.close()


@pytest.mark.parametrize("storage, table_bytes, want", [
    ("auto", 10**6, True), ("auto", 10**10, False), ("auto", None, False),
    ("memory", 10**10, True), ("memory", None, True), ("file", 10**6, False),
])
def test_engine_storage_setting(storage, table_bytes, want):
    eng = Engine(from_dict({"engine": {"storage": storage, "memory_limit": "1GB"}}), table_bytes=table_bytes)
    try:
        assert eng.in_memory is want
        eng.load("conn", table("conn", [row()]))
        assert eng.count("conn") == 1
    finally:
        eng.close()

