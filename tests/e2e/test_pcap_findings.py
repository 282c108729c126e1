"""Findings from captures: the scenario captures through the real `zeekwatch analyze`, and
real captures from ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PCAPS, shared_file

from zeekwatch.app.analyze import analyze
from zeekwatch.config import from_dict

EXE = Path(sys.executable).parent / "zeekwatch"


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """`zeekwatch --config pcaps/zeekwatch.toml analyze pcaps/*.pcap`, as `make demo` runs it."""
    db = tmp_path_factory.mktemp("demo") / "findings.db"
    caps = sorted(str(p) for p in PCAPS.glob("*.pcap"))
    res = subprocess.run([str(EXE), "--config", str(PCAPS / "zeekwatch.toml"), "analyze", *caps,
                          "--db", str(db), "--json"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rejects"] == 0
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return con


def rows(con, where="1=1"):
    return [dict(r) for r in con.execute(f"SELECT * FROM findings WHERE {where}")]


@pytest.mark.parametrize("detector, host, key_or_peer", [
    ("mass_mailer", "10.2.0.66", None),
    ("mx_burst", "10.2.0.66", None),
    ("horizontal_scan", "10.3.0.99", "tcp/445"),
    ("vertical_scan", "10.4.0.13", "10.4.0.200"),
    ("ping_sweep", "192.168.5.23", None),
    ("c2_port", "10.6.0.12", "tcp/6667"),
    ("long_connection", "10.9.0.77", "198.51.100.200"),
    ("non_web_on_web_port", "10.9.0.77", "198.51.100.200"),
])
def test_every_scenario_raises_its_finding(demo_db, detector, host, key_or_peer):
    found = [r for r in rows(demo_db, f"detector = '{detector}' AND host = '{host}'")
             if key_or_peer in (None, r["key"], r["peer"])]
    assert found, f"{detector} for {host} missing"
    assert all(r["status"] == "new" and 1 <= r["urgency"] <= 10 for r in found)


def test_mass_mailer_is_corroborated_by_mx_lookups(demo_db):
    (f,) = rows(demo_db, "detector = 'mass_mailer'")
    assert json.loads(f["details"])["mx_lookups"] >= 30
    assert "MX lookups" in f["summary"]


def test_legitimate_mail_server_and_office_raise_nothing(demo_db):
    # 10.2.0.25 is the configured mail server; the office clients are 10.1.0.0/16
    assert rows(demo_db, "host = '10.2.0.25' OR host LIKE '10.1.%'") == []


def test_look_alikes_are_not_open_scans(demo_db):
    # the BitTorrent peer and the STUN client contact many peers on many ports: anything
    # they raise is suppressed with the app named, never an open finding
    for host, app in (("192.168.7.40", "bittorrent"), ("192.168.8.50", "stun")):
        for f in rows(demo_db, f"host = '{host}'"):
            assert f["status"] == "suppressed", f
            assert app in f["suppressed_reason"]
    apps = {(r[0], r[1]) for r in demo_db.execute("SELECT host, app FROM app_usage")}
    assert {("192.168.7.40", "bittorrent"), ("192.168.8.50", "stun")} <= apps


# -- real captures ---------------------------------------------------------------------------

def run(tmp_path, paths, cfg=None, **kw):
    db = str(tmp_path / "f.db")
    res = analyze(paths, from_dict(cfg or {}), db, **kw)
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return res, con


SCANS = ["horizontal_scan", "vertical_scan"]


@pytest.mark.parametrize("rel", ["chrissanders-packets/synscan.pcapng", "ndpi/pcap/synscan.pcap"])
def test_nmap_syn_scan_is_a_vertical_scan(tmp_path, rel):
    res, con = run(tmp_path, [shared_file(rel)], only=SCANS)
    found = [(r["detector"], r["host"], r["peer"]) for r in rows(con)]
    assert found == [("vertical_scan", "172.16.0.8", "64.13.134.52")]
    assert rows(con)[0]["observed"] >= 990  # of the 1,000 ports, a few answered


def test_malcolm_scan_captures_with_their_thresholds(tmp_path):
    # the bro-simple-scan test captures scan 10 ports / 10 hosts: thresholds of 10
    cfg = {"detectors": {"vertical_scan": {"min_ports": 10}, "horizontal_scan": {"min_hosts": 10}}}
    _, con = run(tmp_path, [shared_file("malcolm-pcap/plugins/bro-simple-scan/port_scan.pcap"),
                            shared_file("malcolm-pcap/plugins/bro-simple-scan/scan_with_zero_windows.pcap")],
                 cfg, only=SCANS)
    found = sorted((r["detector"], r["host"], r["peer"] or r["key"]) for r in rows(con))
    assert found == [("horizontal_scan", "10.0.0.1", "tcp/23"),
                     ("vertical_scan", "192.168.2.154", "192.168.2.22")]


@pytest.mark.parametrize("rel", ["zeek/traces/ssh_sshguess.pcap", "zeek/traces/ftp_bruteforce.pcap",
                                 "slips/test19-malicious-ssh/malicious-ssh-bruteforce.pcap"])
def test_brute_force_is_not_a_scan(tmp_path, rel):
    res, con = run(tmp_path, [shared_file(rel)], only=SCANS)
    assert res.log.records["conn"] > 0
    assert rows(con) == []


@pytest.mark.parametrize("rel, internal, host", [
    ("zeek/traces/irc-basic.pcap", None, "192.168.6.110"),
    ("zeek/traces/irc-more-commands.pcap", None, "172.16.238.1"),
    # both ends are public addresses: name the client's network as ours
    ("zeek/traces/tls_irc-starttls.pcap", ["203.143.168.0/24"], "203.143.168.47"),
])
def test_irc_captures_raise_c2_port(tmp_path, rel, internal, host):
    cfg = {"networks": {"internal": internal}} if internal else {}
    _, con = run(tmp_path, [shared_file(rel)], cfg, only=["c2_port"])
    found = rows(con)
    assert [(r["detector"], r["host"], r["key"]) for r in found] == [("c2_port", host, "tcp/6667")]
    assert json.loads(found[0]["details"])["irc_service"] == 1


def test_app_usage_from_real_captures(tmp_path):
    _, con = run(tmp_path, [shared_file("ndpi/pcap/skype-conference-call.pcap"),
                            shared_file("ndpi/pcap/bittorrent.pcap")])
    apps = {(r["host"], r["category"]) for r in con.execute("SELECT * FROM app_usage")}
    assert ("192.168.2.20", "voip") in apps  # Skype/Teams call: STUN
    assert ("192.168.1.3", "p2p") in apps  # BitTorrent peer


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (make test installs it)")
def test_xmpp_from_jabber_capture_with_pcap_labels(tmp_path):
    _, con = run(tmp_path, [shared_file("ndpi/pcap/jabber.pcap")], pcap_labels=True)
    apps = {(r["app"], r["category"]) for r in con.execute("SELECT * FROM app_usage")}
    assert ("xmpp", "im") in apps
