"""Detectors on real sensor output from ../shared/data (skipped when the folder is absent)."""

from __future__ import annotations

import pytest
from conftest import shared_file
from helpers import detect_files as findings

from zeekwatch.config import Config, from_dict


def test_slips_horizontal_scan():
    found = findings([shared_file("slips/port-scans/horizontal/conn.log")],
                     only=["horizontal_scan", "vertical_scan"])
    assert [(f.detector, f.host, f.key) for f in found] == [
        ("horizontal_scan", "10.0.2.112", "tcp/80")]
    assert found[0].observed >= 20


def test_slips_vertical_scan():
    found = findings([shared_file("slips/port-scans/vertical/conn.log")],
                     only=["horizontal_scan", "vertical_scan"])
    assert [(f.detector, f.host, f.peer) for f in found] == [
        ("vertical_scan", "192.168.1.9", "45.33.32.156")]
    assert found[0].observed >= 40


def test_proxy_clients_raise_no_scan():
    found = findings([shared_file("rita/proxy/conn.log"), shared_file("rita/proxy/dns.log")],
                     only=["horizontal_scan", "vertical_scan", "ping_sweep", "mass_mailer"])
    assert found == []


@pytest.mark.slow
@pytest.mark.parametrize("rel", ["perf/rita_missing_host_conn_72h.multi.log.gz"])
def test_internet_facing_sensor_has_no_internal_scanner(rel):
    # 64.225.56.201 is a public address: inbound scanning of it is not an infected host
    cfg = from_dict({"detectors": {"vertical_scan": {"internal_only": True}}})
    assert findings([shared_file(rel)], config=cfg,
                    only=["horizontal_scan", "vertical_scan", "ping_sweep"]) == []


def test_masked_timestamps_give_a_stable_finding(tmp_path):
    """BTest baselines mask every ts: the IRC finding is stored once, marked time-unknown."""
    from zeekwatch.app.analyze import analyze
    from zeekwatch.store.db import Store

    path = shared_file("zeek/baseline/irc.basic.conn.log")
    db = str(tmp_path / "f.db")
    first = analyze([path], Config(), db)
    second = analyze([path], Config(), db)
    assert (first.new, second.new, second.updated) == (1, 0, 0)
    rows = Store(db).findings()
    assert [(r["detector"], r["host"], r["key"]) for r in rows] == [("c2_port", "10.0.0.7", "tcp/6667")]
    assert rows[0]["summary"].startswith("(time unknown")


def test_mixed_captures_make_no_new_listener_findings():
    """Unrelated captures analysed together (the issue: 10 "backdoors" on ordinary SSH, DNS,
    HTTP, SMTP and FTP servers): each server's services are learned from its own first
    answers, and none of these captures lasts the 24 h learning period."""
    paths = [shared_file(p) for p in ("chrissanders-packets", "zeek/traces", "malcolm-pcap")]
    assert findings(paths, only=["new_listener"]) == []


def test_slips_test9_single_short_exchange_is_not_c2():
    """One 30 ms connection, 113 bytes out, unidentified, on tcp/80: still reported, but as
    suspicious (below every minimum of C2 evidence), no longer threat c2."""
    (f,) = findings([shared_file("slips/test9-mixed-zeek-dir")], only=["non_web_on_web_port"])
    assert (f.host, f.peer, f.threat) == ("10.0.2.15", "54.239.168.175", "suspicious")
    assert "weak evidence (113/1796 bytes" in f.summary
