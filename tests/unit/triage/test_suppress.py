"""Suppression: app look-alikes in the same span, allowlist rules, retroactive add/remove."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import shared_file
from helpers import conn
from triage_helpers import T0, analyze_tables, engine_from, run_stages, sweep

from zeekwatch.finding import Finding
from zeekwatch.store.db import Store, now_iso
from zeekwatch.store.triage import TriageError, TriageStore
from zeekwatch.triage import suppress

BT_LAST = 1455469980.275201  # last BitTorrent flow in ndpi/pcap/bittorrent.pcap (17:13:00Z)


def stored(db):
    s = Store(db)
    try:
        return {f["host"]: f for f in s.findings()}
    finally:
        s.close()


def bt(host, t, n=12):
    return [conn(t + i, host, f"192.0.2.{i + 1}", 51413, service="bittorrent", orig_p=6881)
            for i in range(n)]


# -- app look-alikes ---------------------------------------------------------------------------
@pytest.mark.shared
def test_same_scan_suppressed_only_for_the_host_with_real_bittorrent_usage(tmp_path):
    if importlib.util.find_spec("zeekwatch.readers.pcap.reader") is None:
        pytest.skip("the pcap reader is not there yet")
    pcap = shared_file("ndpi/pcap/bittorrent.pcap")  # 192.168.1.3: 24 BitTorrent flows
    start = BT_LAST + 1800
    scans = (sweep("192.168.1.3", start=start) + sweep("192.168.1.4", start=start)
             + sweep("192.168.1.3", port=22, start=BT_LAST + 3 * 3600))  # hours later
    db = str(tmp_path / "f.db")
    run_stages(db, engine_from([pcap], conn=scans), only=["horizontal_scan"])
    s = Store(db)
    rows = {(f["host"], f["key"]): f for f in s.findings()}
    s.close()
    hit = rows[("192.168.1.3", "tcp/445")]
    assert hit["status"] == "suppressed"
    assert hit["suppressed_reason"] == ("app usage: bittorrent (conn service bittorrent, 24 flows, "
                                        "17:12–17:13 UTC)")
    assert rows[("192.168.1.4", "tcp/445")]["status"] == "new"
    assert rows[("192.168.1.3", "tcp/22")]["status"] == "new"  # outside the span + 1 h slack
    assert rows[("192.168.1.3", "tcp/22")]["suppressed_reason"] is None


SLACK_CASES = [
    # first scan attempt, seconds after the last BitTorrent flow; suppressed?
    (0, True),
    (1800, True),
    (3600, True),   # exactly the 1 h slack: still the same span
    (3601, False),
]


@pytest.mark.parametrize("offset, expected", SLACK_CASES)
def test_slack_boundary_after_usage(tmp_path, offset, expected):
    usage_end = T0 + 11
    rows = bt("10.0.0.5", T0) + sweep("10.0.0.5", start=usage_end + offset)
    analyze_tables(str(tmp_path / "f.db"), only=["horizontal_scan"], conn=rows)
    assert (stored(str(tmp_path / "f.db"))["10.0.0.5"]["status"] == "suppressed") is expected


@pytest.mark.parametrize("gap, expected", [(3600, True), (3601, False)])
def test_slack_boundary_before_usage(tmp_path, gap, expected):
    scan = sweep("10.0.0.5", start=T0)
    scan_end = T0 + 24
    rows = scan + bt("10.0.0.5", scan_end + gap)
    analyze_tables(str(tmp_path / "f.db"), only=["horizontal_scan"], conn=rows)
    assert (stored(str(tmp_path / "f.db"))["10.0.0.5"]["status"] == "suppressed") is expected


def test_slack_is_configurable(tmp_path):
    rows = bt("10.0.0.5", T0) + sweep("10.0.0.5", start=T0 + 11 + 600)
    analyze_tables(str(tmp_path / "f.db"), {"suppress": {"slack": 300}}, only=["horizontal_scan"], conn=rows)
    assert stored(str(tmp_path / "f.db"))["10.0.0.5"]["status"] == "new"


def test_categories_per_detector_and_irc_never_explains(tmp_path):
    dns = [dict(ts=T0, uid="D1", orig_h="10.0.0.6", resp_h="10.0.0.53", query="web.whatsapp.net",
                answers=["192.0.2.9"])]
    alert = [dict(ts=T0, orig_h="10.0.0.7", orig_p=50000, resp_h="198.51.100.1", resp_p=6667,
                  sid=2002024, signature="ET CHAT IRC NICK command", category="Misc activity")]
    rows = (sweep("10.0.0.5") + [conn(T0, "10.0.0.5", "198.51.100.2", 3478, proto="udp", service="stun")]
            + sweep("10.0.0.6") + sweep("10.0.0.7"))
    analyze_tables(str(tmp_path / "f.db"), only=["horizontal_scan"], conn=rows, dns=dns, alert=alert)
    got = {h: (f["status"], f["suppressed_reason"]) for h, f in stored(str(tmp_path / "f.db")).items()}
    assert got == {
        "10.0.0.5": ("suppressed", "app usage: stun (conn service stun, 1 flow, 22:13–22:13 UTC)"),
        "10.0.0.6": ("new", None),  # WhatsApp (im) does not explain a horizontal scan
        "10.0.0.7": ("new", None),  # IRC: recorded, never an excuse (bots use it)
    }


def test_automation_never_overrides_an_analyst_and_reruns_add_nothing(tmp_path):
    db = str(tmp_path / "f.db")
    analyze_tables(db, only=["horizontal_scan"], conn=sweep("10.0.0.5") + sweep("10.0.0.6"))
    s = Store(db)
    ts = TriageStore(s)
    ts.set_status(stored(db)["10.0.0.5"]["id"], "investigating", "alice", "looking")
    s.close()
    # the same scans again, now with BitTorrent usage of both hosts
    rows = sweep("10.0.0.5") + sweep("10.0.0.6") + bt("10.0.0.5", T0 + 100) + bt("10.0.0.6", T0 + 100)
    for _ in range(2):
        analyze_tables(db, only=["horizontal_scan"], conn=rows)
    got = stored(db)
    assert got["10.0.0.5"]["status"] == "investigating"
    assert got["10.0.0.6"]["status"] == "suppressed"
    s = Store(db)
    ts = TriageStore(s)
    assert len(ts.hits(finding_id=got["10.0.0.6"]["id"])) == 1
    assert [(a["who"], a["old_status"], a["new_status"]) for a in ts.audit(got["10.0.0.6"]["id"])] == [
        ("zeekwatch", "new", "suppressed")]
    assert s.db["app_usage"].count == 2  # stored once per host, not per run
    s.close()


def test_an_analyst_unsuppressing_has_the_last_word(tmp_path):
    db = str(tmp_path / "f.db")
    rows = sweep("10.0.0.5") + bt("10.0.0.5", T0)
    analyze_tables(db, only=["horizontal_scan"], conn=rows)
    fid = stored(db)["10.0.0.5"]["id"]
    s = Store(db)
    TriageStore(s).set_status(fid, "new", "alice", "not BitTorrent: the scan is on 445")
    s.close()
    analyze_tables(db, only=["horizontal_scan"], conn=rows)
    assert (stored(db)["10.0.0.5"]["status"], stored(db)["10.0.0.5"]["suppressed_reason"]) == ("new", None)


# -- allowlist rules ---------------------------------------------------------------------------
def rule(**kw):
    return {"id": 1, "owner": "alice", "reason": "r", **kw}


def finding(**kw):
    """A stored finding row (overridden by ``kw``) as the Finding that rules are matched with."""
    f = {"id": "F1", "detector": "horizontal_scan", "threat": "recon", "host": "10.0.0.5",
         "peer": None, "key": "tcp/445", "first_seen": "2024-05-01T10:00:00.000000Z",
         "last_seen": "2024-05-01T10:05:00.000000Z", "details": "{}", "distinct_values": "[]"}
    f.update(kw)
    return Finding.from_row(f)


RULE_CASES = [
    (rule(cidr="10.0.0.0/24"), finding(), True),
    (rule(cidr="10.0.1.0/24"), finding(), False),
    (rule(cidr="fd00::/8"), finding(host="fd00::5"), True),
    (rule(peer="203.0.113.0/24"), finding(peer="203.0.113.9"), True),
    (rule(peer="203.0.113.0/24"), finding(), False),
    (rule(port=445), finding(), True),
    (rule(port=139), finding(), False),
    (rule(port=443), finding(key=None, details=json.dumps({"resp_p": 443})), True),
    (rule(detector="horizontal_scan"), finding(), True),
    (rule(detector="vertical_scan"), finding(), False),
    (rule(sid=2002024), finding(detector="ids_alert", key="sid:2002024"), True),
    (rule(sid=2002024), finding(detector="ids_alert", key="sid:1"), False),
    (rule(domain=".example.com"), finding(details=json.dumps({"peer_names": ["cdn.example.com"]})), True),
    (rule(domain="example.com"), finding(details=json.dumps({"peer_names": ["cdn.example.com"]})), False),
    (rule(domain="*.example.org"), finding(distinct_values=json.dumps(["a.example.org"])), True),
    (rule(start="2024-05-01T10:04:00.000000Z"), finding(), True),
    (rule(start="2024-05-01T10:06:00.000000Z"), finding(), False),
    (rule(end="2024-05-01T09:59:00.000000Z"), finding(), False),
    (rule(cidr="10.0.0.5/32", detector="horizontal_scan", port=445), finding(), True),
    (rule(cidr="10.0.0.5/32", detector="horizontal_scan", port=80), finding(), False),
]


@pytest.mark.parametrize("r, f, expected", RULE_CASES)
def test_rule_matching(r, f, expected):
    assert suppress.rule_matches(r, f) is expected


@pytest.mark.parametrize("fields, owner, expires, message", [
    ({}, "a", None, "needs at least one of --cidr"),
    ({"cidr": "10.0.0.300"}, "a", None, "--cidr: .*does not appear to be an IPv4 or IPv6"),
    ({"domain": "*bad*.com"}, "a", None, "--domain: .*not a domain pattern"),
    ({"cidr": "10.0.0.5"}, "", None, "needs an owner and a reason"),
    ({"cidr": "10.0.0.5"}, "a", "2000-01-01", "--expires: 2000-01-01T00:00:00.000000Z is in the past"),
    ({"cidr": "10.0.0.5", "start": "yesterday"}, "a", None, "--start: 'yesterday' is not an ISO date"),
])
def test_invalid_rules(fields, owner, expires, message):
    with pytest.raises(TriageError, match=message):
        suppress.make_rule(fields, owner, "reason", expires, "alice", "cli", now_iso())


def _add(ts, **fields):
    r = suppress.make_rule(fields, "bob", "pentest by the red team", None, "bob", "cli", now_iso())
    return suppress.add_rule(ts, r, "bob")


def test_retroactive_add_then_remove_restores_the_exact_states(tmp_path):
    db = str(tmp_path / "f.db")
    hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.1.9"]
    rows = [r for h in hosts for r in sweep(h)] + bt("10.0.0.5", T0)
    analyze_tables(db, only=["horizontal_scan"], conn=rows)
    s = Store(db)
    ts = TriageStore(s)
    ids = {f["host"]: f["id"] for f in s.findings()}
    ts.set_status(ids["10.0.0.2"], "investigating", "alice", "ticket 1")
    ts.set_status(ids["10.0.0.3"], "contained", "alice", "port shut")
    ts.set_status(ids["10.0.0.4"], "resolved", "alice", "reimaged")
    before = {f["id"]: (f["status"], f["suppressed_reason"]) for f in s.findings()}
    audit_before = s.db["audit"].count

    rid, done = _add(ts, cidr="10.0.0.0/24", detector="horizontal_scan")
    # open findings only: not the resolved one, not the one already suppressed by app usage,
    # not the host outside the CIDR
    assert sorted(done) == sorted([ids["10.0.0.1"], ids["10.0.0.2"], ids["10.0.0.3"]])
    mid = {f["id"]: f for f in s.findings()}
    assert mid[ids["10.0.0.2"]]["suppressed_reason"] == (
        f"allowlist rule {rid} (cidr 10.0.0.0/24, detector horizontal_scan; owner bob): "
        "pentest by the red team")
    assert mid[ids["10.0.0.5"]]["suppressed_reason"].startswith("app usage: bittorrent")

    restored, again = suppress.remove_rule(ts, rid, "carol", now_iso())
    assert sorted(restored) == sorted(done) and again == []
    after = {f["id"]: (f["status"], f["suppressed_reason"]) for f in s.findings()}
    assert after == before
    # nothing deleted: the rule stays, marked removed; every change is audited
    r = ts.suppression(rid)
    assert r["removed_by"] == "carol" and r["removed_at"]
    assert s.db["audit"].count == audit_before + 6
    assert [(a["old_status"], a["new_status"], a["who"]) for a in ts.audit(ids["10.0.0.3"])] == [
        ("new", "contained", "alice"), ("contained", "suppressed", "bob"), ("suppressed", "contained", "carol")]
    with pytest.raises(TriageError, match=f"suppression {rid} was already removed"):
        suppress.remove_rule(ts, rid, "carol", now_iso())
    s.close()


def test_removing_one_of_two_matching_rules_keeps_the_finding_suppressed(tmp_path):
    db = str(tmp_path / "f.db")
    analyze_tables(db, only=["horizontal_scan"], conn=sweep("10.0.0.1"))
    s = Store(db)
    ts = TriageStore(s)
    a, _ = _add(ts, cidr="10.0.0.1")
    b, done_b = _add(ts, port=445)
    assert done_b == []  # already suppressed by a
    restored, again = suppress.remove_rule(ts, a, "carol", now_iso())
    f = s.findings()[0]
    assert again == restored == [f["id"]]
    assert f["status"] == "suppressed" and f["suppressed_reason"].startswith(f"allowlist rule {b} ")
    suppress.remove_rule(ts, b, "carol", now_iso())
    assert s.findings()[0]["status"] == "new"
    s.close()


def test_analyst_change_detaches_a_finding_from_its_rule(tmp_path):
    db = str(tmp_path / "f.db")
    analyze_tables(db, only=["horizontal_scan"], conn=sweep("10.0.0.1"))
    s = Store(db)
    ts = TriageStore(s)
    rid, (fid,) = _add(ts, cidr="10.0.0.1")
    ts.set_status(fid, "investigating", "alice", "this one is real")
    restored, _ = suppress.remove_rule(ts, rid, "carol", now_iso())
    assert restored == [] and s.get(fid)["status"] == "investigating"
    s.close()


def test_rules_apply_during_analysis_until_they_expire_or_are_removed(tmp_path):
    db = str(tmp_path / "f.db")
    s = Store(db)
    ts = TriageStore(s)
    live, _ = _add(ts, cidr="10.0.0.1")
    expired = ts.add_suppression({"cidr": "10.0.0.2/32", "owner": "bob", "reason": "old",
                                  "expires": "2001-01-01T00:00:00.000000Z"})
    gone, _ = _add(ts, cidr="10.0.0.3")
    suppress.remove_rule(ts, gone, "bob", now_iso())
    s.close()
    analyze_tables(db, only=["horizontal_scan"], conn=sweep("10.0.0.1") + sweep("10.0.0.2") + sweep("10.0.0.3"))
    got = stored(db)
    assert got["10.0.0.1"]["status"] == "suppressed"
    assert got["10.0.0.1"]["suppressed_reason"].startswith(f"allowlist rule {live} (cidr 10.0.0.1/32;")
    assert got["10.0.0.2"]["status"] == got["10.0.0.3"]["status"] == "new"
    assert expired
    s = Store(db)
    hits = TriageStore(s).hits(finding_id=got["10.0.0.1"]["id"])
    assert [(h["kind"], h["suppression_id"], h["prior_status"]) for h in hits] == [("rule", live, "new")]
    s.close()


def test_domain_rule_matches_names_that_resolved_to_the_peer(tmp_path):
    db = str(tmp_path / "f.db")
    # a vertical scan of one peer the host had resolved as scanner.example.com
    rows = [conn(T0 + i, "10.0.0.1", "203.0.113.50", 1000 + i, conn_state="REJ") for i in range(25)]
    dns = [dict(ts=T0 - 5, uid="D1", orig_h="10.0.0.1", resp_h="10.0.0.53",
                query="Scanner.Example.com", answers=["203.0.113.50"])]
    s = Store(db)
    _add(TriageStore(s), domain=".example.com")
    s.close()
    cands = analyze_tables(db, only=["vertical_scan"], conn=rows, dns=dns)
    assert cands[0].details["peer_names"] == ["scanner.example.com"]
    assert stored(db)["10.0.0.1"]["status"] == "suppressed"
