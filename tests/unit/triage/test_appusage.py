"""App usage: domain wildcard semantics, every evidence source, sessions, real samples."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import shared_file
from helpers import conn
from triage_helpers import T0, engine_from

from zeekwatch.config import from_dict
from zeekwatch.errors import ConfigError
from zeekwatch.triage.appusage import AppRules, compute, domain_matches


def usage(config=None, paths=(), **tables):
    eng = engine_from(paths, config, **tables)
    try:
        rules = AppRules.from_config(eng.config.suppress)
        return compute(eng.con, rules, eng.context().nets, eng.config.suppress.get("session_gap", 3600))
    finally:
        eng.close()


def brief(rows):
    return sorted((r["host"], r["app"], r["source"], r["evidence"], r["count"]) for r in rows)


def dns(ts, host, query, uid="D1"):
    return dict(ts=ts, uid=uid, orig_h=host, resp_h="10.0.0.53", query=query, qtype_name="A",
                rcode_name="NOERROR", answers=["192.0.2.80"])


# -- domain patterns ------------------------------------------------------------------------
DOMAIN_CASES = [
    # pattern, name, matches
    ("example.com", "example.com", True),
    ("example.com", "EXAMPLE.com.", True),
    ("example.com", "www.example.com", False),
    ("*.example.com", "www.example.com", True),
    ("*.example.com", "a.b.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "badexample.com", False),
    (".example.com", "example.com", True),
    (".example.com", "a.b.example.com", True),
    (".example.com", "notexample.com", False),
    (".example.com", "example.com.evil.net", False),
    ("tracker.*", "tracker.opentrackr.org", True),
    ("tracker.*", "tracker", False),
    ("tracker.*", "open.tracker.org", False),
    ("tracker.*", "trackers.org", False),
]


@pytest.mark.parametrize("pattern, name, expected", DOMAIN_CASES)
def test_domain_pattern_semantics(pattern, name, expected):
    assert domain_matches(pattern, name) is expected


def test_sql_domain_matching_agrees_with_the_reference():
    names = sorted({n for _, n, _ in DOMAIN_CASES})
    eng = engine_from(dns=[dns(T0 + i * 7200, f"10.0.{i}.1", n) for i, n in enumerate(names)])
    try:
        for pattern in sorted({p for p, _, _ in DOMAIN_CASES}):
            rules = AppRules.from_config({"use_defaults": False, "apps": {"x": "im"},
                                          "domains": {"x": [pattern]}})
            got = {names[int(r["host"].split(".")[2])]
                   for r in compute(eng.con, rules, eng.context().nets, 3600)}
            assert got == {n for n in names if domain_matches(pattern, n)}, pattern
    finally:
        eng.close()


def test_most_specific_pattern_wins():
    cfg = {"suppress": {"apps": {"corp": "im"},
                        "domains": {"corp": [".example.com", "chat.example.com"],
                                    "slack": ["*.chat.example.com", ".example.com"]}}}
    rows = usage(cfg, dns=[dns(T0, "10.0.0.1", "chat.example.com"),
                           dns(T0, "10.0.0.2", "a.chat.example.com"),
                           dns(T0, "10.0.0.3", "example.com")])
    assert [(r["host"], r["app"], r["evidence"]) for r in rows] == [
        ("10.0.0.1", "corp", "dns query matching chat.example.com"),
        ("10.0.0.2", "slack", "dns query matching *.chat.example.com"),
        ("10.0.0.3", "corp", "dns query matching .example.com"),  # same pattern twice: first app by name
    ]


@pytest.mark.parametrize("bad", ["*.", "ex*ample.com", "*example.com", "a..b", "open.tracker.*", ""])
def test_invalid_domain_patterns_are_config_errors(bad):
    with pytest.raises(ConfigError, match=r"suppress\.domains\.skype\[0\]: .* is not a domain pattern|"
                                          r"a prefix pattern names one first label"):
        AppRules.from_config({"domains": {"skype": [bad]}})


def test_unknown_app_and_bad_regex_are_config_errors():
    with pytest.raises(ConfigError, match=r"suppress.domains.acme\[0\]: unknown app 'acme'"):
        AppRules.from_config({"domains": {"acme": ["acme.example"]}})
    with pytest.raises(ConfigError, match=r"suppress.signatures\[0\]: invalid regular expression"):
        AppRules.from_config({"signatures": [{"pattern": "ET P2P (", "app": "p2p"}]})
    with pytest.raises(ConfigError, match=r"suppress.http\[0\]: invalid regular expression '\(\?=x\)'"):
        AppRules.from_config({"http": [{"pattern": "(?=x)", "app": "p2p"}]})  # RE2: no look-ahead
    with pytest.raises(ConfigError, match=r"suppress.apps.acme: category must be one of p2p, im, voip"):
        AppRules.from_config({"apps": {"acme": "games"}})


# -- evidence sources ------------------------------------------------------------------------
def test_conn_service_lists_and_pcap_dissector_names():
    rows = usage(conn=[
        conn(T0, "10.0.0.5", "198.51.100.7", 6881, service="bittorrent"),
        conn(T0 + 10, "10.0.0.5", "198.51.100.8", 443, service="ssl,stun"),
        conn(T0 + 20, "10.0.0.6", "198.51.100.9", 4662, service="EDONKEY"),  # Wireshark name
        conn(T0 + 30, "10.0.0.7", "198.51.100.9", 80, service="http"),
    ])
    assert brief(rows) == [
        ("10.0.0.5", "bittorrent", "conn", "conn service bittorrent", 1),
        ("10.0.0.5", "stun", "conn", "conn service stun", 1),
        ("10.0.0.6", "edonkey", "conn", "conn service edonkey", 1),
    ]


def test_p2p_responder_is_a_peer_when_internal():
    rows = usage(conn=[conn(T0, "198.51.100.7", "10.0.0.5", 51413, service="bittorrent"),
                       conn(T0, "2001:db8::7", "fd00::5", 51413, service="bittorrent"),
                       conn(T0, "10.0.0.8", "2001:db8::9", 51413, service="bittorrent"),
                       conn(T0, "10.0.0.8", "10.0.0.9", 5222, service="xmpp")])
    assert brief(rows) == [
        ("10.0.0.5", "bittorrent", "conn", "conn service bittorrent", 1),   # internal responder
        ("10.0.0.8", "bittorrent", "conn", "conn service bittorrent", 1),   # external peer: not recorded
        ("10.0.0.8", "xmpp", "conn", "conn service xmpp", 1),               # im: client only
        ("198.51.100.7", "bittorrent", "conn", "conn service bittorrent", 1),
        ("2001:db8::7", "bittorrent", "conn", "conn service bittorrent", 1),
        ("fd00::5", "bittorrent", "conn", "conn service bittorrent", 1),    # internal IPv6 responder
    ]


def test_alert_signatures_categories_sids_and_app_proto():
    alerts = [
        dict(ts=T0, orig_h="10.0.0.5", orig_p=51000, resp_h="198.51.100.1", resp_p=6881, sid=2008581,
             signature="ET P2P BitTorrent DHT ping request", category="Potential Corporate Privacy Violation"),
        dict(ts=T0, orig_h="198.51.100.2", orig_p=443, resp_h="10.0.0.6", resp_p=50123, sid=2002157,
             signature="ET POLICY Skype VOIP Checking Version (Startup)", category="Misc activity"),
        dict(ts=T0, orig_h="10.0.0.7", orig_p=40000, resp_h="198.51.100.3", resp_p=5050, sid=2001241,
             signature="GPL CHAT Yahoo IM successful logon", category="Misc activity"),
        dict(ts=T0, orig_h="10.0.0.8", orig_p=40000, resp_h="198.51.100.4", resp_p=6881, sid=9000001,
             signature="LOCAL odd thing", category="Misc activity", app_proto="bittorrent-dht"),
        dict(ts=T0, orig_h="10.0.0.9", orig_p=40000, resp_h="198.51.100.5", resp_p=80, sid=9000002,
             signature="LOCAL custom", category="Misc activity"),
        dict(ts=T0, orig_h="10.0.0.10", orig_p=40000, resp_h="198.51.100.6", resp_p=80, sid=2100000,
             signature="ET POLICY something", category="Games"),
    ]
    cfg = {"suppress": {"signatures": [{"sid": 9000002, "app": "slack"},
                                       {"pattern": "^games$", "field": "category", "app": "p2p"}]}}
    assert brief(usage(cfg, alert=alerts)) == [
        ("10.0.0.10", "p2p", "alert", 'alert "ET POLICY something" (sid 2100000)', 1),
        ("10.0.0.5", "bittorrent", "alert", 'alert "ET P2P BitTorrent DHT ping request" (sid 2008581)', 1),
        ("10.0.0.6", "skype", "alert", 'alert "ET POLICY Skype VOIP Checking Version (Startup)" (sid 2002157)', 1),
        ("10.0.0.7", "chat", "alert", 'alert "GPL CHAT Yahoo IM successful logon" (sid 2001241)', 1),
        ("10.0.0.8", "bittorrent", "alert", "alert app_proto bittorrent-dht", 1),
        ("10.0.0.9", "slack", "alert", 'alert "LOCAL custom" (sid 9000002)', 1),
    ]


def test_dns_tls_http_names_url_and_user_agent():
    rows = usage(
        dns=[dns(T0, "10.0.0.5", "web.whatsapp.net"), dns(T0 + 5, "10.0.0.5", "mmg.whatsapp.net", "D2"),
             dns(T0, "10.0.0.6", "router.bitcomet.com"), dns(T0, "10.0.0.6", "bitcomet.com", "D3")],
        tls=[dict(ts=T0, uid="T1", orig_h="10.0.0.7", resp_h="198.51.100.1", resp_p=443,
                  server_name="gateway.discord.gg")],
        http=[dict(ts=T0, uid="H1", orig_h="10.0.0.8", resp_h="10.0.0.3", resp_p=3128, method="CONNECT",
                   uri="203.0.113.9.skype.com:443", host=None, user_agent="Mozilla/5.0"),
              dict(ts=T0, uid="H2", orig_h="10.0.0.9", resp_h="198.51.100.2", resp_p=6969, method="GET",
                   uri="/announce?info_hash=%aa%bb&peer_id=-UT2210-", host="tracker.example.org:6969",
                   user_agent="uTorrent/2210(25110)")])
    assert brief(rows) == [
        ("10.0.0.5", "whatsapp", "dns", "dns query matching .whatsapp.net", 2),
        ("10.0.0.6", "bittorrent", "dns", "dns query matching router.bitcomet.com", 1),
        ("10.0.0.7", "discord", "tls", "tls sni matching .discord.gg", 1),
        ("10.0.0.8", "skype", "http", "http CONNECT to Skype through a proxy", 1),
        ("10.0.0.9", "bittorrent", "http", "http BitTorrent client User-Agent", 1),
        ("10.0.0.9", "bittorrent", "http", "http BitTorrent tracker announce", 1),
    ]
    # the DNS server that answered a tracker lookup is not a P2P node
    assert "10.0.0.53" not in {r["host"] for r in rows}
    whatsapp = next(r for r in rows if r["app"] == "whatsapp")
    assert whatsapp["examples"] == ["mmg.whatsapp.net", "web.whatsapp.net"]


def test_sessions_split_at_the_gap():
    flows = [conn(T0 + t, "10.0.0.5", "198.51.100.7", 6881, service="bittorrent", orig_p=40000 + i)
             for i, t in enumerate([0, 600, 1200, 1200 + 3601, 1200 + 3700])]
    rows = usage(conn=flows)
    assert [(r["first_seen"], r["last_seen"], r["count"]) for r in rows] == [
        ("2023-11-14T22:13:20.000000Z", "2023-11-14T22:33:20.000000Z", 3),
        ("2023-11-14T23:33:21.000000Z", "2023-11-14T23:35:00.000000Z", 2)]
    assert len(usage({"suppress": {"session_gap": 7200}}, conn=flows)) == 1


def test_use_defaults_false_drops_the_shipped_lists():
    cfg = from_dict({"suppress": {"use_defaults": False}})
    assert usage(cfg, conn=[conn(T0, "10.0.0.5", "198.51.100.7", 6881, service="bittorrent")]) == []


# -- real samples ----------------------------------------------------------------------------
def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not there yet")


@pytest.mark.shared
def test_irc_in_real_suricata_alerts():
    _need("zeekwatch.readers.eve.reader")
    path = shared_file("frank-suricata/wrccdc-2018/alerts-only.eve.ndjson")
    rows = usage(paths=[path])
    assert brief(rows) == [
        ("10.128.0.215", "irc", "alert", 'alert "ET CHAT IRC NICK command" (sid 2002024)', 1),
        ("10.128.0.215", "irc", "alert", 'alert "ET CHAT IRC USER command" (sid 2002023)', 1),
        # "PING" was logged server -> client (src port 6667): the client is the host
        ("10.47.7.152", "irc", "alert", 'alert "ET CHAT IRC PING command" (sid 2002027)', 1),
    ]
    assert {r["category"] for r in rows} == {"im"}
    assert rows[0]["first_seen"] == "2018-03-23T20:04:34.599296Z"  # -0600 read as UTC


@pytest.mark.shared
@pytest.mark.parametrize("rel, expected", [
    ("ndpi/pcap/bittorrent.pcap",
     [("192.168.1.3", "bittorrent", "conn", "conn service bittorrent", 24)]),
    ("zeek/traces/bittorrent_tracker.pcap",
     [("10.0.0.201", "bittorrent", "http", "http BitTorrent client User-Agent", 1),
      ("10.0.0.201", "bittorrent", "http", "http BitTorrent tracker announce", 1)]),
])
def test_bittorrent_in_real_captures(rel, expected):
    _need("zeekwatch.readers.pcap.reader")
    assert brief(usage(paths=[shared_file(rel)])) == expected
