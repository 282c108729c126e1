"""Bot/C2 detectors as data: c2_port, unusual_port, rare_destination, non_web_on_web_port."""

from __future__ import annotations

import json

import pytest
from conftest import shared_file
from helpers import conn, detect, detect_files

from zeekwatch.errors import ConfigError

BOT = ["c2_port", "unusual_port", "rare_destination", "non_web_on_web_port"]
HOST, EXT = "10.0.0.5", "203.0.113.9"


def details(f):
    return f.details


def keys(found):
    return sorted((f.host, f.peer, f.key) for f in found)


# -- c2_port -------------------------------------------------------------------------------

@pytest.mark.parametrize("port, fires", [
    (6659, False), (6660, True), (6667, True), (6669, True), (6670, False),
    (6696, False), (6697, True), (6698, False), (6999, False), (7000, True), (7001, False),
])
def test_c2_port_list_boundaries(port, fires):
    found = detect("c2_port", conn=[conn(1000, HOST, EXT, port)])
    assert keys(found) == ([(HOST, EXT, f"tcp/{port}")] if fires else [])


def test_c2_port_one_finding_per_host_peer_port_with_times_and_evidence():
    rows = [conn(1000 + i, HOST, EXT, 6667, orig_p=50000 + i, uid=f"C{i}") for i in range(3)]
    rows += [conn(2000, HOST, EXT, 6697, uid="D1"), conn(2001, HOST, "198.51.100.4", 6667, uid="D2")]
    found = {(f.peer, f.key): f for f in detect("c2_port", conn=rows)}
    assert sorted(found) == [("198.51.100.4", "tcp/6667"), (EXT, "tcp/6667"), (EXT, "tcp/6697")]
    f = found[(EXT, "tcp/6667")]
    assert (f.observed, f.threshold, f.evidence_total) == (3.0, 1.0, 3)
    assert f.first_seen.startswith("1970-01-01T00:16:40") and f.last_seen.startswith("1970-01-01T00:16:42")
    assert f.uids == ["C0", "C1", "C2"] and f.values == ["tcp/6667"]
    assert f.summary == (f"{HOST} connected to {EXT} on tcp/6667: 3 connection(s), 3 established "
                            f"(known bot/C2 port)")


def test_c2_source_port_and_inbound_do_not_count():
    rows = [conn(1000, HOST, EXT, 80, orig_p=6667), conn(1001, HOST, EXT, 443, orig_p=7000),
            conn(1002, EXT, HOST, 6667), conn(1003, "198.51.100.4", HOST, 7000, service="irc")]
    assert detect("c2_port", conn=rows) == []


def test_c2_port_needs_external_peer_unless_configured():
    rows = [conn(1000, HOST, "10.0.0.9", 6667), conn(1001, HOST, "224.0.0.9", 6667)]
    assert detect("c2_port", conn=rows) == []
    found = detect("c2_port", config={"detectors": {"c2_port": {"include_internal_peers": True}}},
                   conn=rows)
    assert keys(found) == [(HOST, "10.0.0.9", "tcp/6667")]


def test_irc_service_counts_on_any_port_and_any_peer_but_not_dcc_data():
    rows = [conn(1000, HOST, "10.0.0.9", 7777, service="irc"),
            conn(1001, HOST, EXT, 8443, service="ssl,irc"),
            conn(1002, HOST, "10.0.0.10", 59130, service="irc-dcc-data"),
            conn(1003, HOST, EXT, 9999, service="IRC")]
    found = {f.key: f for f in detect("c2_port", conn=rows)}
    assert sorted(found) == ["tcp/7777", "tcp/8443", "tcp/9999"]
    assert details(found["tcp/7777"])["irc_service"] == 1 and details(found["tcp/7777"])["known_port"] == 0
    assert "service identified as IRC" in found["tcp/7777"].summary


def test_c2_extra_ports_and_udp():
    rows = [conn(1000, HOST, EXT, 4444), conn(1001, HOST, EXT, 53413, proto="udp", conn_state="S0"),
            conn(1002, HOST, EXT, 6667, proto="udp", conn_state="SF")]
    assert detect("c2_port", conn=rows) == []  # bare ports are TCP; udp/6667 is not IRC
    cfg = {"detectors": {"c2_port": {"extra_ports": [4444, "udp/53413"]}}}
    assert [f.key for f in detect("c2_port", config=cfg, conn=rows)] == ["tcp/4444", "udp/53413"]


@pytest.mark.parametrize("bad", ["http", "70000", "sctp/80", "7000-6000", True])
def test_c2_bad_port_spec_is_refused_with_the_key(bad):
    with pytest.raises(ConfigError, match=r"detectors\.c2_port\.extra_ports: .* is not valid here: expected a list of ports"):
        detect("c2_port", config={"detectors": {"c2_port": {"extra_ports": [bad]}}},
               conn=[conn(1000, HOST, EXT, 6667)])


def test_c2_failed_attempts_count_unless_disabled_and_backscatter_never():
    rows = [conn(1000, HOST, EXT, 6667, conn_state="S0"), conn(1001, HOST, EXT, 6667, conn_state="REJ"),
            conn(1002, HOST, "198.51.100.4", 6667, conn_state="SHR", history="hR")]
    found = detect("c2_port", conn=rows)
    assert keys(found) == [(HOST, EXT, "tcp/6667")] and details(found[0])["established"] == 0
    assert found[0].observed == 2
    assert detect("c2_port", config={"detectors": {"c2_port": {"count_failed": False}}}, conn=rows) == []


def test_c2_failed_attempts_that_belong_to_a_scan_do_not_count():
    vertical = [conn(1000 + i, HOST, EXT, port, conn_state="REJ") for i, port in enumerate(range(6660, 6670))]
    horizontal = [conn(2000 + i, HOST, f"198.51.100.{i}", 7000, conn_state="S0") for i in range(5)]
    assert detect("c2_port", conn=vertical + horizontal) == []
    # below scan_min (4 ports of one peer, 4 peers on one port) the attempts are a bot's retries
    found = detect("c2_port", conn=vertical[:4] + horizontal[:4])
    assert len(found) == 8 and all(details(f)["established"] == 0 for f in found)
    # an established connection to a scanned peer still counts, and so does identified IRC
    rows = vertical + [conn(3000, HOST, EXT, 6667), conn(3001, HOST, "198.51.100.1", 7000, service="irc")]
    found = detect("c2_port", conn=horizontal + rows)
    assert keys(found) == [(HOST, "198.51.100.1", "tcp/7000"), (HOST, EXT, "tcp/6667")]
    assert detect("c2_port", config={"detectors": {"c2_port": {"scan_min": 11}}}, conn=vertical) != []


def test_c2_ipv6():
    found = detect("c2_port", conn=[conn(1000, "fd00::5", "2001:db8::7", 6667)])
    assert keys(found) == [("fd00::5", "2001:db8::7", "tcp/6667")]


def test_c2_masked_timestamps_still_report():
    found = detect("c2_port", conn=[conn(None, HOST, EXT, 6667, uid="C1")])
    assert len(found) == 1 and found[0].uids == ["C1"]
    # no time in the evidence: a fixed sentinel keeps the finding id stable, and it says so
    assert found[0].first_seen == "1970-01-01T00:00:00.000000Z"
    assert found[0].summary.startswith("(time unknown")


# -- unusual_port --------------------------------------------------------------------------

def test_unusual_port_fires_with_prevalence():
    rows = [conn(1000, HOST, EXT, 4444, uid="U1"), conn(1001, HOST, "198.51.100.4", 4444, uid="U2")]
    found = detect("unusual_port", conn=rows)
    assert keys(found) == [(HOST, None, "tcp/4444")]
    f = found[0]
    assert (f.observed, f.threshold, f.evidence_total) == (1.0, 2.0, 2)
    assert f.values == ["198.51.100.4", EXT] and details(f)["prevalence"] == 1
    assert "1 internal host(s) use this port (at most 2)" in f.summary


def test_unusual_port_common_ports_and_failed_attempts_are_silent():
    rows = [conn(1000, HOST, EXT, p) for p in (22, 25, 80, 443, 993, 3389, 5228, 8080, 8443)]
    rows += [conn(1100, HOST, EXT, p, proto="udp") for p in (53, 123, 443, 500, 4500)]
    rows += [conn(1200, HOST, EXT, 4444, conn_state=s) for s in ("S0", "REJ", "RSTOS0", "SH")]
    assert detect("unusual_port", conn=rows) == []
    # tcp/500 is not udp/500
    assert [f.key for f in detect("unusual_port", conn=[conn(1000, HOST, EXT, 500)])] == ["tcp/500"]


def test_unusual_port_source_port_internal_peer_and_multicast_do_not_count():
    rows = [conn(1000, HOST, EXT, 443, orig_p=4444), conn(1001, HOST, "10.0.0.9", 4444),
            conn(1002, EXT, HOST, 4444), conn(1003, HOST, "239.255.255.250", 1900, proto="udp")]
    assert detect("unusual_port", conn=rows) == []


@pytest.mark.parametrize("hosts, fires", [(1, True), (2, True), (3, False)])
def test_unusual_port_prevalence_boundary(hosts, fires):
    rows = [conn(1000 + i, f"10.0.0.{10 + i}", EXT, 5555) for i in range(hosts)]
    found = detect("unusual_port", conn=rows)
    assert len(found) == (hosts if fires else 0)
    assert all(f.observed == hosts for f in found)


def test_unusual_port_max_hosts_is_configurable():
    rows = [conn(1000 + i, f"10.0.0.{10 + i}", EXT, 5555) for i in range(3)]
    assert len(detect("unusual_port", config={"detectors": {"unusual_port": {"max_hosts": 3}}},
                      conn=rows)) == 3


def test_unusual_port_excludes_ftp_data():
    labelled = [conn(1000, HOST, EXT, 50000, service="ftp-data")]
    assert detect("unusual_port", conn=labelled) == []
    passive = [conn(999, HOST, EXT, 21, service="ftp", duration=30.0),
               conn(1000, HOST, EXT, 50001), conn(1010, HOST, EXT, 50002)]
    assert detect("unusual_port", conn=passive) == []
    # without the control connection, or to another peer, or a day later: not FTP
    assert len(detect("unusual_port", conn=passive[1:])) == 2
    elsewhere = [passive[0], conn(1000, HOST, "198.51.100.4", 50001)]
    assert keys(detect("unusual_port", conn=elsewhere)) == [(HOST, None, "tcp/50001")]
    later = [passive[0], conn(999 + 86400, HOST, EXT, 50001)]
    assert len(detect("unusual_port", conn=later)) == 1
    # active mode: our FTP server connects back from port 20 to the client's high port
    active = [conn(999, EXT, HOST, 21, service="ftp"), conn(1000, HOST, EXT, 40123, orig_p=20)]
    assert detect("unusual_port", conn=active) == []


def test_unusual_port_excludes_p2p_hosts_only():
    p2p = "10.0.0.6"
    rows = [conn(900, p2p, "198.51.100.77", 6881, service="bittorrent"),
            conn(1000, p2p, EXT, 51413), conn(1001, HOST, "198.51.100.4", 51413)]
    found = detect("unusual_port", conn=rows)
    # the P2P host is excluded; the other host still fires, and the port's prevalence counts both
    assert keys(found) == [(HOST, None, "tcp/51413")] and found[0].observed == 2
    # a host that *accepts* STUN/Skype is P2P too
    rows = [conn(900, "198.51.100.5", HOST, 3478, proto="udp", service="stun"), conn(1000, HOST, EXT, 40000)]
    assert detect("unusual_port", conn=rows) == []


def test_unusual_port_common_services():
    rows = [conn(1000, HOST, EXT, 2222, service="ssh")]
    assert len(detect("unusual_port", conn=rows)) == 1
    cfg = {"detectors": {"unusual_port": {"common_services": ["ssh"]}}}
    assert detect("unusual_port", config=cfg, conn=rows) == []


def test_unusual_port_ipv6_and_established_by_history():
    # no conn_state (a flow from another sensor): a handshake in the history, or an answer
    rows = [conn(1000, "fd00::5", "2001:db8::7", 4444, conn_state=None, history="ShAD"),
            conn(1001, "fd00::5", "2001:db8::8", 4447, conn_state=None, history=None, proto="udp",
                 resp_pkts=1),
            conn(1002, "fd00::5", "2001:db8::8", 4448, conn_state=None, history=None, proto="udp",
                 resp_pkts=0),
            conn(1003, "fd00::5", "fe80::1", 4445), conn(1004, "fd00::5", "ff02::1", 4446, proto="udp")]
    assert keys(detect("unusual_port", conn=rows)) == [("fd00::5", None, "tcp/4444"),
                                                       ("fd00::5", None, "udp/4447")]


# -- rare_destination ----------------------------------------------------------------------

def network(n, start=1):
    """n active internal hosts that each browse a resolved site; their DNS answers."""
    rows = [conn(500 + i, f"10.1.0.{start + i}", "203.0.113.80", 443, service="ssl") for i in range(n)]
    dns = [dict(ts=400.0, uid="D1", orig_h="10.1.0.1", resp_h="10.1.0.53", query="www.example",
                qtype_name="A", rcode_name="NOERROR", answers=["203.0.113.80"])]
    return rows, dns


def test_rare_destination_fires_at_two_percent_of_fifty_hosts():
    rows, dns = network(50)
    rows += [conn(1000 + i, "10.1.0.7", "198.51.100.7", 443, service="ssl", uid=f"R{i}") for i in range(3)]
    found = detect("rare_destination", conn=rows, dns=dns)
    assert keys(found) == [("10.1.0.7", "198.51.100.7", "ssl")]
    f, d = found[0], details(found[0])
    assert (f.observed, f.threshold, f.values) == (3.0, 1.0, ["tcp/443"])
    assert (d["prevalence"], d["active_hosts"], d["prevalence_percent"], d["service"]) == (1, 50, 2.0, "ssl")
    assert d["service_rank"] == 1
    assert f.summary == ("10.1.0.7 reached 198.51.100.7 (ssl) 3 time(s); 1 of 50 active internal "
                            "hosts did (2.0% ≤ 2%) and no DNS answer named it")


def test_rare_destination_share_and_minimum_hosts_boundaries():
    rows, dns = network(49)
    rows.append(conn(1000, "10.1.0.7", "198.51.100.7", 443))
    assert detect("rare_destination", conn=rows, dns=dns) == []  # 1/49 > 2 %
    cfg = {"detectors": {"rare_destination": {"max_percent": 10}}}
    rows, dns = network(10)
    rows.append(conn(1000, "10.1.0.7", "198.51.100.7", 443))
    assert len(detect("rare_destination", config=cfg, conn=rows, dns=dns)) == 1
    rows, dns = network(9)
    rows.append(conn(1000, "10.1.0.7", "198.51.100.7", 443))
    assert detect("rare_destination", config=cfg, conn=rows, dns=dns) == []  # < 10 active hosts


def test_rare_destination_not_when_resolved_shared_or_failed():
    rows, dns = network(60)
    base = list(rows)
    resolved = dns + [dict(ts=900.0, uid="D9", orig_h="10.1.0.30", query="cdn.example", qtype_name="A",
                           answers=["198.51.100.7"])]
    rows = base + [conn(1000, "10.1.0.7", "198.51.100.7", 443)]
    assert detect("rare_destination", conn=rows, dns=resolved) == []  # resolved by someone else
    rows = base + [conn(1000, "10.1.0.7", "198.51.100.7", 443), conn(1001, "10.1.0.8", "198.51.100.7", 443)]
    assert detect("rare_destination", conn=rows, dns=dns) == []  # two hosts > max_hosts
    rows = base + [conn(1000, "10.1.0.7", "198.51.100.7", 443, conn_state=s) for s in ("S0", "REJ")]
    assert detect("rare_destination", conn=rows, dns=dns) == []


def test_rare_destination_ignores_dns_ntp_multicast_and_configured_dns_servers():
    rows, dns = network(60)
    rows += [conn(1000, "10.1.0.7", "198.51.100.53", 53, proto="udp"),
             conn(1001, "10.1.0.7", "198.51.100.123", 123, proto="udp"),
             conn(1002, "10.1.0.7", "198.51.100.124", 4123, proto="udp", service="ntp"),
             conn(1003, "10.1.0.7", "224.0.0.251", 5353, proto="udp"),
             conn(1004, "10.1.0.7", "255.255.255.255", 67, proto="udp")]
    assert detect("rare_destination", conn=rows, dns=dns) == []
    rows.append(conn(1005, "10.1.0.7", "198.51.100.99", 853))
    cfg = {"networks": {"dns_servers": ["198.51.100.99"]}}
    assert detect("rare_destination", config=cfg, conn=rows, dns=dns) == []
    assert len(detect("rare_destination", conn=rows, dns=dns)) == 1


def test_rare_destination_needs_dns_data_unless_configured():
    rows, _ = network(60)
    rows.append(conn(1000, "10.1.0.7", "198.51.100.7", 443))
    assert detect("rare_destination", conn=rows) == []
    cfg = {"detectors": {"rare_destination": {"require_dns": False}}}
    # without DNS every destination is "never resolved": the browsed site has 60 hosts, not rare
    assert keys(detect("rare_destination", config=cfg, conn=rows)) == [("10.1.0.7", "198.51.100.7", "tcp/443")]


def test_rare_destination_ranked_per_service_and_ipv6():
    rows, dns = network(60)
    rows += [conn(1000 + i, "10.1.0.7", "198.51.100.7", 443, service="ssl") for i in range(5)]
    rows += [conn(1100, "10.1.0.8", "198.51.100.8", 443, service="ssl")]
    rows += [conn(1200, "10.1.0.9", "198.51.100.9", 4444)]
    rows += [conn(1300, "fd00::9", "2001:db8::9", 8443, service="ssl")]
    found = {f.peer: details(f) for f in detect("rare_destination", conn=rows, dns=dns)}
    assert sorted(found) == ["198.51.100.7", "198.51.100.8", "198.51.100.9", "2001:db8::9"]
    assert found["198.51.100.8"]["service_rank"] == 1 and found["198.51.100.7"]["service_rank"] == 3
    assert found["198.51.100.9"]["service"] == "tcp/4444" and found["198.51.100.9"]["service_rank"] == 1
    assert found["2001:db8::9"]["active_hosts"] == 61


# -- non_web_on_web_port -------------------------------------------------------------------

def web(service, port=443, ob=500, rb=900, **kw):
    return conn(1000, HOST, EXT, port, service=service, orig_bytes=ob, resp_bytes=rb, **kw)


@pytest.mark.parametrize("service", ["http", "ssl", "http,ssl", "ssl,http", "SSL", "quic,ssl", "http2"])
def test_web_services_are_silent(service):
    assert detect("non_web_on_web_port", conn=[web(service)]) == []


@pytest.mark.parametrize("service", ["ssh", "ssl,irc", "irc", "openvpn", "dns"])
def test_non_web_service_on_443_fires(service):
    found = detect("non_web_on_web_port", conn=[web(service), web(service, uid="X2")])
    assert keys(found) == [(HOST, EXT, "tcp/443")]
    assert found[0].observed == 2 and found[0].values == [service]
    assert "not HTTP/TLS (service: " + service + ")" in found[0].summary


def test_non_web_ports_80_and_8080_but_not_other_or_source_ports():
    assert [f.key for f in detect("non_web_on_web_port", conn=[web("ssh", 80), web("ssh", 8080)])] == \
        ["tcp/80", "tcp/8080"]
    assert detect("non_web_on_web_port", conn=[web("ssh", 8443), web("ssh", 2222, orig_p=443),
                                                web(None, 443, proto="udp")]) == []


def test_unidentified_service_needs_payload_both_ways():
    assert detect("non_web_on_web_port", conn=[web(None, ob=63, rb=5000), web("-", ob=5000, rb=63)]) == []
    found = detect("non_web_on_web_port", conn=[web(None, ob=64, rb=64)])
    assert found[0].values == ["(unidentified)"] and details(found[0])["unidentified"] == 1
    cfg = {"detectors": {"non_web_on_web_port": {"unknown_service_counts": False}}}
    assert detect("non_web_on_web_port", config=cfg, conn=[web(None, ob=5000, rb=5000)]) == []


def test_non_web_requires_established_payload_and_external_peer():
    rows = [web("ssh", rb=0), web("ssh", conn_state="S0"), web("ssh", conn_state="REJ"),
            conn(1000, HOST, "10.0.0.9", 443, service="ssh", orig_bytes=10, resp_bytes=10),
            conn(1000, EXT, HOST, 443, service="ssh", orig_bytes=10, resp_bytes=10)]
    assert detect("non_web_on_web_port", conn=rows) == []
    cfg = {"detectors": {"non_web_on_web_port": {"include_internal_peers": True}}}
    assert keys(detect("non_web_on_web_port", config=cfg, conn=rows)) == [(HOST, "10.0.0.9", "tcp/443")]


def test_non_web_ipv6():
    found = detect("non_web_on_web_port",
                   conn=[conn(1000, "fd00::5", "2001:db8::7", 80, service="ssh", orig_bytes=9, resp_bytes=9)])
    assert keys(found) == [("fd00::5", "2001:db8::7", "tcp/80")]


# -- real data -----------------------------------------------------------------------------

def run_files(*rels):
    return detect_files([shared_file(r) for r in rels], only=BOT)


def test_real_irc_conn_log_is_a_c2_port_finding():
    found = run_files("zeek/baseline/irc.basic.conn.log")
    # IRC between two internal hosts: counted because the service is identified as IRC.
    # The irc-dcc-data transfer on 59130 and the unlabelled connection are not IRC control.
    assert [(f.detector, f.host, f.peer, f.key) for f in found] == [
        ("c2_port", "10.0.0.7", "10.0.0.22", "tcp/6667")]
    assert found[0].uids == ["CHhAvVGS1DHFjwGM9"]


def test_real_proxy_clients_raise_no_bot_finding():
    # tcp/3128 to an internal proxy and ICMPv6 router solicitations to ff02::2: none of ours
    assert run_files("rita/proxy/conn.log", "rita/proxy/dns.log") == []


def test_port_match_is_the_or_of_its_entries_also_with_nulls():
    """port_match groups the entries per protocol (single ports as one IN list): the truth
    value, NULL included, must be that of one (proto AND port) term per entry."""
    import duckdb

    from zeekwatch.detectors.bot import port_match, port_specs

    specs = port_specs([20, 22, "6660-6669", "udp/53", "udp/500-501", "tcp/22", 7000], "t")
    naive = " OR ".join(
        f"(c.proto = '{p}' AND " + (f"c.resp_p = {lo})" if lo == hi else f"c.resp_p BETWEEN {lo} AND {hi})")
        for p, lo, hi in specs)
    protos = ["'tcp'", "'udp'", "'icmp'", "NULL"]
    ports = ["NULL", "0", "20", "22", "53", "500", "501", "502", "6659", "6660", "6665", "6669", "7000"]
    rows = ", ".join(f"({p}, CAST({q} AS INTEGER))" for p in protos for q in ports)
    got = duckdb.sql(f"SELECT c.proto, c.resp_p, {port_match(specs)} AS a, ({naive}) AS b "
                     f"FROM (VALUES {rows}) c(proto, resp_p)").fetchall()
    assert len(got) == 52 and all(a is b for _, _, a, b in got)
    assert port_match([]) == "FALSE"
