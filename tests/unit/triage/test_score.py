"""Scoring as data: matrix, asset classes, modifiers, clamping, tiers and deadlines."""

from __future__ import annotations

import json

import pytest

from zeekwatch.config import from_dict
from zeekwatch.errors import ConfigError, InputError
from zeekwatch.finding import Finding
from zeekwatch.triage.score import DEFAULT_MATRIX, Scorer, read_inventory, tier_for

FIRST = "2024-05-01T10:00:00.000000Z"


def f(threat="worm", host="10.0.0.5", detector="horizontal_scan", first=FIRST, last=None,
      details=None, status="new", uids=None):
    return Finding(threat=threat, host=host, detector=detector, title=detector, first_seen=first,
                   last_seen=last or first, details=dict(details or {}), status=status,
                   uids=list(uids or []))


def scored(finding, scorer=None, others=()):
    scorer = scorer or Scorer(from_dict({}))
    scorer.score_all([finding], others)
    return finding


def terms(finding):
    """The score terms of a scored Finding, or of a stored row (JSON text)."""
    st = finding.score_terms if isinstance(finding, Finding) else json.loads(finding["score_terms"])
    return [(t["term"], t["value"]) for t in st["terms"]]


# -- matrix, clamping, tiers, deadlines --------------------------------------------------------
# base urgency (a one-value matrix row), modifier deltas -> urgency, tier, due_at
TIER_CASES = [
    (1, [], 1, 1, "2024-05-02T10:00:00.000000Z"),
    (3, [], 3, 1, "2024-05-02T10:00:00.000000Z"),    # 3 | 4 boundary
    (4, [], 4, 2, "2024-05-01T18:00:00.000000Z"),
    (3, [1], 4, 2, "2024-05-01T18:00:00.000000Z"),   # a modifier moves it across
    (7, [], 7, 2, "2024-05-01T18:00:00.000000Z"),    # 7 | 8 boundary
    (8, [], 8, 3, "2024-05-01T12:00:00.000000Z"),
    (7, [1], 8, 3, "2024-05-01T12:00:00.000000Z"),
    (10, [], 10, 3, "2024-05-01T12:00:00.000000Z"),
    (10, [1, 1], 10, 3, "2024-05-01T12:00:00.000000Z"),  # clamped down
    (1, [-3], 1, 1, "2024-05-02T10:00:00.000000Z"),      # clamped up
]


@pytest.mark.parametrize("base, deltas, urgency, tier, due", TIER_CASES)
def test_urgency_tier_and_due_at(base, deltas, urgency, tier, due):
    scorer = Scorer(from_dict({"scoring": {"matrix": {"t": [base] * 5}}}))
    finding = f(threat="t")
    scorer.score(finding, [(f"m{i}", d) for i, d in enumerate(deltas)])
    assert (finding.urgency, finding.tier, finding.due_at) == (urgency, tier, due)
    total = base + sum(deltas)
    clamp_terms = [v for t, v in terms(finding) if t == "clamped to 1..10"]
    assert clamp_terms == ([urgency - total] if total != urgency else [])


@pytest.mark.parametrize("urgency, number, name, hours, owner", [
    (1, 1, "watch", 24, "IT operations"), (3, 1, "watch", 24, "IT operations"),
    (4, 2, "act now", 8, "security team"), (7, 2, "act now", 8, "security team"),
    (8, 3, "act now", 2, "CIO/CISO"), (10, 3, "act now", 2, "CIO/CISO"),
])
def test_tiers(urgency, number, name, hours, owner):
    t = tier_for(urgency)
    assert (t.number, t.name, t.hours, t.owner) == (number, name, hours, owner)


@pytest.mark.parametrize("threat, cls, expected", [
    ("c2", "client", 7), ("c2", "core_server", 10), ("worm", "server", 7),
    ("recon", "client", 2), ("policy", "vip_client", 3), ("no_such_threat", "client", 3),
])
def test_matrix_defaults(threat, cls, expected):
    scorer = Scorer(from_dict({"scoring": {"default_asset_class": cls}}))
    finding = scored(f(threat=threat), scorer)
    assert finding.urgency == expected
    assert finding.score_terms["asset_class"] == cls


def test_score_terms_explain_everything():
    finding = scored(f(threat="ids", detector="ids_alert", details={"severity": 1}))
    st = finding.score_terms
    assert st == {"asset_class": "client", "asset_source": "default", "direction": "outbound",
                  "threat": "ids",
                  "terms": [{"term": "matrix[ids][client]", "value": 5},
                            {"term": "Suricata severity 1", "value": 1}],
                  "urgency": 6, "tier": "act now", "tier_number": 2, "owner": "security team",
                  "sla_hours": 8}


# -- modifiers ---------------------------------------------------------------------------------
def other(detector, first=FIRST, last=None, host="10.0.0.5", status="new", uids=None):
    return Finding(detector=detector, threat="worm", title=detector, host=host, first_seen=first,
                   last_seen=last or first, status=status, uids=list(uids or []))


MODIFIER_CASES = [
    # finding kwargs, others, expected modifier terms
    ({}, [], []),
    ({}, [other("vertical_scan", "2024-05-01T10:59:00.000000Z")],
     [("corroborated by vertical_scan within 1 h", 1)]),
    ({}, [other("vertical_scan", "2024-05-01T11:00:00.000000Z")],
     [("corroborated by vertical_scan within 1 h", 1)]),                   # exactly 1 h
    ({}, [other("vertical_scan", "2024-05-01T11:00:01.000000Z")], []),    # beyond the hour
    ({}, [other("vertical_scan", "2024-05-01T08:00:00.000000Z", "2024-05-01T09:30:00.000000Z")],
     [("corroborated by vertical_scan within 1 h", 1)]),                   # earlier, long episode
    ({}, [other("horizontal_scan")], []),                                  # same detector
    ({}, [other("vertical_scan", host="10.0.0.6")], []),                   # another host
    ({}, [other("vertical_scan", status="suppressed")], []),
    ({}, [other("vertical_scan", status="false_positive")], []),
    ({}, [other("outbound_ping"), other("off_hours")], []),               # weak detectors only
    ({}, [other("c2_port"), other("vertical_scan"), other("outbound_ping")],
     [("corroborated by c2_port, vertical_scan within 1 h", 1)]),          # +1 once
    ({"detector": "off_hours"}, [other("vertical_scan")], []),            # weak: no bonus either
    # one connection firing two detectors is one piece of evidence (irc-basic.pcap: c2_port and
    # unusual_port on the same flow); another connection of the same host corroborates
    ({"uids": ["Circ1"]}, [other("unusual_port", uids=["Circ1"])], []),
    ({"uids": ["Circ1", "Circ2"]}, [other("unusual_port", uids=["Circ2", "Cx"])], []),
    ({"uids": ["Circ1"]}, [other("unusual_port", uids=["Cother"])],
     [("corroborated by unusual_port within 1 h", 1)]),
    ({"detector": "mass_mailer", "threat": "mass_mailer", "details": {"mx_lookups": 7}}, [],
     [("MX lookups by the same host (7)", 1)]),
    ({"detector": "mass_mailer", "threat": "mass_mailer", "details": {"mx_lookups": 0}}, [], []),
    ({"detector": "ids_alert", "threat": "ids", "details": {"severity": 1}}, [],
     [("Suricata severity 1", 1)]),
    ({"detector": "ids_alert", "threat": "ids", "details": {"severity": 2}}, [], []),
]


@pytest.mark.parametrize("kw, others, expected", MODIFIER_CASES)
def test_modifiers(kw, others, expected):
    finding = scored(f(**kw), others=others)
    assert terms(finding)[1:] == expected
    assert finding.urgency == terms(finding)[0][1] + sum(v for _, v in expected)


def test_modifiers_combine_and_clamp():
    scorer = Scorer(from_dict({"scoring": {"default_asset_class": "core_server"}}))
    finding = f(threat="c2", detector="ids_alert", details={"severity": 1})
    scorer.score_all([finding, f(threat="c2", detector="c2_port")])
    assert terms(finding) == [("matrix[c2][core_server]", 10),
                              ("corroborated by c2_port within 1 h", 1),
                              ("Suricata severity 1", 1), ("clamped to 1..10", -2)]
    assert (finding.urgency, finding.tier) == (10, 3)


def test_modifier_values_window_and_weak_list_come_from_config():
    scorer = Scorer(from_dict({"scoring": {"modifiers": {"corroboration": 2},
                                           "corroboration_window": 600,
                                           "weak_detectors": []}}))
    near = [other("outbound_ping", "2024-05-01T10:10:00.000000Z")]
    far = [other("vertical_scan", "2024-05-01T10:10:01.000000Z")]
    assert terms(scored(f(), scorer, near))[1:] == [("corroborated by outbound_ping within 600 s", 2)]
    assert terms(scored(f(), scorer, far))[1:] == []


# -- asset classes -----------------------------------------------------------------------------
def test_asset_class_sources_and_precedence():
    scorer = Scorer(from_dict({"scoring": {"assets": {
        "server": ["10.0.0.0/24"], "core_server": ["10.0.0.10/32"], "vip": ["10.9.0.0/16"]}}}))
    scorer.load_inventory([
        {"address": "10.0.0.0/25", "class": "client", "name": "lab", "owner": "it"},
        {"address": "10.0.0.7", "class": "confidential_server", "name": "hr-db", "owner": "hr"},
    ])
    assert scorer.asset_class("10.0.0.7") == ("confidential_server", "inventory 10.0.0.7 hr-db")
    assert scorer.asset_class("10.0.0.8") == ("client", "inventory 10.0.0.0/25 lab")
    assert scorer.asset_class("10.0.0.200") == ("server", "scoring.assets")
    assert scorer.asset_class("10.0.0.10") == ("client", "inventory 10.0.0.0/25 lab")  # inventory first
    assert scorer.asset_class("10.9.1.1") == ("vip_client", "scoring.assets")
    assert scorer.asset_class("192.168.1.1") == ("client", "default")
    assert scorer.asset_class("fd00::1") == ("client", "default")


@pytest.mark.parametrize("scoring, message", [
    ({"matrix": {"worm": [1, 2, 3]}}, r"scoring.matrix.worm: need 5 integers 1..10"),
    ({"matrix": {"worm": [1, 2, 3, 4, 11]}}, r"scoring.matrix.worm: need 5 integers"),
    ({"assets": {"printer": ["10.0.0.0/8"]}}, r"scoring.assets.printer: unknown asset class 'printer'"),
    ({"assets": {"server": ["10.0.0.0/33"]}}, r"scoring.assets.server: .*10.0.0.0/33"),
    ({"tier_hours": [24, 8]}, r"scoring.tier_hours: three positive numbers"),
    ({"modifiers": {"bonus": 1}}, r"scoring.modifiers: integer values for corroboration"),
    ({"matrixx": {}}, r"scoring: unknown key\(s\) matrixx"),
])
def test_bad_scoring_config(scoring, message):
    with pytest.raises(ConfigError, match=message):
        Scorer(from_dict({"scoring": scoring}))


def test_tier_hours_and_owners_from_config():
    scorer = Scorer(from_dict({"scoring": {"tier_hours": [48, 4, 1],
                                           "tier_owners": ["helpdesk", "SOC", "CISO"]}}))
    finding = scored(f(threat="c2"), scorer)
    st = finding.score_terms
    assert (finding.tier, finding.due_at, st["owner"]) == (2, "2024-05-01T14:00:00.000000Z", "SOC")


def test_default_matrix_is_complete():
    assert all(len(row) == 5 and all(1 <= v <= 10 for v in row) for row in DEFAULT_MATRIX.values())


# -- inventory CSV ----------------------------------------------------------------------------
def test_read_inventory(tmp_path):
    p = tmp_path / "assets.csv"
    p.write_text("Address,Class,Name,Owner\n10.0.0.7,confidential_server,hr-db,hr\n"
                 "10.0.1.0/24,Core business server,erp,finance\n\n192.168.1.5/32,vip,ceo-laptop,\n")
    assert read_inventory(str(p)) == [
        {"address": "10.0.0.7", "class": "confidential_server", "name": "hr-db", "owner": "hr"},
        {"address": "10.0.1.0/24", "class": "core_server", "name": "erp", "owner": "finance"},
        {"address": "192.168.1.5", "class": "vip_client", "name": "ceo-laptop", "owner": None},
    ]


@pytest.mark.parametrize("text, message", [
    ("host,kind\n10.0.0.1,server\n", r"assets.csv:1: an inventory CSV needs a header with address"),
    ("address,class\n10.0.0.1,server\n10.0.0.300,server\n", r"assets.csv:3: .*10.0.0.300"),
    ("cidr,class\n10.0.0.0/24,printer\n", r"assets.csv:2: unknown asset class 'printer'"),
])
def test_bad_inventory(tmp_path, text, message):
    p = tmp_path / "assets.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=message):
        read_inventory(str(p))


# -- in the analysis stages ------------------------------------------------------------------
def test_inventory_and_stored_findings_are_used_by_the_analysis(tmp_path):
    from helpers import conn
    from triage_helpers import T0, analyze_tables, sweep

    from zeekwatch.store.db import Store
    from zeekwatch.store.triage import TriageStore

    db = str(tmp_path / "f.db")
    s = Store(db)
    TriageStore(s).import_assets([{"address": "10.0.0.5", "class": "core_server", "name": "erp",
                                   "owner": "finance"}], "assets.csv")
    s.close()
    analyze_tables(db, only=["horizontal_scan"], conn=sweep("10.0.0.5"))
    # a later run: a vertical scan by the same host 30 min later is corroborated by the stored one
    rows = [conn(T0 + 1800 + i, "10.0.0.5", "203.0.113.99", 2000 + i, conn_state="REJ") for i in range(25)]
    analyze_tables(db, only=["vertical_scan"], conn=rows)
    s = Store(db)
    got = {f["detector"]: f for f in s.findings()}
    s.close()
    h, v = got["horizontal_scan"], got["vertical_scan"]
    assert json.loads(h["score_terms"])["asset_source"] == "inventory 10.0.0.5 erp"
    # the stored finding is corroborated in return, its score refreshed
    assert terms(h) == [("matrix[worm][core_server]", 9), ("corroborated by vertical_scan within 1 h", 1)]
    assert terms(v) == [("matrix[worm][core_server]", 9), ("corroborated by horizontal_scan within 1 h", 1)]
    assert (v["urgency"], v["tier"], v["due_at"]) == (10, 3, "2023-11-15T00:43:20.000000Z")
