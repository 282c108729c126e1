"""Incidents: grouping per host and window, independent evidence, weak signals, inbound
findings, playbooks, workflow, rescoring, idempotence, follow = analyze.

Every test runs the real analysis (``app.analyze``: readers -> engine -> triage -> SQLite)
on Zeek logs the test writes, on the repository's scenario captures, or on the shared EVE
samples, and reads the real database back.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from conftest import ROOT, shared_file
from helpers import conn, zeek_tsv

from zeekwatch.app.analyze import analyze
from zeekwatch.app.follow import Follower, FollowOptions
from zeekwatch.config import Config, from_dict
from zeekwatch.store.db import Store
from zeekwatch.store.incidents import IncidentStore
from zeekwatch.store.triage import TriageStore
from zeekwatch.triage import incident_workflow as workflow
from zeekwatch.triage import playbooks
from zeekwatch.triage.incidents import Incidents

T0 = 1_700_043_200  # 2023-11-15 10:13:20 UTC, a Wednesday in business hours
WRCCDC = "frank-suricata/wrccdc-2018/alerts-only.eve.ndjson"
HONEYPOT = "frank-suricata/honeypot-2018/alerts-only.eve.ndjson"


def rows(db, sql, params=()):
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params)]
    finally:
        con.close()


def incidents(db):
    return rows(db, "SELECT * FROM incidents ORDER BY host, first_seen")


def terms(i):
    return json.loads(i["score_terms"])["terms"]


def run(tmp_path, conns, config=None, name="z.db"):
    log = zeek_tsv(tmp_path / f"{name}.conn.log", "conn", conns)
    db = str(tmp_path / name)
    analyze([log], config or Config(), db)
    return db


def scan(host, start=T0, port=445, n=25, prefix="10.9.8."):
    return [conn(start + i, host, f"{prefix}{i + 1}", port, conn_state="S0", uid=f"Cs{host}{port}{start}{i}")
            for i in range(n)]


def irc(host, at, peer="203.0.113.66", uid=None):
    return conn(at, host, peer, 6667, service="irc", uid=uid or f"Ci{host}{at}",
                orig_bytes=500, resp_bytes=900, duration=30.0)


# -- the shared EVE samples -----------------------------------------------------------------

def test_wrccdc_queue_has_one_line_per_internal_host_with_alerts(tmp_path):
    path = shared_file(WRCCDC)
    db = str(tmp_path / "w.db")
    analyze([path], Config(), db)
    hosts = {r["host"] for r in rows(db, "SELECT DISTINCT host FROM findings")}
    assert len(hosts) == 83
    store = Store(db)
    queue = IncidentStore(store).select(("new", "investigating", "contained"), True)
    assert len(queue) == len(hosts) and {i["host"] for i in queue} == hosts
    # every finding is in exactly one incident, of its own host
    assert rows(db, "SELECT count(*) n FROM findings f JOIN incident_findings m ON m.finding_id = f.id "
                    "JOIN incidents i ON i.id = m.incident_id AND i.host = f.host")[0]["n"] == 133
    # a window longer than the capture: exactly one incident per host
    db2 = str(tmp_path / "w2.db")
    analyze([path], from_dict({"incidents": {"window": 3 * 86400}}), db2)
    assert sorted(i["host"] for i in incidents(db2)) == sorted(hosts)


def test_honeypot_is_one_incident_under_attack_with_every_signature(tmp_path):
    path = shared_file(HONEYPOT)
    db = str(tmp_path / "h.db")
    analyze([path], from_dict({"networks": {"internal": ["138.68.3.71/32"]}}), db)
    inc, = incidents(db)
    assert inc["host"] == "138.68.3.71" and inc["findings_listed"] == 4
    ext = {json.loads(x)["src_ip"] for x in open(path) if '"alert"' in x} - {"138.68.3.71"}
    assert 20 <= inc["sources"] <= len(ext)  # listed sources: 20 per finding
    assert inc["summary"].startswith(f"under attack from {inc['sources']} sources: ")
    # details keep every signature: the signatures of the findings are the file's
    sids, alerts = set(), 0
    for line in open(path):
        e = json.loads(line)
        if e.get("event_type") == "alert":
            sids.add(e["alert"]["signature_id"])
            alerts += 1
    got = [s for f in rows(db, "SELECT details FROM findings")
           for s in json.loads(f["details"])["signatures"]]
    assert {s["sid"] for s in got} == sids and sum(s["count"] for s in got) == alerts
    # alerts from outside on the honeypot are inbound: never scored as an infection
    inbound = rows(db, "SELECT * FROM findings WHERE json_extract(score_terms, '$.direction') = 'inbound'")
    assert inbound and all(json.loads(f["score_terms"])["terms"][0]["term"].startswith("matrix[inbound")
                           for f in inbound)


# -- independent evidence ---------------------------------------------------------------------

def test_shared_connection_gives_no_corroboration(tmp_path):
    """horizontal_scan and unusual_port fire on the same tcp/445 connections (the demo)."""
    cfg = from_dict({"networks": {"internal": ["10.0.0.0/8"]}})
    pcap = ROOT / "pcaps" / "horizontal_scan.pcap"
    db = str(tmp_path / "d.db")
    analyze([str(pcap)], cfg, db)
    inc = next(i for i in incidents(db) if json.loads(i["detectors"]).get("horizontal_scan"))
    assert set(json.loads(inc["detectors"])) == {"horizontal_scan", "unusual_port"}
    t = terms(inc)
    assert len(t) == 2 and t[1]["value"] == 0 and "not independent" in t[1]["term"]
    top = rows(db, "SELECT urgency, score_terms FROM findings WHERE detector = 'horizontal_scan'")[0]
    own = sum(x["value"] for x in json.loads(top["score_terms"])["terms"]
              if not x["term"].startswith("corroborated"))
    assert inc["urgency"] == own  # the flow that fired both detectors adds nothing


def test_independent_behaviours_corroborate_and_the_incident_outranks_each_finding(tmp_path):
    host = "10.0.0.5"
    db = run(tmp_path, scan(host) + [irc(host, T0 + 600)]
             + [conn(T0 + 900, host, "198.51.100.9", 443, uid="Ctun", duration=7200.0,
                     orig_bytes=10**6, resp_bytes=10**6)])
    inc, = incidents(db)
    fams = json.loads(inc["families"])
    assert {"scan", "c2"} <= set(fams)
    t = terms(inc)
    raised = [x for x in t[1:] if x["value"] > 0]
    assert raised and all(x["term"].startswith("independent ") for x in raised)
    found = rows(db, "SELECT urgency FROM findings")
    assert inc["urgency"] == t[0]["value"] + len(raised)
    assert inc["urgency"] >= max(f["urgency"] for f in found)
    if len(raised) >= 2:
        assert inc["urgency"] > max(f["urgency"] for f in found)


def test_findings_further_apart_than_the_window_are_separate_incidents(tmp_path):
    host = "10.0.0.5"
    def scans_per_incident(db):
        return [json.loads(i["detectors"])["horizontal_scan"] for i in incidents(db)]

    db = run(tmp_path, scan(host) + scan(host, start=T0 + 2 * 86400))
    assert scans_per_incident(db) == [1, 1]
    db = run(tmp_path, scan(host) + scan(host, start=T0 + 2 * 86400),
             from_dict({"incidents": {"window": 3 * 86400}}), name="y.db")
    assert scans_per_incident(db) == [2]


# -- weak signals -------------------------------------------------------------------------------

def test_weak_signals_wait_for_company(tmp_path):
    # a site marks c2_port weak too (the list replaces the default one)
    cfg = from_dict({"incidents": {"weak_detectors": ["c2_port", "unusual_port"]}})
    db = run(tmp_path, [irc("10.0.0.5", T0)], cfg)
    inc, = incidents(db)
    assert inc["queued"] == 0 and "waiting for a strong detector" in json.loads(inc["score_terms"])["queued"]
    db = run(tmp_path, [irc("10.0.0.5", T0)] + scan("10.0.0.5", start=T0 + 60), cfg, name="y.db")
    inc, = incidents(db)
    assert inc["queued"] == 1


# -- inbound ------------------------------------------------------------------------------------

def vscan(src, dst, start=T0, n=25, state="S0"):
    return [conn(start + i, src, dst, 1000 + i, conn_state=state, uid=f"Cv{i}") for i in range(n)]


def test_external_scanner_is_inbound_on_the_internal_target(tmp_path):
    db = run(tmp_path, vscan("203.0.113.50", "10.0.0.9"))
    f, = rows(db, "SELECT * FROM findings")
    st = json.loads(f["score_terms"])
    assert f["host"] == "203.0.113.50" and st["asset_class"] == "external"
    assert (st["direction"], st["target"]) == ("inbound", "10.0.0.9")
    assert st["terms"][0]["term"] == "matrix[inbound][client target 10.0.0.9]" and f["urgency"] == 2
    inc, = incidents(db)
    assert (inc["host"], inc["direction"], inc["sources"]) == ("10.0.0.9", "inbound", 1)
    assert inc["summary"].startswith("under attack from 1 source: ") and inc["tier"] == 1
    assert inc["threat"] == "inbound"


def test_a_target_that_answered_scores_higher(tmp_path):
    answered = vscan("203.0.113.50", "10.0.0.9") + [
        conn(T0 + 100, "203.0.113.50", "10.0.0.9", 22, uid="Cssh", service="ssh")]
    db = run(tmp_path, answered)
    f = rows(db, "SELECT * FROM findings WHERE detector = 'vertical_scan'")[0]
    st = json.loads(f["score_terms"])
    assert st["terms"][0]["term"].startswith("matrix[inbound_answered]") and st["answered"]
    assert f["urgency"] == 4
    assert incidents(db)[0]["threat"] == "inbound_answered"


# -- playbooks, overdue, workflow, rescoring --------------------------------------------------

@pytest.mark.parametrize("tier", [1, 2, 3])
def test_every_threat_has_a_playbook_per_tier(tier):
    from zeekwatch.triage.score import DEFAULT_MATRIX

    books = playbooks.load(None)
    for threat in DEFAULT_MATRIX:
        text = playbooks.text_for(books, threat, tier)
        assert text.startswith("1. ") and len(text) > 40
    over = playbooks.load({"mass_mailer": {"tier3": "block tcp/25, keep the queue, call the CISO"}})
    assert playbooks.text_for(over, "mass_mailer", 3) == "block tcp/25, keep the queue, call the CISO"
    assert playbooks.text_for(over, "mass_mailer", 1) == playbooks.text_for(books, "mass_mailer", 1)


def test_bad_incidents_config_is_refused():
    from zeekwatch.errors import ConfigError

    for bad in ({"window": "a day"}, {"nope": 1}, {"playbooks": {"c2": {"tier4": "x"}}},
                {"weak_detectors": "off_hours"}):
        with pytest.raises(ConfigError, match="incidents"):
            Incidents(from_dict({"incidents": bad}))


def test_asset_import_rescores_the_stored_incident(tmp_path):
    db = run(tmp_path, [irc("10.0.0.5", T0)])
    before, = incidents(db)
    store = Store(db)
    TriageStore(store).import_assets([{"address": "10.0.0.5", "class": "core_server",
                                       "name": "erp", "owner": None}], "inv.csv")
    res = workflow.rescore(Incidents(Config()), store, "alice", "assets import inv.csv")
    after, = incidents(db)
    assert res == {"findings": 2, "incidents": 1}  # c2_port and unusual_port of the flow
    assert (before["urgency"], after["urgency"], after["tier"], after["owner"]) == (7, 10, 3, "CIO/CISO")
    assert after["playbook"] == playbooks.text_for(playbooks.load(None), "c2", 3)
    audit = rows(db, "SELECT * FROM incident_audit")
    assert [(a["who"], a["action"], a["note"]) for a in audit] == [
        ("alice", "rescore", "urgency 7 → 10 (assets import inv.csv)")]
    assert rows(db, "SELECT action FROM audit")[0]["action"] == "rescore"
    # again: nothing changes, nothing is audited twice
    assert workflow.rescore(Incidents(Config()), store, "alice", "again") == {"findings": 0, "incidents": 0}


def test_closing_closes_findings_and_reopening_reopens_them(tmp_path):
    db = run(tmp_path, [irc("10.0.0.5", T0)] + scan("10.0.0.5", start=T0 + 60))
    store, inc = Store(db), Incidents(Config())
    iid = incidents(db)[0]["id"]
    res = workflow.set_status(inc, store, iid[:6], "resolved", "alice", "reimaged")
    assert res["incident"]["status"] == "resolved" and res["incident"]["closed_at"]
    assert {f["status"] for f in rows(db, "SELECT status FROM findings")} == {"resolved"}
    with pytest.raises(Exception, match="it can move to investigating"):
        workflow.set_status(inc, store, iid, "contained", "alice", "x")
    workflow.set_status(inc, store, iid, "investigating", "bob", "came back")
    assert {f["status"] for f in rows(db, "SELECT status FROM findings")} == {"investigating"}
    acts = [(a["who"], a["old_status"], a["new_status"]) for a in rows(db, "SELECT * FROM incident_audit")]
    assert acts == [("alice", "new", "resolved"), ("bob", "resolved", "investigating")]
    n = len(rows(db, "SELECT id FROM findings"))
    assert rows(db, "SELECT count(*) n FROM audit WHERE action = 'incident-close'")[0]["n"] == n
    assert rows(db, "SELECT count(*) n FROM audit WHERE action = 'incident-reopen'")[0]["n"] == n


def test_overdue(tmp_path):
    db = run(tmp_path, [irc("10.0.0.5", T0)])
    ist = IncidentStore(Store(db))
    assert len(ist.select(("new",), True, overdue_at="2099-01-01T00:00:00Z")) == 1
    assert ist.select(("new",), True, overdue_at="2000-01-01T00:00:00Z") == []


# -- idempotence, follow = analyze --------------------------------------------------------------

def test_rerun_adds_nothing(tmp_path):
    conns = scan("10.0.0.5") + [irc("10.0.0.5", T0 + 600), irc("10.0.0.6", T0 + 50)]
    db = run(tmp_path, conns)
    first = incidents(db)
    links = rows(db, "SELECT * FROM incident_findings ORDER BY finding_id")
    log = str(tmp_path / "z.db.conn.log")
    analyze([log], Config(), db)
    assert incidents(db) == first
    assert rows(db, "SELECT * FROM incident_findings ORDER BY finding_id") == links


def test_follow_and_analyze_build_the_same_incidents(tmp_path):
    conns = scan("10.0.0.5") + [irc("10.0.0.5", T0 + 600), irc("10.0.0.6", T0 + 50)] \
        + scan("10.0.0.7", start=T0 + 100, prefix="10.9.7.")
    log = zeek_tsv(tmp_path / "conn.log", "conn", conns)
    a, f = str(tmp_path / "a.db"), str(tmp_path / "f.db")
    only = ["horizontal_scan", "c2_port"]  # follow's per-batch detectors (docs/follow.md)
    analyze([log], Config(), a, only=only)
    Follower([log], Config(), f, FollowOptions(once=True, interval=0.05, only=only)).run()
    cols = "id, host, direction, first_seen, urgency, tier, due_at, findings_counted, detectors, summary"
    key = "SELECT i.host, f.detector, f.key FROM incident_findings m JOIN incidents i ON i.id = m.incident_id " \
          "JOIN findings f ON f.id = m.finding_id ORDER BY 1, 2, 3"
    assert rows(a, f"SELECT {cols} FROM incidents ORDER BY id") == \
        rows(f, f"SELECT {cols} FROM incidents ORDER BY id")
    assert rows(a, key) == rows(f, key)
    assert len(rows(a, "SELECT * FROM incidents")) == 3
