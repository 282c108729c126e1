"""Community ID v1: the ids zeekwatch gives capture flows (``readers.flow_ids``) and computes for
Zeek records that lack one (``engine.community``, the ``communityid`` package) are tshark's."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from zeekwatch.engine import community
from zeekwatch.readers import plan, read_inputs
from zeekwatch.readers.base import IngestLog

PCAPS = ["zeek/traces/irc-basic.pcap", "ndpi/pcap/synscan.pcap", "zeek/traces/icmp_5-pings.pcap",
         "chrissanders-packets/icmp_echo.pcapng", "zeek/traces/ftp_bruteforce.pcap",
         "suricata-verify/dns-mx/dns-udp-google.com-a-aaaa-mx.pcap",
         "suricata-verify/bittorrent-dht/input.pcap", "ndpi/pcap/skype-conference-call.pcap",
         "zeek/traces/wikipedia.pcap"]


def tshark_ids(path: str) -> set[str]:
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed (make test installs it)")
    r = subprocess.run(["tshark", "-r", path, "--enable-protocol", "communityid", "-T", "fields",
                        "-e", "communityid"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return {x for x in r.stdout.split() if x.startswith("1:")}


def conn_rows(path: str) -> list[dict]:
    log = IngestLog()
    rows = []
    for table, chunk in read_inputs(plan([path], log), log):
        if table == "conn":
            rows += chunk.select(["community_id", "orig_h", "orig_p", "resp_h", "resp_p",
                                  "proto"]).to_pylist()
    return rows


@pytest.mark.shared
@pytest.mark.parametrize("rel", PCAPS)
def test_capture_flow_ids_equal_tshark(rel):
    path = shared_file(rel)
    expected = tshark_ids(path)
    rows = conn_rows(path)
    assert rows and expected
    ours = {r["community_id"] for r in rows}
    computed = {community.compute(r["proto"], r["orig_h"], r["orig_p"], r["resp_h"], r["resp_p"])
                for r in rows}
    assert ours == expected  # the pcap reader's own ids
    assert computed == expected  # the package, from the flow's 5-tuple as Zeek logs it


def test_compute_refuses_what_is_not_an_ip_flow():
    assert community.compute("tcp", "10.0.0.1", 1, "10.0.0.2", None) is None
    assert community.compute("gre", "10.0.0.1", 0, "10.0.0.2", 0) is None
    assert community.compute("tcp", "not-an-ip", 1, "10.0.0.2", 2) is None
    # spec example (community-id-spec baseline): tcp 128.232.110.120:34855 -> 66.35.250.204:80
    assert community.compute("tcp", "128.232.110.120", 34855, "66.35.250.204", 80) == \
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    # both directions of a flow have one id (ICMP echo request and reply too)
    assert community.compute("icmp", "192.168.0.89", 8, "192.168.0.1", 0) == \
        community.compute("icmp", "192.168.0.1", 0, "192.168.0.89", 0)


def _reference(proto, oh, op, rh, rp):
    import communityid

    number = {"tcp": communityid.PROTO_TCP, "udp": communityid.PROTO_UDP,
              "sctp": communityid.PROTO_SCTP}[proto]
    try:
        return communityid.CommunityID().calc(communityid.FlowTuple(number, oh, rh, op, rp))
    except communityid.Error:
        return None


addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
    st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", "fe80::1", "255.255.255.255", "0.0.0.0"]))
ports = st.one_of(st.integers(0, 65535), st.sampled_from([0, 53, 80, 443, 65535]))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["tcp", "udp", "sctp"]), addresses, ports, addresses, ports)
def test_fast_path_equals_the_reference_package(proto, oh, op, rh, rp):
    """TCP/UDP/SCTP ids are computed by zeekwatch's own hash of the packed tuple (the package
    re-parses every address several times: ~50x slower); both give the same id for every
    tuple, both directions, v4 and v6, equal addresses with ordered and unordered ports."""
    if (":" in oh) != (":" in rh):
        assert community.compute(proto, oh, op, rh, rp) is None
        return
    assert community.compute(proto, oh, op, rh, rp) == _reference(proto, oh, op, rh, rp)
    assert community.compute(proto, oh, op, oh, rp) == _reference(proto, oh, op, oh, rp)
    assert community.compute(proto, rh, rp, oh, op) == community.compute(proto, oh, op, rh, rp)


def test_fast_path_refuses_bad_values():
    assert community.compute("udp", "10.0.0.1", 70000, "10.0.0.2", 53) is None
    assert community.compute("udp", "10.0.0.1", -1, "10.0.0.2", 53) is None
    assert community.compute("tcp", "10.0.0.1", 1, "::1", 2) is None
    assert community.compute("TCP", "10.0.0.1%eth0", 1, "10.0.0.2", 2) is None
    assert community.compute("TCP", "128.232.110.120", "34855", "66.35.250.204", "80") == \
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


# -- attach: DuckDB set-wise path == the row-by-row path ---------------------------------------
def _attach_both(conn_rows, alert_rows, uid_lists):
    import duckdb
    import pyarrow as pa

    from zeekwatch import schema
    from zeekwatch.finding import Finding

    con = duckdb.connect()
    for name, rows in (("conn", conn_rows), ("alert", alert_rows)):
        sch = schema.TABLES[name]
        con.register(name, pa.Table.from_pylist(
            [{k: r.get(k) for k in sch.names} for r in rows], schema=sch))
    out = []
    for attach in (community._attach_rows, community._attach_duckdb):
        cands = [Finding(detector="d", threat="t", title="", host="h", first_seen="x",
                         last_seen="x", uids=list(u)) for u in uid_lists]
        attach(con, cands)
        out.append([c.community_ids for c in cands])
    return out


flow_addresses = st.one_of(addresses, st.sampled_from(["", "not-an-ip", "10.0.0.1%eth0",
                                                       "1.2.3"]), st.none())
flow_rows = st.fixed_dictionaries({
    "proto": st.one_of(st.sampled_from(["tcp", "udp", "sctp", "icmp", "TCP", "Udp", "gre", ""]),
                       st.none()),
    "orig_h": flow_addresses, "resp_h": flow_addresses,
    "orig_p": st.one_of(ports, st.sampled_from([70000, -1, 8, 0, 128]), st.none()),
    "resp_p": st.one_of(ports, st.sampled_from([70000, -1, 0, 129]), st.none()),
    "community_id": st.sampled_from([None, None, None, "", "1:given="]),
})


@settings(max_examples=150, deadline=None)
@given(st.lists(flow_rows, max_size=12), st.lists(flow_rows, max_size=4),
       st.lists(st.lists(st.sampled_from([f"C{i}" for i in range(14)] + ["7", "8", "1:abc=",
                                                                         "missing"]),
                         max_size=6), max_size=5))
def test_attach_set_wise_equals_row_by_row(conn_rows, alert_rows, uid_lists):
    """The DuckDB path (TCP/UDP/SCTP hashed in SQL, candidates' ids gathered by a GROUP BY)
    gives every candidate the ids the row-by-row path gives: sensor ids, computed ones,
    ICMP through the package, refused tuples, ids_alert's community-id uids, unknown uids."""
    for i, r in enumerate(conn_rows):
        r["uid"] = f"C{i}"
        r["ts"] = None
    for i, r in enumerate(alert_rows):
        r["flow_id"] = 7 + i
    rows, duck = _attach_both(conn_rows, alert_rows, uid_lists)
    assert rows == duck


def test_attach_set_wise_known_ids():
    conn = [{"uid": "C1", "proto": "tcp", "orig_h": "128.232.110.120", "orig_p": 34855,
             "resp_h": "66.35.250.204", "resp_p": 80},
            {"uid": "C2", "proto": "icmp", "orig_h": "192.168.0.89", "orig_p": 8,
             "resp_h": "192.168.0.1", "resp_p": 0, "community_id": None},
            {"uid": "C3", "proto": "udp", "orig_h": "10.0.0.1", "orig_p": 1,
             "resp_h": "10.0.0.2", "resp_p": 2, "community_id": "1:sensor="}]
    rows, duck = _attach_both(conn, [], [["C1", "C2"], ["C3", "1:x="], [], ["nope"]])
    assert duck == rows
    assert duck[0] == sorted(["1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
                              community.compute("icmp", "192.168.0.89", 8, "192.168.0.1", 0)])
    assert duck[1] == ["1:sensor=", "1:x="] and duck[2] == [] and duck[3] == []


icmp_addresses = st.one_of(addresses, st.sampled_from(["fe80::1%eth0", "1.2.3", "", "x"]))
icmp_numbers = st.one_of(st.integers(0, 300), st.sampled_from([0, 8, 9, 10, 13, 14, 128, 129,
                                                              139, 140, 144, 145, 65535,
                                                              65536, -1]))


@settings(max_examples=600, deadline=None)
@given(icmp_addresses, icmp_numbers, icmp_addresses, icmp_numbers)
def test_icmp_equals_the_package(oh, mtype, rh, mcode):
    """ICMP ids computed with the package's type pairings but without the package's tuple
    objects are the package's: v4 and v6, paired and one-way types, equal addresses, mixed
    families, out-of-range numbers and unparsable addresses."""
    assert community.compute("icmp", oh, mtype, rh, mcode) == \
        community.package_icmp(oh, mtype, rh, mcode)
    assert community.compute("icmp", oh, mtype, oh, mcode) == \
        community.package_icmp(oh, mtype, oh, mcode)
    assert community.compute("ICMP", rh, mcode, oh, mtype) == \
        community.package_icmp(rh, mcode, oh, mtype)
