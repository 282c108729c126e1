"""Scan detectors as data: positive and negative cases, boundaries, and an oracle check."""

from __future__ import annotations

import pytest
from helpers import conn, detect
from hypothesis import given, settings
from hypothesis import strategies as st


def sweep(host, n, port=445, start=1000.0, step=1.0, state="S0", proto="tcp", prefix="203.0.113."):
    return [conn(start + i * step, host, f"{prefix}{i + 1}", port, proto=proto, conn_state=state)
            for i in range(n)]


def test_horizontal_fires_at_exactly_threshold():
    found = detect("horizontal_scan", conn=sweep("10.0.0.5", 20))
    assert [(f.host, f.key, f.observed) for f in found] == [("10.0.0.5", "tcp/445", 20.0)]
    assert found[0].threshold == 20
    assert "10.0.0.5 tried 20 distinct hosts on tcp/445" in found[0].summary
    assert len(found[0].uids) == 20 and found[0].distinct_total == 20


def test_horizontal_below_threshold_is_silent():
    assert detect("horizontal_scan", conn=sweep("10.0.0.5", 19)) == []


def test_window_is_sliding_not_calendar_minute():
    # 20 hosts between t=1030 and t=1089: split across two calendar minutes, within 60 s.
    assert len(detect("horizontal_scan", conn=sweep("10.0.0.5", 20, start=1030.0, step=3.0))) == 1


def test_events_exactly_window_apart_count_together():
    # 20 hosts, first and last exactly 60 s apart: inside one closed 60 s window.
    rows = sweep("10.0.0.5", 20, start=0.0, step=60.0 / 19)
    assert len(detect("horizontal_scan", conn=rows)) == 1
    # stretched just beyond 60 s: no window holds 20
    rows = sweep("10.0.0.5", 20, start=0.0, step=60.01 / 19)
    assert detect("horizontal_scan", conn=rows) == []


def test_equal_timestamps():
    assert len(detect("horizontal_scan", conn=sweep("10.0.0.5", 25, step=0.0))) == 1


def test_external_scanner_and_source_port_do_not_count():
    inbound = [conn(1000 + i, f"198.51.100.{i}", "10.0.0.9", 445, conn_state="S0") for i in range(30)]
    # many destinations but the scanner is external -> not an internal infected host
    assert detect("horizontal_scan", conn=inbound) == []
    # the source port is the same for all but destination ports differ -> no horizontal scan
    rows = [conn(1000 + i, "10.0.0.5", f"203.0.113.{i}", 1000 + i, orig_p=445, conn_state="S0")
            for i in range(30)]
    assert detect("horizontal_scan", conn=rows) == []


def test_resolved_successful_connections_are_browsing_not_scanning():
    rows = sweep("10.0.0.5", 30, port=443, state="SF")
    dns = [dict(ts=900.0, uid=f"D{i}", orig_h="10.0.0.5", resp_h="10.0.0.53", query=f"site{i}.example",
                qtype_name="A", rcode_name="NOERROR", answers=[f"203.0.113.{i + 1}"]) for i in range(30)]
    assert detect("horizontal_scan", conn=rows, dns=dns) == []
    # the same successful connections to never-resolved addresses do count
    assert len(detect("horizontal_scan", conn=rows)) == 1


def test_backscatter_is_not_a_scan():
    rows = sweep("10.0.0.5", 30, state="SHR")
    rows += [conn(2000 + i, "10.0.0.6", f"203.0.113.{i}", 80, conn_state="OTH", history="h")
             for i in range(30)]
    assert detect(["horizontal_scan", "vertical_scan"], conn=rows) == []


def test_netbios_has_its_own_threshold():
    assert detect("horizontal_scan", conn=sweep("10.0.0.5", 30, port=137, proto="udp")) == []
    found = detect("horizontal_scan", conn=sweep("10.0.0.5", 64, port=137, proto="udp", step=0.5))
    assert [f.key for f in found] == ["udp/137"] and found[0].threshold == 64


def test_ipv6_horizontal():
    rows = [conn(1000 + i, "fd00::5", f"2001:db8::{i + 1:x}", 22, conn_state="REJ") for i in range(21)]
    assert [f.host for f in detect("horizontal_scan", conn=rows)] == ["fd00::5"]


def vports(host, peer, n, start=1000.0, step=1.0, state="REJ"):
    return [conn(start + i * step, host, peer, 1 + i, conn_state=state) for i in range(n)]


def test_vertical_scan_and_boundary():
    found = detect("vertical_scan", conn=vports("192.168.1.9", "45.33.32.156", 20))
    assert [(f.host, f.peer, f.observed) for f in found] == [("192.168.1.9", "45.33.32.156", 20.0)]
    assert detect("vertical_scan", conn=vports("192.168.1.9", "45.33.32.156", 19)) == []


def test_brute_force_on_one_port_is_neither_scan():
    rows = [conn(1000 + i, "10.0.0.5", "203.0.113.7", 22, orig_p=30000 + i, conn_state="RSTO")
            for i in range(200)]
    rows += [conn(2000 + i, "10.0.0.5", "203.0.113.7", 22, orig_p=40000 + i, conn_state="REJ")
             for i in range(200)]
    assert detect(["horizontal_scan", "vertical_scan"], conn=rows) == []


def test_ftp_data_channels_are_not_a_vertical_scan():
    rows = [conn(999.0, "10.0.0.5", "203.0.113.7", 21, service="ftp")]
    rows += [conn(1000 + i, "10.0.0.5", "203.0.113.7", 30000 + i, conn_state="S0") for i in range(40)]
    assert detect("vertical_scan", conn=rows) == []
    assert len(detect("vertical_scan", conn=rows[1:])) == 1


def test_ping_sweep_and_outbound_ping():
    rows = [conn(1000 + i, "10.0.0.5", f"10.0.1.{i}", 0, proto="icmp", orig_p=8, conn_state="OTH")
            for i in range(10)]
    assert [f.observed for f in detect("ping_sweep", conn=rows)] == [10.0]
    assert detect("ping_sweep", conn=rows[:9]) == []
    assert detect("outbound_ping", conn=rows) == []
    out = [conn(1000, "10.0.0.5", "8.8.8.8", 0, proto="icmp", orig_p=8, conn_state="OTH")]
    assert [f.host for f in detect("outbound_ping", conn=out)] == ["10.0.0.5"]
    # ICMP echo *replies* (type 0) are not pings sent
    replies = [dict(r, orig_p=0) for r in rows]
    assert detect("ping_sweep", conn=replies) == []


# -- property test: the SQL window against a brute-force oracle ---------------------------

def oracle_max_distinct(events, window):
    """Max over windows [T - window, T] (T an event time) of distinct values."""
    best = 0
    for t_end, _ in events:
        vals = {v for t, v in events if t_end - window <= t <= t_end}
        best = max(best, len(vals))
    return best


events_strategy = st.lists(
    st.tuples(st.integers(min_value=0, max_value=300).map(float), st.integers(min_value=1, max_value=12)),
    min_size=1, max_size=60)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(events=events_strategy, threshold=st.integers(min_value=2, max_value=8))
def test_horizontal_window_matches_oracle(events, threshold):
    rows = [conn(t, "10.0.0.5", f"203.0.113.{v}", 445, conn_state="S0", orig_p=1000 + i)
            for i, (t, v) in enumerate(events)]
    cfg = {"detectors": {"horizontal_scan": {"min_hosts": threshold}}}
    found = detect("horizontal_scan", config=cfg, conn=rows)
    expected = oracle_max_distinct(events, 60.0)
    if expected >= threshold:
        assert found and max(f.observed for f in found) == expected
    else:
        assert found == []


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(events=events_strategy, threshold=st.integers(min_value=2, max_value=8))
def test_vertical_window_matches_oracle(events, threshold):
    rows = [conn(t, "10.0.0.5", "10.9.9.9", 100 + v, conn_state="REJ", orig_p=1000 + i)
            for i, (t, v) in enumerate(events)]
    cfg = {"detectors": {"vertical_scan": {"min_ports": threshold}}}
    found = detect("vertical_scan", config=cfg, conn=rows)
    expected = oracle_max_distinct(events, 60.0)
    assert (max(f.observed for f in found) if found else 0) == (expected if expected >= threshold else 0)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(events=events_strategy, threshold=st.integers(min_value=2, max_value=8))
def test_ping_sweep_window_matches_oracle(events, threshold):
    rows = [conn(t, "10.0.0.5", f"10.0.1.{v}", 0, proto="icmp", orig_p=8, conn_state="OTH",
                 uid=f"P{i}") for i, (t, v) in enumerate(events)]
    cfg = {"detectors": {"ping_sweep": {"min_hosts": threshold}}}
    found = detect("ping_sweep", config=cfg, conn=rows)
    expected = oracle_max_distinct(events, 60.0)
    assert (max(f.observed for f in found) if found else 0) == (expected if expected >= threshold else 0)
