"""ids_alert as data: host side, grouping window, peers, category -> threat, real EVE files."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json

import pytest
from conftest import shared_file
from helpers import detect, detect_files
from hypothesis import given, settings
from hypothesis import strategies as st

from zeekwatch.detectors.ids import CATEGORY_THREATS
from zeekwatch.errors import ConfigError

TROJAN = "A Network Trojan was detected"
# the shared EVE samples: alerts rolled up per (host, category) — 207 and 44 alerts
FINDINGS_WRCCDC, C2_WRCCDC, FINDINGS_HONEYPOT = 133, 19, 38


def alert(ts, src, dst, sid=2000001, category=TROJAN, signature=None, severity=1, flow_id=None,
          community_id=None, gid=1):
    return dict(ts=ts, orig_h=src, orig_p=40000, resp_h=dst, resp_p=443, proto="tcp", gid=gid,
                sid=sid, rev=1, signature=signature or f"ET TEST signature {sid}",
                category=category, severity=severity, action="allowed",
                flow_id=flow_id if flow_id is not None else int(ts * 10) + sid,
                community_id=community_id)


def details(f):
    return f.details


def entities(found):
    return sorted((f.host, f.peer, f.key, f.observed) for f in found)


def test_one_alert_is_one_finding():
    f, = detect("ids_alert", alert=[alert(1000, "203.0.113.9", "10.0.0.7", severity=1)])
    assert (f.host, f.peer, f.key, f.threat) == ("10.0.0.7", "203.0.113.9",
                                                             f"category:{TROJAN}", "c2")
    assert (f.observed, f.threshold, f.evidence_total) == (1.0, 1.0, 1)
    assert details(f) == {"signature": "ET TEST signature 2000001", "category": TROJAN,
                          "sid": 2000001, "gid": 1, "severity": 1, "host_role": "dst",
                          "signature_total": 1, "sids": [2000001],
                          "signatures": [{"sid": 2000001, "gid": 1, "count": 1,
                                          "signature": "ET TEST signature 2000001"}]}
    assert f.summary == ('10.0.0.7: 1 alert "ET TEST signature 2000001" (sid:2000001, '
                            'A Network Trojan was detected, severity 1) with 203.0.113.9')


@pytest.mark.parametrize("src, dst, host", [
    ("203.0.113.9", "10.0.0.7", "10.0.0.7"),  # only the destination is internal
    ("10.0.0.7", "203.0.113.9", "10.0.0.7"),  # only the source is internal
    ("10.0.0.7", "10.0.0.8", "10.0.0.7"),  # both internal: the source
    ("198.51.100.1", "203.0.113.9", "198.51.100.1"),  # neither: the source
    ("2001:db8::9", "fd00::7", "fd00::7"),  # IPv6
])
def test_host_is_the_internal_side(src, dst, host):
    f, = detect("ids_alert", alert=[alert(1000, src, dst)])
    assert f.host == host and f.peer == (dst if host == src else src)


def test_alerts_within_group_window_are_one_finding():
    rows = [alert(t, "203.0.113.9", "10.0.0.7") for t in (0, 3000, 6000, 9000)]
    f, = detect("ids_alert", alert=rows)
    assert (f.observed, f.first_seen, f.last_seen) == \
        (4.0, "1970-01-01T00:00:00.000000Z", "1970-01-01T02:30:00.000000Z")


def test_alerts_exactly_group_window_apart_join_and_further_split():
    rows = [alert(0, "203.0.113.9", "10.0.0.7"), alert(3600, "203.0.113.9", "10.0.0.7")]
    assert [f.observed for f in detect("ids_alert", alert=rows)] == [2.0]
    rows[1]["ts"] = 3600.5
    assert [f.observed for f in detect("ids_alert", alert=rows)] == [1.0, 1.0]


def test_group_window_configurable():
    rows = [alert(0, "203.0.113.9", "10.0.0.7"), alert(100, "203.0.113.9", "10.0.0.7")]
    cfg = {"detectors": {"ids_alert": {"group_window": 50}}, "store": {"merge_gap": 0}}
    assert len(detect("ids_alert", config=cfg, alert=rows)) == 2


def test_equal_timestamps():
    rows = [alert(1000, "203.0.113.9", "10.0.0.7", flow_id=i) for i in range(5)]
    f, = detect("ids_alert", alert=rows)
    assert f.observed == 5.0 and sorted(f.uids) == ["0", "1", "2", "3", "4"]


def test_signatures_of_one_category_roll_up_per_host():
    rows = [alert(1000, "203.0.113.9", "10.0.0.7", sid=1), alert(1001, "203.0.113.8", "10.0.0.7", sid=2),
            alert(1002, "203.0.113.9", "10.0.0.7", sid=2),
            alert(1003, "203.0.113.9", "10.0.0.7", sid=3, category="Misc Attack"),
            alert(1004, "203.0.113.9", "10.0.0.8", sid=1)]
    found = detect("ids_alert", alert=rows)
    assert [(h, k, n) for h, _, k, n in entities(found)] == \
        [("10.0.0.7", "category:A Network Trojan was detected", 3.0),
         ("10.0.0.7", "category:Misc Attack", 1.0),
         ("10.0.0.8", "category:A Network Trojan was detected", 1.0)]
    f = next(f for f in found if f.observed == 3.0)
    d = details(f)
    assert d["signatures"] == [
        {"sid": 2, "gid": 1, "signature": "ET TEST signature 2", "count": 2},
        {"sid": 1, "gid": 1, "signature": "ET TEST signature 1", "count": 1}]
    assert (d["sids"], d["signature_total"], f.distinct_total) == ([1, 2], 2, 2)
    assert "sid" not in d or d["sid"] is None  # no single signature to name
    assert f.summary == ('10.0.0.7: 3 alerts of 2 signatures in "A Network Trojan was detected" '
                            '(most: "ET TEST signature 2" ×2; severity 1) with 203.0.113.9 and 1 other peer')


def test_alerts_without_category_group_per_signature():
    rows = [alert(1000, "203.0.113.9", "10.0.0.7", sid=1, category=None),
            alert(1001, "203.0.113.9", "10.0.0.7", sid=2, category=None)]
    assert sorted(f.key for f in detect("ids_alert", alert=rows)) == ["sid:1", "sid:2"]


def test_host_role_is_the_hosts_side():
    rows = [alert(1000, "203.0.113.9", "10.0.0.7"), alert(1001, "10.0.0.7", "203.0.113.9")]
    assert details(detect("ids_alert", alert=rows[:1])[0])["host_role"] == "dst"
    assert details(detect("ids_alert", alert=rows[1:])[0])["host_role"] == "src"
    assert details(detect("ids_alert", alert=rows)[0])["host_role"] == "both"


def test_peer_is_the_most_frequent_other_side():
    rows = [alert(1000, "10.0.0.7", "203.0.113.1"), alert(1001, "10.0.0.7", "203.0.113.2"),
            alert(1002, "10.0.0.7", "203.0.113.2"), alert(1003, "198.51.100.3", "10.0.0.7")]
    f, = detect("ids_alert", alert=rows)
    assert (f.peer, f.distinct_total, f.values) == \
        ("203.0.113.2", 3, ["198.51.100.3", "203.0.113.1", "203.0.113.2"])
    assert f.summary.endswith("with 203.0.113.2 and 2 other peers")
    # a tie goes to the peer seen first
    f, = detect("ids_alert", alert=rows[:2])
    assert f.peer == "203.0.113.1"


def test_uids_prefer_community_id_over_flow_id():
    rows = [alert(1000, "10.0.0.7", "203.0.113.1", flow_id=77, community_id="1:abc="),
            alert(1001, "10.0.0.7", "203.0.113.1", flow_id=78),
            alert(1002, "10.0.0.7", "203.0.113.1", flow_id=78)]
    assert sorted(detect("ids_alert", alert=rows)[0].uids) == ["1:abc=", "78"]


@pytest.mark.parametrize("category, threat", [
    ("A Network Trojan was detected", "c2"),
    ("A Network Trojan was Detected", "c2"),  # case-insensitive
    ("Malware Command and Control Activity Detected", "c2"),
    ("Attempted Information Leak", "recon"),
    ("Detection of a Network Scan", "recon"),
    ("Potential Corporate Privacy Violation", "policy"),
    ("Potentially Bad Traffic", "policy"),
    ("Misc Attack", "ids"),
    (None, "ids"),
])
def test_threat_from_category(category, threat):
    f, = detect("ids_alert", alert=[alert(1000, "10.0.0.7", "203.0.113.1", category=category)])
    assert f.threat == threat and "threat" not in details(f)


def test_category_map_and_default_overridable():
    rows = [alert(1000, "10.0.0.7", "203.0.113.1", sid=1, category="Misc Attack"),
            alert(1000, "10.0.0.7", "203.0.113.1", sid=2, category="Misc activity"),
            alert(1000, "10.0.0.7", "203.0.113.1", sid=3, category=TROJAN)]
    cfg = {"detectors": {"ids_alert": {"category_threats": {"misc attack": "worm"},
                                       "default_threat": "policy"}}}
    found = detect("ids_alert", config=cfg, alert=rows)
    assert sorted((f.key, f.threat) for f in found) == \
        [("category:A Network Trojan was detected", "c2"), ("category:Misc Attack", "worm"),
         ("category:Misc activity", "policy")]


def test_bad_category_map_is_refused():
    cfg = {"detectors": {"ids_alert": {"category_threats": {"Misc Attack": 3}}}}
    with pytest.raises(ConfigError, match=r"detectors.ids_alert.category_threats: .* is not a table of text keys"):
        detect("ids_alert", config=cfg, alert=[alert(1000, "10.0.0.7", "203.0.113.1")])


def test_most_severe_is_kept():
    rows = [alert(1000, "10.0.0.7", "203.0.113.1", severity=3),
            alert(1001, "10.0.0.7", "203.0.113.1", severity=1)]
    assert details(detect("ids_alert", alert=rows)[0])["severity"] == 1


# -- property test: grouping against a brute-force oracle -----------------------------------

def oracle_groups(times, window):
    """Sizes of runs of sorted times whose consecutive gaps are <= window."""
    times = sorted(times)
    sizes = [1]
    for a, b in zip(times, times[1:]):
        if b - a <= window:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sorted(sizes)


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(times=st.lists(st.integers(min_value=0, max_value=20000).map(float), min_size=1, max_size=40))
def test_grouping_matches_oracle(times):
    rows = [alert(t, "10.0.0.7", "203.0.113.1", flow_id=i) for i, t in enumerate(times)]
    cfg = {"store": {"merge_gap": 0}}
    found = detect("ids_alert", config=cfg, alert=rows)
    assert sorted(f.observed for f in found) == oracle_groups(times, 3600.0)


# -- real data: Suricata EVE alerts ---------------------------------------------------------

INTERNAL = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                              "fc00::/7")]


def internal(addr):
    ip = ipaddress.ip_address(addr)
    return any(ip.version == n.version and ip in n for n in INTERNAL)


def eve_oracle(path):
    """Sorted (host, key, alert count, threat, signatures) of every group, computed straight
    from the EVE JSON: alerts of one host and category within 3600 s of each other."""
    groups = {}
    threats = {k.lower(): v for k, v in CATEGORY_THREATS.items()}
    for line in open(path):
        e = json.loads(line)
        if e.get("event_type") != "alert":
            continue
        src, dst = e["src_ip"], e["dest_ip"]
        host = src if internal(src) or not internal(dst) else dst
        ts = dt.datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() \
            if e["timestamp"][-5] in "+-" else \
            dt.datetime.fromisoformat(e["timestamp"]).replace(tzinfo=dt.timezone.utc).timestamp()
        a = e["alert"]
        key = f"category:{a['category']}" if a.get("category") else f"sid:{a['signature_id']}"
        groups.setdefault((host, key), []).append(
            (ts, threats.get((a.get("category") or "").lower(), "ids"), a["signature_id"]))
    out = []
    for (host, key), rows in groups.items():
        rows.sort()
        run = [rows[0]]
        for prev, cur in zip(rows, rows[1:]):
            if cur[0] - prev[0] > 3600.0:
                out.append((host, key, float(len(run)), run[0][1], sorted({r[2] for r in run})))
                run = []
            run.append(cur)
        out.append((host, key, float(len(run)), run[0][1], sorted({r[2] for r in run})))
    return sorted(out)


@pytest.mark.parametrize("rel, findings, c2", [
    ("frank-suricata/wrccdc-2018/alerts-only.eve.ndjson", FINDINGS_WRCCDC, C2_WRCCDC),
    ("frank-suricata/honeypot-2018/alerts-only.eve.ndjson", FINDINGS_HONEYPOT, 0),
])
def test_real_eve_alerts(rel, findings, c2):
    path = shared_file(rel)
    from zeekwatch.readers.base import IngestLog

    log = IngestLog()
    found = detect_files([path], "ids_alert", log=log)
    assert log.reject_count == 0
    got = sorted((f.host, f.key, f.observed, f.threat, details(f)["sids"]) for f in found)
    assert len(found) == findings and got == eve_oracle(path)
    assert sum(f.threat == "c2" for f in found) == c2
    assert all(f.threshold == 1.0 and f.uids and f.peer for f in found)
    # details keep every signature, with counts that add up to the alerts
    assert all(sum(s["count"] for s in details(f)["signatures"]) == f.observed for f in found)
