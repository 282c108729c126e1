"""Mail detectors as data: mass_mailer and mx_burst, boundaries, corroboration, oracle checks."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers import conn, detect
from hypothesis import given, settings
from hypothesis import strategies as st

HOST = "10.0.0.5"


def smtp(host, n, start=1000.0, step=1.0, port=25, state="S0", prefix="203.0.113.", first=1):
    """``n`` SMTP attempts from ``host`` to ``n`` distinct servers."""
    return [conn(start + i * step, host, f"{prefix}{first + i}", port, conn_state=state)
            for i in range(n)]


def mx(ts, host, name, qtype="MX", answers=None, uid=None):
    return dict(ts=ts, uid=uid or f"D{abs(hash((ts, host, name, qtype))) % 10**9}", orig_h=host,
                resp_h="10.0.0.53", query=name, qtype_name=qtype, rcode_name="NOERROR",
                answers=answers)


def mx_lookups(host, n, start=1000.0, step=1.0):
    return [mx(start + i * step, host, f"dom{i}.example") for i in range(n)]


def details(f):
    return f.details


# -- mass_mailer: thresholds and windows ----------------------------------------------------

def test_mass_mailer_fires_at_exactly_threshold():
    found = detect("mass_mailer", conn=smtp(HOST, 20))
    assert [(f.host, f.key, f.observed, f.threshold) for f in found] == \
        [(HOST, "smtp", 20.0, 20.0)]
    f = found[0]
    assert f.threat == "mass_mailer" and f.distinct_total == 20 and len(f.uids) == 20
    assert f.summary.startswith(f"{HOST} opened SMTP to 20 external servers in 60 s, "
                                   "with no MX lookup seen")


def test_mass_mailer_below_threshold_is_silent():
    assert detect("mass_mailer", conn=smtp(HOST, 19)) == []


def test_mass_mailer_repeated_server_counts_once():
    rows = smtp(HOST, 19) + [conn(1030.0, HOST, "203.0.113.1", 25, orig_p=50000)]
    assert detect("mass_mailer", conn=rows) == []


def test_mass_mailer_events_exactly_window_apart_count_together():
    assert len(detect("mass_mailer", conn=smtp(HOST, 20, start=0.0, step=60.0 / 19))) == 1
    assert detect("mass_mailer", conn=smtp(HOST, 20, start=0.0, step=60.01 / 19)) == []


def test_mass_mailer_equal_timestamps():
    found = detect("mass_mailer", conn=smtp(HOST, 25, step=0.0))
    assert [f.observed for f in found] == [25.0]


@pytest.mark.parametrize("state", ["S0", "REJ", "SF", "RSTO", "SH"])
def test_mass_mailer_refused_and_unanswered_attempts_count(state):
    assert len(detect("mass_mailer", conn=smtp(HOST, 20, state=state))) == 1


def test_mass_mailer_backscatter_does_not_count():
    assert detect("mass_mailer", conn=smtp(HOST, 30, state="SHR")) == []
    rows = [conn(1000 + i, HOST, f"203.0.113.{i + 1}", 25, conn_state="OTH", history="h")
            for i in range(30)]
    assert detect("mass_mailer", conn=rows) == []


def test_mass_mailer_ipv6():
    rows = [conn(1000 + i, "fd00::5", f"2001:db8::{i + 1:x}", 25, conn_state="REJ")
            for i in range(20)]
    assert [f.host for f in detect("mass_mailer", conn=rows)] == ["fd00::5"]


def test_mass_mailer_ipv6_mail_server_is_exempt():
    rows = [conn(1000 + i, "fd00::25", f"2001:db8::{i + 1:x}", 25) for i in range(20)]
    cfg = {"networks": {"mail_servers": ["fd00::25/128"]}}
    assert detect("mass_mailer", config=cfg, conn=rows) == []


def test_configured_mail_server_is_exempt():
    rows = smtp("10.0.0.25", 40) + smtp(HOST, 20)
    found = detect("mass_mailer", config={"networks": {"mail_servers": ["10.0.0.25"]}}, conn=rows)
    assert [f.host for f in found] == [HOST]


def test_external_host_and_internal_servers_are_exempt():
    assert detect("mass_mailer", conn=smtp("198.51.100.7", 40)) == []  # outside relay attempts
    assert detect("mass_mailer", conn=smtp(HOST, 40, prefix="10.1.0.")) == []  # internal servers


def test_port_587_not_counted_by_default_but_configurable():
    rows = smtp(HOST, 20, port=587)
    assert detect("mass_mailer", conn=rows) == []
    found = detect("mass_mailer", config={"detectors": {"mass_mailer": {"ports": [25, 587]}}},
                   conn=rows)
    assert len(found) == 1


def test_udp_to_port_25_is_not_smtp():
    rows = [conn(1000 + i, HOST, f"203.0.113.{i + 1}", 25, proto="udp", conn_state="S0")
            for i in range(20)]
    assert detect("mass_mailer", conn=rows) == []


def test_mass_mailer_thresholds_configurable():
    cfg = {"detectors": {"mass_mailer": {"min_servers": 5, "window": 10}}}
    assert [f.threshold for f in detect("mass_mailer", config=cfg, conn=smtp(HOST, 5, step=2.5))] \
        == [5.0]
    assert detect("mass_mailer", config=cfg, conn=smtp(HOST, 5, step=2.6)) == []


# -- mass_mailer: corroboration -------------------------------------------------------------

def test_mx_corroboration_counts_distinct_mx_queries_in_window():
    rows = smtp(HOST, 20, start=1000.0)  # t_first = 1000, t_last = 1019
    dns = [
        mx(939.0, HOST, "early.example"),  # before t_first - 60: not counted
        mx(940.0, HOST, "a.example"),  # exactly t_first - 60: counted
        mx(990.0, HOST, "b.example"), mx(991.0, HOST, "B.example"),  # same name, other case
        mx(1010.0, HOST, "c.example"), mx(1019.0, HOST, "d.example"),  # during, at t_last
        mx(1020.0, HOST, "late.example"),  # after t_last: not counted
        mx(1000.0, HOST, "e.example", qtype="A"),  # not MX
        mx(1000.0, "10.0.0.6", "f.example"),  # another host
    ]
    f, = detect("mass_mailer", conn=rows, dns=dns)
    assert details(f)["mx_lookups"] == 4 and details(f)["corroborated"] is True
    assert "in 60 s, after 4 MX lookups" in f.summary


def test_resolved_servers_counts_addresses_from_the_hosts_dns_answers():
    rows = smtp(HOST, 20)
    dns = [mx(900.0, HOST, "mx.a.example", qtype="A", answers=["203.0.113.1", "203.0.113.2"]),
           mx(901.0, HOST, "mx.b.example", qtype="A", answers=["203.0.113.3", "192.0.2.99"]),
           mx(902.0, "10.0.0.6", "mx.c.example", qtype="A", answers=["203.0.113.4"])]
    f, = detect("mass_mailer", conn=rows, dns=dns)
    d = details(f)
    assert (d["resolved_servers"], d["mx_lookups"], d["corroborated"]) == (3, 0, True)
    assert "3 of 20 server addresses came from its DNS answers" in f.summary


def test_uncorroborated_mass_mailer():
    f, = detect("mass_mailer", conn=smtp(HOST, 20))
    assert details(f) == {"mx_lookups": 0, "servers": 20, "resolved_servers": 0,
                          "corroborated": False}


# -- mx_burst -------------------------------------------------------------------------------

def test_mx_burst_fires_at_exactly_threshold():
    found = detect("mx_burst", dns=mx_lookups(HOST, 20))
    assert [(f.host, f.key, f.observed, f.threat) for f in found] == \
        [(HOST, "dns/MX", 20.0, "mass_mailer")]
    assert found[0].summary == (f"{HOST} looked up MX records of 20 distinct names within "
                                   "60 s (threshold 20)")


def test_mx_burst_below_threshold_and_repeats():
    assert detect("mx_burst", dns=mx_lookups(HOST, 19)) == []
    rows = mx_lookups(HOST, 19) + [mx(1005.0, HOST, "DOM1.example"), mx(1006.0, HOST, "dom2.example")]
    assert detect("mx_burst", dns=rows) == []  # names are case-insensitive, repeats count once


def test_mx_burst_only_mx_queries():
    rows = [dict(r, qtype_name="A") for r in mx_lookups(HOST, 30)]
    assert detect("mx_burst", dns=rows) == []


def test_mx_burst_window_boundary_and_equal_timestamps():
    assert len(detect("mx_burst", dns=mx_lookups(HOST, 20, start=0.0, step=60.0 / 19))) == 1
    assert detect("mx_burst", dns=mx_lookups(HOST, 20, start=0.0, step=60.01 / 19)) == []
    assert [f.observed for f in detect("mx_burst", dns=mx_lookups(HOST, 22, step=0.0))] == [22.0]


def test_mx_burst_exemptions():
    rows = mx_lookups("10.0.0.25", 30) + mx_lookups("198.51.100.7", 30) + mx_lookups("10.0.0.53", 30)
    cfg = {"networks": {"mail_servers": ["10.0.0.25"], "dns_servers": ["10.0.0.53"]}}
    assert detect("mx_burst", config=cfg, dns=rows) == []
    cfg["detectors"] = {"mx_burst": {"ignore_dns_servers": False}}
    assert [f.host for f in detect("mx_burst", config=cfg, dns=rows)] == ["10.0.0.53"]


def test_mx_burst_ipv6():
    found = detect("mx_burst", dns=mx_lookups("fd00::7", 20))
    assert [f.host for f in found] == ["fd00::7"]


def test_mass_mailer_and_mx_burst_together():
    found = detect(["mass_mailer", "mx_burst"], conn=smtp(HOST, 20, start=1030.0),
                   dns=mx_lookups(HOST, 20))
    assert sorted(f.detector for f in found) == ["mass_mailer", "mx_burst"]
    mailer, = [f for f in found if f.detector == "mass_mailer"]
    assert details(mailer)["mx_lookups"] == 20


# -- property tests: the SQL window against a brute-force oracle ----------------------------

def oracle_max_distinct(events, window):
    """Max over windows [T - window, T] (T an event time) of distinct values."""
    best = 0
    for t_end, _ in events:
        best = max(best, len({v for t, v in events if t_end - window <= t <= t_end}))
    return best


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


events_strategy = st.lists(
    st.tuples(st.integers(min_value=0, max_value=300).map(float), st.integers(min_value=1, max_value=12)),
    min_size=1, max_size=60)
mx_strategy = st.lists(
    st.tuples(st.integers(min_value=-100, max_value=400).map(float), st.integers(min_value=1, max_value=8)),
    max_size=20)


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(events=events_strategy, lookups=mx_strategy, threshold=st.integers(min_value=2, max_value=8))
def test_mass_mailer_window_and_mx_count_match_oracle(events, lookups, threshold):
    rows = [conn(t, HOST, f"203.0.113.{v}", 25, conn_state="REJ", orig_p=1000 + i, uid=f"C{i}")
            for i, (t, v) in enumerate(events)]
    dns = [mx(t, HOST, f"d{v}.example", uid=f"D{i}") for i, (t, v) in enumerate(lookups)]
    cfg = {"detectors": {"mass_mailer": {"min_servers": threshold}}}
    found = detect("mass_mailer", config=cfg, conn=rows, dns=dns)
    expected = oracle_max_distinct(events, 60.0)
    assert (max(f.observed for f in found) if found else 0) == \
        (expected if expected >= threshold else 0)
    for f in found:
        lo, hi = epoch(f.first_seen) - 60.0, epoch(f.last_seen)
        assert details(f)["mx_lookups"] == len({v for t, v in lookups if lo <= t <= hi})


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(events=events_strategy, threshold=st.integers(min_value=2, max_value=8))
def test_mx_burst_window_matches_oracle(events, threshold):
    dns = [mx(t, HOST, f"d{v}.example", uid=f"D{i}") for i, (t, v) in enumerate(events)]
    cfg = {"detectors": {"mx_burst": {"min_queries": threshold}}}
    found = detect("mx_burst", config=cfg, dns=dns)
    expected = oracle_max_distinct(events, 60.0)
    assert (max(f.observed for f in found) if found else 0) == \
        (expected if expected >= threshold else 0)


def test_corroboration_covers_merged_episodes():
    # two bursts 200 s apart merge into one finding (store.merge_gap 300 s) ...
    rows = smtp(HOST, 20, start=1000.0) + smtp(HOST, 20, start=1220.0, first=101)
    dns = [mx(950.0, HOST, "a.example"), mx(1200.0, HOST, "b.example"),
           mx(1230.0, HOST, "c.example", qtype="A", answers=["203.0.113.101"])]
    f, = detect("mass_mailer", conn=rows, dns=dns)
    d = details(f)
    assert (f.observed, d["mx_lookups"], d["servers"], d["resolved_servers"]) == (20.0, 2, 40, 1)
    # ... 1000 s apart they are two findings, each with its own corroboration
    rows = smtp(HOST, 20, start=1000.0) + smtp(HOST, 20, start=2020.0, first=101)
    found = detect("mass_mailer", conn=rows, dns=dns)
    assert [details(f)["mx_lookups"] for f in found] == [1, 0]
