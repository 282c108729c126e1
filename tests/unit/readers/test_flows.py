"""Flows from packets (readers/flows.py, pcap_decode.py, flow_ids.py, pcap_dns.py): Zeek's
conn_state and history, timeouts, ICMP pairing, link layers, ids, DNS decoding."""

from __future__ import annotations

import pytest
from conftest import PCAPS, shared_file
from pcap_helpers import (
    CLIENT,
    SERVER,
    T0,
    c2s,
    conn_rows,
    eth,
    read_tables,
    s2c,
    timed,
    udp,
    write,
)
from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
from scapy.layers.ppp import PPP, PPPoE
from scapy.utils import rdpcap

from zeekwatch.readers.flow_ids import community_id
from zeekwatch.readers.pcap import dns as pcap_dns
from zeekwatch.readers.pcap.capture import open_capture
from zeekwatch.readers.pcap.decode import Decoder
from zeekwatch.readers.pcap.flows import FlowTable

DATA = b"hello"

# (name, packets, conn_state, history): Zeek's meaning, one case per state
TCP_CASES = [
    ("attempt", [c2s("S")], "S0", "S"),
    ("attempt with retries", [c2s("S"), c2s("S"), c2s("S")], "S0", "S"),
    ("refused", [c2s("S"), s2c("RA")], "REJ", "Sr"),
    ("open port, scanner resets", [c2s("S"), s2c("SA"), c2s("R")], "RSTO", "ShR"),
    ("syn then own reset", [c2s("S"), c2s("R")], "RSTOS0", "SR"),
    ("syn then fin", [c2s("S"), c2s("F")], "SH", "SF"),
    ("established", [c2s("S"), s2c("SA"), c2s("A"), c2s("PA", DATA)], "S1", "ShAD"),
    ("normal", [c2s("S"), s2c("SA"), c2s("A"), c2s("PA", DATA), s2c("A"), s2c("PA", DATA),
                c2s("FA"), s2c("FA"), c2s("A")], "SF", "ShADadFf"),
    ("responder resets", [c2s("S"), s2c("SA"), c2s("A"), c2s("PA", DATA), s2c("R")], "RSTR", "ShADr"),
    ("originator closes only", [c2s("S"), s2c("SA"), c2s("A"), c2s("FA")], "S2", "ShAF"),
    ("midstream", [c2s("PA", DATA), s2c("PA", DATA)], "OTH", "Dd"),
    ("syn-ack only, then fin", [s2c("SA"), s2c("FA")], "SHR", "^hf"),
    ("syn-ack only, then reset", [s2c("SA"), s2c("R")], "RSTRH", "^hr"),
]


@pytest.mark.parametrize("name,packets,state,history", TCP_CASES, ids=[c[0] for c in TCP_CASES])
def test_tcp_conn_state_and_history_follow_zeek(tmp_path, name, packets, state, history):
    rows = conn_rows(write(tmp_path / "c.pcap", timed(packets)))
    assert len(rows) == 1
    row = rows[0]
    assert (row["conn_state"], row["history"]) == (state, history)
    assert (row["orig_h"], row["orig_p"], row["resp_h"], row["resp_p"]) == (CLIENT, 40000, SERVER, 80)
    assert row["orig_pkts"] + row["resp_pkts"] == len(packets)


def test_single_packet_flow_has_unset_duration_and_bytes(tmp_path):
    row = conn_rows(write(tmp_path / "c.pcap", timed([c2s("S")])))[0]
    assert row["duration"] is None and row["orig_bytes"] is None and row["resp_bytes"] is None
    assert row["orig_pkts"] == 1 and row["resp_pkts"] == 0


def test_payload_bytes_per_direction(tmp_path):
    packets = [c2s("S"), s2c("SA"), c2s("A"), c2s("PA", b"x" * 100), s2c("PA", b"y" * 1000), c2s("FA"), s2c("FA")]
    row = conn_rows(write(tmp_path / "c.pcap", timed(packets)))[0]
    assert (row["orig_bytes"], row["resp_bytes"]) == (100, 1000)
    assert row["duration"] == pytest.approx(0.06)


def test_syn_after_a_refused_attempt_is_a_new_connection(tmp_path):
    rows = conn_rows(write(tmp_path / "c.pcap", timed([c2s("S"), s2c("RA"), c2s("S"), s2c("RA")], step=0.5)))
    assert [r["conn_state"] for r in rows] == ["REJ", "REJ"]
    assert len({r["uid"] for r in rows}) == 2


@pytest.mark.parametrize("gap,flows", [(59.0, 1), (61.0, 2)])
def test_udp_idle_timeout_splits_flows(tmp_path, gap, flows):
    packets = [(T0, udp(CLIENT, SERVER, 5000, 9999)), (T0 + gap, udp(CLIENT, SERVER, 5000, 9999))]
    assert len(conn_rows(write(tmp_path / "u.pcap", packets))) == flows


@pytest.mark.parametrize("gap,flows", [(299.0, 1), (301.0, 2)])
def test_tcp_idle_timeout_splits_flows(tmp_path, gap, flows):
    packets = [(T0, c2s("S")), (T0 + 0.01, s2c("SA")), (T0 + 0.02, c2s("A")),
               (T0 + 0.02 + gap, c2s("PA", DATA))]
    assert len(conn_rows(write(tmp_path / "t.pcap", packets))) == flows


def test_udp_states_and_history(tmp_path):
    packets = [udp(CLIENT, SERVER, 5000, 9999), udp(SERVER, CLIENT, 9999, 5000), udp(CLIENT, SERVER, 5001, 9999)]
    rows = sorted(conn_rows(write(tmp_path / "u.pcap", timed(packets))), key=lambda r: r["orig_p"])
    assert [(r["conn_state"], r["history"]) for r in rows] == [("SF", "Dd"), ("S0", "D")]


def test_udp_reply_first_from_a_server_port_flips_roles(tmp_path):
    rows = conn_rows(write(tmp_path / "u.pcap", timed([udp(SERVER, CLIENT, 53, 40000, b"\x00" * 12)])))
    assert (rows[0]["orig_h"], rows[0]["resp_p"], rows[0]["history"]) == (CLIENT, 53, "^d")


def test_icmp_echo_request_and_reply_are_one_flow(tmp_path):
    packets = [eth(IP(src=CLIENT, dst=SERVER) / ICMP(type=8, id=1, seq=1) / (b"x" * 56)),
               eth(IP(src=SERVER, dst=CLIENT) / ICMP(type=0, id=1, seq=1) / (b"x" * 56))]
    rows = conn_rows(write(tmp_path / "i.pcap", timed(packets)))
    assert len(rows) == 1
    row = rows[0]
    assert (row["proto"], row["orig_h"], row["orig_p"], row["resp_p"], row["conn_state"]) == ("icmp", CLIENT, 8, 0, "OTH")
    assert (row["orig_pkts"], row["resp_pkts"], row["orig_bytes"]) == (1, 1, 56)


def test_icmp_reply_seen_first_makes_the_requester_the_originator(tmp_path):
    packets = [eth(IP(src=SERVER, dst=CLIENT) / ICMP(type=0)), eth(IP(src=CLIENT, dst=SERVER) / ICMP(type=8))]
    rows = conn_rows(write(tmp_path / "i.pcap", timed(packets)))
    assert [(r["orig_h"], r["orig_p"], r["orig_pkts"], r["resp_pkts"]) for r in rows] == [(CLIENT, 8, 1, 1)]


def test_icmpv6_echo_uses_zeek_ports(tmp_path):
    a, b = "2001:db8::1", "2001:db8::2"
    packets = [eth(IPv6(src=a, dst=b) / ICMPv6EchoRequest()), eth(IPv6(src=b, dst=a) / ICMPv6EchoReply())]
    rows = conn_rows(write(tmp_path / "i6.pcap", timed(packets)))
    assert [(r["orig_h"], r["orig_p"], r["resp_p"], r["resp_pkts"]) for r in rows] == [(a, 128, 129, 1)]


def _one_udp_row(tmp_path, frame, linktype):
    rows = conn_rows(write(tmp_path / "l.pcap", [(T0, frame)], linktype=linktype))
    assert len(rows) == 1, rows
    return rows[0]


IP_UDP = IP(src=CLIENT, dst=SERVER) / UDP(sport=1234, dport=4321) / b"abc"
LINK_CASES = [
    ("802.1Q", Ether() / Dot1Q(vlan=7) / IP_UDP, 1),
    ("QinQ", Ether() / Dot1AD(vlan=5) / Dot1Q(vlan=7) / IP_UDP, 1),
    ("PPPoE", Ether() / PPPoE(sessionid=1) / PPP(proto=0x21) / IP_UDP, 1),
    ("Linux SLL", CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, proto=0x0800) / IP_UDP, 113),
    ("Linux SLL2", CookedLinuxV2(proto=0x0800) / IP_UDP, 276),
    ("raw IP", IP_UDP, 101),
    ("BSD loopback", Loopback(type=2) / IP_UDP, 0),
]


@pytest.mark.parametrize("name,frame,linktype", LINK_CASES, ids=[c[0] for c in LINK_CASES])
def test_link_layers(tmp_path, name, frame, linktype):
    row = _one_udp_row(tmp_path, bytes(frame), linktype)
    assert (row["orig_h"], row["orig_p"], row["resp_h"], row["resp_p"], row["orig_bytes"]) == (CLIENT, 1234, SERVER, 4321, None)
    assert row["orig_pkts"] == 1


def test_ipv6_extension_headers_are_skipped(tmp_path):
    frame = eth(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(offset=0, m=0)
                / TCP(sport=5555, dport=443, flags="S"))
    row = conn_rows(write(tmp_path / "x.pcap", [(T0, frame)]))[0]
    assert (row["proto"], row["orig_p"], row["resp_p"], row["history"]) == ("tcp", 5555, 443, "S")


def test_ipv4_options_and_later_fragments(tmp_path):
    with_options = eth(IP(src=CLIENT, dst=SERVER, options=[b"\x01\x01\x01\x00"]) / UDP(sport=2000, dport=3000) / b"z")
    later_fragment = eth(IP(src=CLIENT, dst=SERVER, frag=100, proto=17) / (b"\x00" * 40))
    tables, log = read_tables(write(tmp_path / "f.pcap", timed([with_options, later_fragment])))
    rows = tables["conn"].to_pylist()
    assert [(r["orig_p"], r["resp_p"]) for r in rows] == [(2000, 3000)]
    assert any("1 IP fragments after the first" in n for n in log.notes)


def test_non_ip_frames_are_counted_in_a_note(tmp_path):
    arp = Ether(type=0x0806) / (b"\x00" * 28)
    tables, log = read_tables(write(tmp_path / "arp.pcap", timed([arp, c2s("S")])))
    assert tables["conn"].num_rows == 1
    assert log.reject_count == 0
    assert any("2 packets; not in flows: 1 non-IP frames" in n for n in log.notes)


def test_headers_cut_by_the_snap_length_are_rejects_with_their_packet_number(tmp_path):
    short = bytes(c2s("S"))[:30]
    tables, log = read_tables(write(tmp_path / "s.pcap", timed([c2s("S"), short])))
    assert tables["conn"].num_rows == 1
    assert [(r.line, "too short" in r.reason) for r in log.rejects] == [(2, True)]


@pytest.mark.slow
def test_memory_follows_active_flows_not_file_size(tmp_path):
    """100,000 one-packet UDP flows over 1,000 s of capture: never more than ~a minute of them."""
    from pcap_helpers import make_pcaps_module

    mk = make_pcaps_module()
    path = tmp_path / "many.pcap"
    with open(path, "wb") as out:
        out.write(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
        for k in range(100_000):
            src = bytes((10, 7, k // 256 % 256, k % 256))
            l4 = (1024 + k % 60000).to_bytes(2, "big") + b"\x00\x35\x00\x09\x00\x00x"
            frame = b"\x02" * 12 + b"\x08\x00" + mk._ip(src, bytes((192, 0, 2, 1)), 17, l4, k)
            us = k * 10_000
            out.write((us // 1_000_000 + 1_700_000_000).to_bytes(4, "little") + (us % 1_000_000).to_bytes(4, "little")
                      + len(frame).to_bytes(4, "little") * 2 + frame)
    flows, peak, finished = FlowTable(), 0, 0
    decoder = Decoder(flows)
    with open_capture(str(path)) as capture:
        for linktype, stamps, packets in capture.batches():
            decoder.run(linktype, stamps, packets)
            flows.sweep(stamps[-1], len(packets))
            peak = max(peak, flows.active())
            finished += len(flows.rows["conn"])
            flows.rows["conn"].clear()
    flows.close_all()
    assert finished + len(flows.rows["conn"]) == 100_000
    assert peak < 10_000  # 60 s idle timeout at 100 flows/s, plus sweep slack


# -- ids ----------------------------------------------------------------------------------------

def _packed(addr: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(addr).packed


# corelight/community-id-spec reference values
COMMUNITY_IDS = [
    ("tcp", "128.232.110.120", 34855, "66.35.250.204", 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    ("tcp", "66.35.250.204", 80, "128.232.110.120", 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    ("udp", "192.168.1.52", 54585, "8.8.8.8", 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    ("tcp", "2001:470:e5bf:dead:4957:2174:e82c:4887", 63943, "2607:f8b0:400c:c03::1a", 25,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    ("icmp", "192.168.0.89", 8, "192.168.0.1", 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    ("icmp", "3ffe:507:0:1:200:86ff:fe05:80da", 128, "3ffe:501:0:1001::2", 129, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="),
    ("icmp", "fe80::260:97ff:fe07:69ea", 134, "ff02::1", 133, "1:pkvHqCL88/tg1k4cPigmZXUtL00="),
]


@pytest.mark.parametrize("proto,src,sport,dst,dport,expected", COMMUNITY_IDS)
def test_community_id_matches_the_spec(proto, src, sport, dst, dport, expected):
    assert community_id(proto, _packed(src), _packed(dst), sport, dport) == expected


def test_uid_is_stable_and_zeek_shaped(tmp_path):
    path = write(tmp_path / "c.pcap", timed([c2s("S"), s2c("SA")]))
    first, second = conn_rows(path)[0]["uid"], conn_rows(path)[0]["uid"]
    assert first == second and first.startswith("C") and len(first) == 18


# -- DNS ----------------------------------------------------------------------------------------

def _dns_payloads(path: str) -> list[bytes]:
    out = []
    for pkt in rdpcap(path):
        if UDP in pkt and 53 in (pkt[UDP].sport, pkt[UDP].dport) and DNS in pkt:
            out.append(bytes(pkt[UDP].payload))
    return out


@pytest.mark.parametrize("rel", ["suricata-verify/dns-mx/dns-udp-google.com-a-aaaa-mx.pcap",
                                 "chrissanders-packets/dns_lab.pcapng", "zeek/traces/wikipedia.pcap",
                                 "zeek/traces/var-services-std-ports.pcap"])
def test_struct_dns_decoder_agrees_with_scapy(rel):
    payloads = _dns_payloads(shared_file(rel))
    assert payloads
    for payload in payloads:
        assert pcap_dns._parse(payload) == pcap_dns.parse_scapy(payload)


def test_struct_dns_decoder_agrees_with_scapy_on_the_scenarios():
    for name in ("mass_mailer.pcap", "office.pcap"):
        for payload in _dns_payloads(str(PCAPS / name)):
            assert pcap_dns._parse(payload) == pcap_dns.parse_scapy(payload)


def test_dns_decoder_survives_garbage_and_loops():
    loop = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c"  # pointer to itself
    assert pcap_dns.parse(loop) is None or pcap_dns.parse(loop)[2] is None
    for junk in (b"", b"\x00" * 5, bytes(range(256)), b"\xff" * 40):
        pcap_dns.parse(junk)  # no exception


def test_dns_rows_pair_queries_and_answers(tmp_path):
    q = DNS(id=77, rd=1, qd=[__import__("scapy.layers.dns", fromlist=["DNSQR"]).DNSQR(qname="x.example", qtype="MX")])
    r = DNS(id=77, qr=1, rcode=3, qd=q.qd)
    unanswered = DNS(id=78, rd=1, qd=q.qd)
    packets = [udp(CLIENT, SERVER, 3333, 53, bytes(q)), udp(SERVER, CLIENT, 53, 3333, bytes(r)),
               udp(CLIENT, SERVER, 3333, 53, bytes(unanswered))]
    tables, _ = read_tables(write(tmp_path / "d.pcap", timed(packets)))
    rows = sorted(tables["dns"].to_pylist(), key=lambda r: r["rcode_name"] or "")
    assert [(r["query"], r["qtype_name"], r["rcode_name"]) for r in rows] == [
        ("x.example", "MX", None), ("x.example", "MX", "NXDOMAIN")]
    conn = tables["conn"].to_pylist()[0]
    assert conn["service"] == "dns" and {r["uid"] for r in rows} == {conn["uid"]}


def test_non_dns_traffic_on_a_dns_port_stops_being_parsed(tmp_path):
    packets = [udp(CLIENT, SERVER, 4444, 53, b"\xff" * 30) for _ in range(20)]
    tables, log = read_tables(write(tmp_path / "t.pcap", timed(packets)))
    assert "dns" not in tables and log.reject_count == 0
    assert tables["conn"].to_pylist()[0]["service"] is None
