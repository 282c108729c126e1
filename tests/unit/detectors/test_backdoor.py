"""long_connection, off_hours and new_listener as data: positive and negative cases,
boundaries, time zones, and the learn-then-detect cycle across real pipeline runs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import sqlite3
from zoneinfo import ZoneInfo

import duckdb
import pytest
from conftest import shared_file
from helpers import conn, detect, detect_files, engine_with
from hypothesis import given, settings
from hypothesis import strategies as st

from zeekwatch.config import from_dict
from zeekwatch.detectors.backdoor import ipv6_hex, parse_known
from zeekwatch.errors import ConfigError
from zeekwatch.store.db import iso

H = 3600.0


def utc(y, mo, d, h=0, mi=0, s=0) -> float:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc).timestamp()


def local(tz, y, mo, d, h=0, mi=0) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz)).timestamp()


# -- long_connection --------------------------------------------------------------------------

def long(duration, orig="10.0.0.5", resp="203.0.113.7", port=443, ts=1000.0, uid=None, **kw):
    return conn(ts, orig, resp, port, duration=duration, uid=uid or f"L{duration}{orig}{port}", **kw)


def test_long_connection_exactly_one_hour_fires_59_minutes_does_not():
    found = detect("long_connection", conn=[long(3600.0)])
    assert [(f.host, f.peer, f.key, f.observed, f.threshold) for f in found] == [
        ("10.0.0.5", "203.0.113.7", "tcp/443", 1.0, 1.0)]
    assert found[0].last_seen == iso(1000.0 + 3600.0)
    assert "open for 1.00 h" in found[0].summary and "tier 1 h" in found[0].summary
    assert detect("long_connection", conn=[long(59 * 60.0)]) == []
    assert detect("long_connection", conn=[long(3599.999)]) == []


@pytest.mark.parametrize("hours, tier", [
    (1.0, 1), (3.999, 1), (4.0, 4), (7.99, 4), (8.0, 8), (11.999, 8), (12.0, 12), (40.0, 12)])
def test_long_connection_tiers(hours, tier):
    (f,) = detect("long_connection", conn=[long(hours * H)])
    assert f.details["tier"] == tier
    assert f"tier {tier} h" in f.summary


def test_tier_never_below_min_hours():
    cfg = {"detectors": {"long_connection": {"min_hours": 5}}}
    assert detect("long_connection", config=cfg, conn=[long(4.5 * H)]) == []
    (f,) = detect("long_connection", config=cfg, conn=[long(6 * H)])
    assert f.details["tier"] == 5 and f.threshold == 5


def test_long_connection_needs_internal_to_external():
    rows = [long(5 * H, orig="198.51.100.9", resp="10.0.0.5"),  # inbound
            long(5 * H, orig="10.0.0.5", resp="10.0.0.6"),  # internal
            long(5 * H, orig="198.51.100.9", resp="203.0.113.7")]  # transit
    assert detect("long_connection", conn=rows) == []


def test_vpn_gateways_are_exempt():
    cfg = {"networks": {"vpn_gateways": ["203.0.113.0/28", "2001:db8:1::/48"]}}
    rows = [long(5 * H), long(5 * H, orig="fd00::5", resp="2001:db8:1::10")]
    assert detect("long_connection", config=cfg, conn=rows) == []
    assert len(detect("long_connection", conn=rows)) == 2


def test_open_conn_and_conn_long_records_of_one_uid_are_one_connection():
    # Zeek's open_conn/conn_long write the same uid while it lasts, conn.log when it ends.
    rows = [long(1800.0, uid="Cabc", ts=1000.0), long(3700.0, uid="Cabc", ts=1000.0),
            long(5000.0, uid="Cabc", ts=1000.5), long(7300.0, uid="Cabc", ts=1000.0)]
    (f,) = detect("long_connection", conn=rows)
    assert f.observed == pytest.approx(7300.0 / H)
    assert f.evidence_total == 1 and f.uids == ["Cabc"]
    assert f.first_seen == iso(1000.0) and f.last_seen == iso(1000.0 + 7300.0)
    assert f.details["connections"] == 1


def test_one_finding_per_host_peer_port():
    rows = [long(2 * H, uid="A", ts=1000.0), long(5 * H, uid="B", ts=9000.0),
            long(2 * H, uid="C", port=22)]
    found = sorted(detect("long_connection", conn=rows), key=lambda f: f.key)
    assert [(f.key, f.evidence_total) for f in found] == [("tcp/22", 1), ("tcp/443", 2)]
    assert found[1].observed == 5.0 and found[1].details["tier"] == 4
    assert sorted(found[1].uids) == ["A", "B"]


def test_long_connection_ipv6_and_udp():
    rows = [long(2 * H, orig="fd00::5", resp="2001:db8::1", port=1194, proto="udp")]
    assert [(f.host, f.peer, f.key) for f in detect("long_connection", conn=rows)] == [
        ("fd00::5", "2001:db8::1", "udp/1194")]


def test_long_connection_without_duration_or_uid():
    assert detect("long_connection", conn=[conn(1000, "10.0.0.5", "203.0.113.7", 443)]) == []
    rows = [dict(long(2 * H), uid=None), dict(long(3 * H, ts=2000.0), uid=None)]
    (f,) = detect("long_connection", conn=rows)
    assert f.evidence_total == 2 and f.observed == 3.0


# -- off_hours --------------------------------------------------------------------------------

def burst(t0, n=5, host="10.0.0.5", step=60.0, port=443, dest="203.0.113.{i}", **kw):
    return [conn(t0 + i * step, host, dest.format(i=i + 1), port, orig_p=40000 + i, **kw)
            for i in range(n)]


def keys(found):
    return sorted((f.host, f.key, int(f.observed)) for f in found)


# 2024-04-16 is a Tuesday, 2024-04-19 a Friday, 2024-04-20/21 a weekend.
def test_off_hours_night_and_threshold():
    found = detect("off_hours", conn=burst(utc(2024, 4, 16, 23, 0)))
    assert keys(found) == [("10.0.0.5", "2024-04-16 night", 5)]
    f = found[0]
    assert f.threshold == 5 and f.distinct_total == 5 and len(f.uids) == 5
    assert "during off-hours (2024-04-16 night" in f.summary
    assert detect("off_hours", conn=burst(utc(2024, 4, 16, 23, 0), n=4)) == []


def test_business_hour_boundaries():
    times = [utc(2024, 4, 16, 21, 59), utc(2024, 4, 16, 22, 0), utc(2024, 4, 17, 0, 0),
             utc(2024, 4, 17, 3, 0), utc(2024, 4, 17, 5, 59), utc(2024, 4, 17, 6, 0)]
    rows = [conn(t, "10.0.0.5", f"203.0.113.{i}", 443) for i, t in enumerate(times)]
    cfg = {"detectors": {"off_hours": {"min_connections": 1}}}
    (f,) = detect("off_hours", config=cfg, conn=rows)
    # 22:00 and 05:59 are off-hours, 21:59 and 06:00 are not; the night spans midnight
    assert f.key == "2024-04-16 night" and f.observed == 4
    assert f.first_seen == iso(times[1]) and f.last_seen == iso(times[4])


def test_two_nights_are_two_findings():
    rows = burst(utc(2024, 4, 16, 23, 0)) + burst(utc(2024, 4, 18, 2, 0))
    assert keys(detect("off_hours", conn=rows)) == [("10.0.0.5", "2024-04-16 night", 5),
                                                    ("10.0.0.5", "2024-04-17 night", 5)]


def test_configured_business_hours():
    cfg = {"time": {"business_start": "08:00", "business_end": "18:00"}}
    assert keys(detect("off_hours", config=cfg, conn=burst(utc(2024, 4, 16, 19, 0)))) == [
        ("10.0.0.5", "2024-04-16 night", 5)]
    assert keys(detect("off_hours", config=cfg, conn=burst(utc(2024, 4, 17, 7, 0)))) == [
        ("10.0.0.5", "2024-04-16 night", 5)]
    assert detect("off_hours", config=cfg, conn=burst(utc(2024, 4, 16, 9, 0))) == []


def test_weekend_days():
    friday_night = burst(utc(2024, 4, 20, 3, 0))  # Saturday 03:00 belongs to Friday's night
    saturday = burst(utc(2024, 4, 20, 12, 0), host="10.0.0.6")
    sunday_night = burst(utc(2024, 4, 22, 2, 0), host="10.0.0.7")  # Monday 02:00
    found = detect("off_hours", conn=friday_night + saturday + sunday_night)
    assert keys(found) == [("10.0.0.5", "2024-04-19 night", 5), ("10.0.0.6", "2024-04-20 weekend", 5),
                           ("10.0.0.7", "2024-04-21 weekend", 5)]
    cfg = {"time": {"weekends_off": False}}
    found = detect("off_hours", config=cfg, conn=friday_night + saturday + sunday_night)
    assert keys(found) == [("10.0.0.5", "2024-04-19 night", 5), ("10.0.0.7", "2024-04-21 night", 5)]


def test_time_zone_europe_berlin():
    cfg = {"time": {"timezone": "Europe/Berlin"}}
    # 20:30 UTC is 22:30 CEST in April (off-hours) but 21:30 CET in January (business)
    assert keys(detect("off_hours", config=cfg, conn=burst(utc(2024, 4, 16, 20, 30)))) == [
        ("10.0.0.5", "2024-04-16 night", 5)]
    assert detect("off_hours", config=cfg, conn=burst(utc(2024, 1, 16, 20, 30))) == []
    # UTC would see the opposite
    assert detect("off_hours", conn=burst(utc(2024, 4, 16, 20, 30))) == []
    # 22:30 UTC Tuesday is 00:30 CEST Wednesday: still the night that started on Tuesday
    assert keys(detect("off_hours", config=cfg, conn=burst(utc(2024, 4, 16, 22, 30)))) == [
        ("10.0.0.5", "2024-04-16 night", 5)]
    # 04:30 UTC is 06:30 CEST (business) but 05:30 CET in winter (off-hours)
    assert detect("off_hours", config=cfg, conn=burst(utc(2024, 4, 17, 4, 30))) == []
    assert keys(detect("off_hours", config=cfg, conn=burst(utc(2024, 1, 17, 4, 30)))) == [
        ("10.0.0.5", "2024-01-16 night", 5)]


def test_dst_change_days():
    berlin = "Europe/Berlin"
    cfg = {"time": {"timezone": berlin}}
    # Sunday 2024-03-31: clocks jump 02:00 CET -> 03:00 CEST. A weekend day runs 06:00-06:00
    # local *wall clock*: 05:30 CEST is still Saturday's period, 06:30 CEST is Sunday's.
    before = burst(local(berlin, 2024, 3, 31, 5, 30), n=5, step=1.0)
    after = burst(local(berlin, 2024, 3, 31, 6, 30), n=5, step=1.0, host="10.0.0.6")
    assert keys(detect("off_hours", config=cfg, conn=before + after)) == [
        ("10.0.0.5", "2024-03-30 weekend", 5), ("10.0.0.6", "2024-03-31 weekend", 5)]
    cfg = {"time": {"timezone": berlin, "weekends_off": False}}
    assert keys(detect("off_hours", config=cfg, conn=before + after)) == [
        ("10.0.0.5", "2024-03-30 night", 5)]
    # Sunday 2024-10-27: 03:00 CEST -> 02:00 CET; both 02:30s belong to Saturday's night
    rows = [conn(utc(2024, 10, 27, 0, 30) + i, "10.0.0.5", f"203.0.113.{i}", 443) for i in range(3)]
    rows += [conn(utc(2024, 10, 27, 1, 30) + i, "10.0.0.5", f"203.0.113.{i + 3}", 443) for i in range(3)]
    assert keys(detect("off_hours", config=cfg, conn=rows)) == [("10.0.0.5", "2024-10-26 night", 6)]


def _transitions(tz: str, year: int) -> list[float]:
    """UTC instants (epoch) in ``year`` where the zone's offset changes (to the minute)."""
    z = ZoneInfo(tz)
    t, stop = utc(year, 1, 1), utc(year + 1, 1, 1)
    out, prev = [], dt.datetime.fromtimestamp(t, z).utcoffset()
    while t < stop:
        t += 3600
        off = dt.datetime.fromtimestamp(t, z).utcoffset()
        if off != prev:
            lo = t - 3600
            while t - lo > 60:  # bisect to the minute
                mid = lo + (t - lo) // 2
                if dt.datetime.fromtimestamp(mid, z).utcoffset() == prev:
                    lo = mid
                else:
                    t = mid
            out.append(t)
            prev = off
    return out


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu",
                                "America/St_Johns", "Pacific/Chatham"])
@pytest.mark.parametrize("hours", [("06:00", "22:00"), ("02:30", "23:00")])
def test_off_hours_local_time_matches_zoneinfo_around_offset_changes(tz, hours):
    # Bursts every 7.5 minutes for 3 hours either side of each offset change of 2024 (and
    # every 5 hours through one ordinary week): each burst's period must be the one
    # zoneinfo gives. Half-hour and 45-minute zones, 30-minute DST shifts included; business
    # hours starting at 02:30 put a period boundary right after the 02:00 changes.
    start, end = (int(x[:2]) * 60 + int(x[3:]) for x in hours)
    starts = [t + k * 450 for t in _transitions(tz, 2024) for k in range(-24, 24)]
    starts += [utc(2024, 6, 3) + k * 18000 for k in range(34)]
    z, rows, want = ZoneInfo(tz), [], set()
    for i, t0 in enumerate(starts):
        host = str(ipaddress.ip_address("10.1.0.0") + i)
        times = [t0 + s for s in range(5)]
        periods = set()
        for t in times:
            lt = dt.datetime.fromtimestamp(t, z)
            minute = lt.hour * 60 + lt.minute
            day = (lt.replace(tzinfo=None) - dt.timedelta(minutes=start)).date()
            if day.isoweekday() in (6, 7):
                periods.add(f"{day} weekend")
            elif minute >= end or minute < start:
                periods.add(f"{day} night")
            else:
                periods.add(None)
        rows += [conn(t, host, f"203.0.113.{k + 1}", 443) for k, t in enumerate(times)]
        if len(periods) == 1 and None not in periods:
            want.add((host, periods.pop()))
    cfg = {"time": {"timezone": tz, "business_start": hours[0], "business_end": hours[1]}}
    got = {(f.host, f.key) for f in detect("off_hours", config=cfg, conn=rows)}
    assert len(want) >= 10
    bursts_split = {(h, k) for h, k in got if (h, k) not in want}
    assert got == want, sorted(bursts_split)[:5]


@pytest.mark.parametrize("tz, hours, day", [
    ("UTC", ("06:00", "22:00"), (2024, 4, 16)),  # quarters wholly in business hours dropped
    ("UTC", ("06:07", "21:53"), (2024, 4, 16)),  # boundaries off the quarter hour: per row
    ("Africa/Monrovia", ("06:00", "22:00"), (1971, 4, 13)),  # offset -0:44:30: per row
])
def test_off_hours_quarter_pruning_keeps_every_boundary_row(tz, hours, day):
    """Quarter hours wholly in business hours are dropped before the per-row test (only
    with boundaries on quarter hours and an offset of whole quarters): rows a microsecond
    either side of the evening and morning boundaries land in the right period."""
    z = ZoneInfo(tz)
    rows, want = [], 0
    for i, (h, m) in enumerate((hours[1].split(":"), hours[0].split(":"))):
        edge = dt.datetime(*day, int(h), int(m), tzinfo=z).timestamp() + i * 86400
        for k, t in enumerate((edge - 1e-6, edge, edge - 900.0, edge + 899.999999)):
            rows.append(conn(t, "10.0.0.5", f"203.0.113.{4 * i + k + 1}", 443))
            lt = dt.datetime.fromtimestamp(t, z)
            want += (lt.hour * 60 + lt.minute >= int(hours[1][:2]) * 60 + int(hours[1][3:])
                     or lt.hour * 60 + lt.minute < int(hours[0][:2]) * 60 + int(hours[0][3:]))
    cfg = {"time": {"timezone": tz, "business_start": hours[0], "business_end": hours[1]},
           "detectors": {"off_hours": {"min_connections": 1}}}
    (f,) = detect("off_hours", config=cfg, conn=rows)
    assert want == 4 and f.observed == 4 and f.key == f"{dt.date(*day)} night"


def test_vpn_segments_and_excluded_hosts_are_exempt():
    rows = burst(utc(2024, 4, 16, 23, 0)) + burst(utc(2024, 4, 16, 23, 0), host="fd00::5")
    assert len(detect("off_hours", conn=rows)) == 2
    cfg = {"networks": {"vpn": ["10.0.0.0/29", "fd00::/64"]}}
    assert detect("off_hours", config=cfg, conn=rows) == []
    cfg = {"detectors": {"off_hours": {"exclude_hosts": ["10.0.0.5/32", "fd00::/120"]}}}
    assert detect("off_hours", config=cfg, conn=rows) == []
    cfg = {"detectors": {"off_hours": {"exclude_hosts": ["10.0.0.6", "fd00::6"]}}}
    assert len(detect("off_hours", config=cfg, conn=rows)) == 2


def test_bad_exclude_hosts_is_a_config_error():
    cfg = {"detectors": {"off_hours": {"exclude_hosts": ["10.0.0.300/32"]}}}
    with pytest.raises(ConfigError, match="off_hours.exclude_hosts"):
        detect("off_hours", config=cfg, conn=burst(utc(2024, 4, 16, 23, 0)))


def test_background_traffic_does_not_count():
    t = utc(2024, 4, 16, 23, 0)
    rows = burst(t, n=4)
    rows += [conn(t + 1, "10.0.0.5", "203.0.113.53", 53, proto="udp"),
             conn(t + 2, "10.0.0.5", "203.0.113.54", 123, proto="udp"),
             conn(t + 3, "10.0.0.5", "10.0.0.53", 853),  # internal DNS server, any port
             conn(t + 4, "10.0.0.5", "224.0.0.251", 5353, proto="udp"),
             conn(t + 5, "10.0.0.5", "255.255.255.255", 67, proto="udp"),
             conn(t + 6, "10.0.0.5", "ff02::1:3", 5355, proto="udp"),
             conn(t + 7, "10.0.0.5", "203.0.113.99", 443, conn_state="SHR")]  # backscatter
    cfg = {"networks": {"dns_servers": ["10.0.0.53"]}}
    assert detect("off_hours", config=cfg, conn=rows) == []
    cfg = {"networks": {"dns_servers": ["10.0.0.53"]},
           "detectors": {"off_hours": {"ignore_ports": [], "ignore_multicast": False}}}
    assert keys(detect("off_hours", config=cfg, conn=rows)) == [("10.0.0.5", "2024-04-16 night", 9)]


def test_external_hosts_are_not_judged():
    assert detect("off_hours", conn=burst(utc(2024, 4, 16, 23, 0), host="198.51.100.4",
                                          dest="10.0.0.{i}")) == []


def test_rare_destinations_first():
    t = utc(2024, 4, 16, 23, 0)
    popular = "203.0.113.10"
    rows = [conn(utc(2024, 4, 16, 10, 0) + i, f"10.0.1.{i}", popular, 443) for i in range(4)]
    rows += [conn(t + i, "10.0.0.5", popular, 443, orig_p=30000 + i) for i in range(4)]
    rows += [conn(t + 10, "10.0.0.5", "198.51.100.77", 8443),
             conn(t + 11, "10.0.0.5", "10.0.1.1", 445)]
    rows += [conn(utc(2024, 4, 16, 10, 0), "10.0.1.2", "10.0.1.1", 445)]
    (f,) = detect("off_hours", conn=rows)
    details = f.details
    assert details["rare_destinations"] == ["198.51.100.77 (1 host)", "10.0.1.1 (2 hosts)",
                                            "203.0.113.10 (5 hosts)"]
    assert details["rarest_prevalence"] == 1
    assert "rarest first: 198.51.100.77 (1 host)" in f.summary


def test_off_hours_ipv6():
    rows = burst(utc(2024, 4, 20, 14, 0), host="fd00::5", dest="2001:db8::{i}")
    assert keys(detect("off_hours", conn=rows)) == [("fd00::5", "2024-04-20 weekend", 5)]


# -- CIDR matching in SQL (IPv6 expansion) ----------------------------------------------------

addresses = st.builds(
    lambda n, mask: ipaddress.IPv6Address(n & ~mask & (2**128 - 1)),
    st.integers(min_value=0, max_value=2**128 - 1),
    st.sampled_from([0, 0xFFFF << 16, (2**64 - 1) << 64, 2**16 - 1, (2**80 - 1) << 16, 2**128 - 1]))


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(st.lists(addresses, min_size=1, max_size=40))
def test_ipv6_hex_matches_python(addrs):
    texts = [str(a) for a in addrs if "." not in str(a)]  # IPv4-embedded forms are not expanded
    with duckdb.connect() as con:
        got = con.execute(f"SELECT {ipv6_hex('a')} FROM (SELECT unnest(?) AS a) t", [texts]).fetchall()
    assert [g for (g,) in got] == [ipaddress.IPv6Address(t).exploded.replace(":", "") for t in texts]


def test_ipv6_hex_edge_forms():
    texts = ["::", "::1", "fe80::", "2001:db8::", "1:0:2:3:4:5:6:7", "FD00::A", "1:2:3:4:5:6:7:8"]
    with duckdb.connect() as con:
        got = con.execute(f"SELECT {ipv6_hex('a')} FROM (SELECT unnest(?) AS a) t", [texts]).fetchall()
    assert [g for (g,) in got] == [ipaddress.IPv6Address(t).exploded.replace(":", "") for t in texts]


def test_null_conn_state_and_ports_are_not_dropped():
    rows = [dict(r, conn_state=None, history=None, resp_p=None) for r in burst(utc(2024, 4, 16, 23, 0))]
    assert keys(detect("off_hours", conn=rows)) == [("10.0.0.5", "2024-04-16 night", 5)]


# -- new_listener ------------------------------------------------------------------------------

T0 = utc(2024, 4, 15, 0, 0)


def served(t, port, server="10.0.0.9", client="198.51.100.4", proto="tcp", **kw):
    return conn(t, client, server, port, proto=proto, orig_p=kw.pop("orig_p", 50000 + int(t) % 1000),
                **kw)


def test_learning_mode_first_hours_are_the_baseline():
    rows = [served(T0, 22), served(T0 + 24 * H - 1, 443),
            served(T0 + 24 * H, 4444, service="ssh"),
            served(T0 + 30 * H, 4444, client="198.51.100.5"), served(T0 + 30 * H, 22)]
    (f,) = detect("new_listener", conn=rows)
    assert (f.host, f.key, f.observed, f.peer) == ("10.0.0.9", "tcp/4444", 2.0, None)
    assert f.values == ["198.51.100.4", "198.51.100.5"] and f.distinct_total == 2
    assert f.first_seen == iso(T0 + 24 * H) and len(f.uids) == 2
    assert f.details == {"after_hours": 24.0, "baseline": "learning", "services": ["ssh"]}
    assert "10.0.0.9 answered 2 connection(s) from 2 client(s) on tcp/4444 (ssh)" in f.summary
    cfg = {"detectors": {"new_listener": {"learn_hours": 48}}}
    assert detect("new_listener", config=cfg, conn=rows) == []


def test_stored_baseline_replaces_learning():
    rows = [served(T0, 22), served(T0 + 1, 4444)]
    known = [{"host": "10.0.0.9", "port": 22, "proto": "tcp"}]
    (f,) = detect("new_listener", known_services=known, conn=rows)
    assert f.key == "tcp/4444" and f.details["baseline"] == "stored"
    # the baseline is per host and per protocol
    known = [{"host": "10.0.0.8", "port": 4444, "proto": "tcp"},
             {"host": "10.0.0.9", "port": 4444, "proto": "udp"}]
    assert [f.key for f in detect("new_listener", known_services=known, conn=rows[1:])] == ["tcp/4444"]


def test_known_services_from_config():
    rows = [served(T0 + 30 * H, 4444), served(T0 + 30 * H, 8080, server="fd00::9"),
            served(T0 + 30 * H, 5432, server="10.0.5.1"), served(T0, 22),
            served(T0, 22, server="fd00::9"), served(T0, 22, server="10.0.5.1")]
    assert len(detect("new_listener", conn=rows)) == 3
    cfg = {"detectors": {"new_listener": {"known": [
        "10.0.0.9:4444/tcp", "[fd00::9]:8080/tcp", "10.0.5.0/24:5432/TCP"]}}}
    assert detect("new_listener", config=cfg, conn=rows) == []
    cfg = {"detectors": {"new_listener": {"known": ["*:4444/tcp", "fd00::/16:8080/tcp"]}}}
    assert [f.host for f in detect("new_listener", config=cfg, conn=rows)] == ["10.0.5.1"]
    cfg = {"detectors": {"new_listener": {"known": ["10.0.0.9:4444/udp", "10.0.0.8:4444/tcp"]}}}
    assert len(detect("new_listener", config=cfg, conn=rows)) == 3


@pytest.mark.parametrize("entry", ["10.0.0.9", "10.0.0.9:22", "10.0.0.9:70000/tcp",
                                   "10.0.0.999:22/tcp", "host:22/tcp", "10.0.0.9:22/icmp"])
def test_bad_known_entry(entry):
    with pytest.raises(ConfigError, match=r"new_listener\.known"):
        parse_known([entry])


def test_parse_known():
    assert parse_known(["*:22/tcp", "[fd00::1]:53/udp", "fd00::/8:443/TCP", " 10.0.0.0/8:8080/tcp "]) == [
        ("*", 22, "tcp"), ("fd00::1", 53, "udp"), ("fd00::/8", 443, "tcp"), ("10.0.0.0/8", 8080, "tcp")]


def test_only_answered_connections_count():
    late = T0 + 30 * H
    base = [served(T0, 22)]
    unanswered = [served(late + i, 4444, conn_state=s) for i, s in enumerate(("S0", "REJ", "RSTOS0", "SH", "OTH"))]
    assert detect("new_listener", conn=base + unanswered) == []
    for state, history in (("SF", None), ("S1", None), ("S2", "ShADF"), ("S3", "ShADf"),
                           ("RSTO", None), ("RSTR", "ShADr"), ("OTH", "hA")):
        rows = base + [served(late, 4444, conn_state=state, history=history)]
        assert [f.key for f in detect("new_listener", conn=rows)] == ["tcp/4444"], state


def test_only_internal_responders():
    late = T0 + 30 * H
    rows = [served(T0, 22), served(late, 4444, server="203.0.113.5", client="10.0.0.9")]
    assert detect("new_listener", conn=rows) == []


def test_dynamic_ports_and_max_port():
    late = T0 + 30 * H
    rows = [served(T0, 22), served(late, 49152), served(late, 65000)]
    assert detect("new_listener", conn=rows) == []
    assert [f.key for f in detect("new_listener", conn=rows + [served(late, 49151)])] == ["tcp/49151"]
    cfg = {"detectors": {"new_listener": {"max_port": 65536}}}
    assert len(detect("new_listener", config=cfg, conn=rows)) == 2


def test_ftp_data_is_not_a_listener():
    late = T0 + 30 * H
    passive = [served(T0, 22), served(late, 21, service="ftp", duration=600.0),
               served(late + 10, 30123)]
    assert [f.key for f in detect("new_listener", conn=passive)] == ["tcp/21"]
    active = [served(T0, 22), conn(late, "10.0.0.9", "198.51.100.4", 21, service="ftp"),
              conn(late + 5, "198.51.100.4", "10.0.0.9", 40001, orig_p=20)]
    assert detect("new_listener", conn=active) == []
    labelled = [served(T0, 22), served(late, 30500, service="ftp-data")]
    assert detect("new_listener", conn=labelled) == []
    # a control connection long gone does not excuse a listener
    stale = [served(T0, 22), served(late, 21, service="ftp", duration=60.0),
             served(late + 2 * H, 30123)]
    assert sorted(f.key for f in detect("new_listener", conn=stale)) == ["tcp/21", "tcp/30123"]


def test_udp_replies_after_timeout_are_not_listeners():
    late = T0 + 30 * H
    quic = [served(T0, 22), served(late, 40000, proto="udp", client="203.0.113.80", orig_p=443)]
    assert detect("new_listener", conn=quic) == []
    cfg = {"detectors": {"new_listener": {"ignore_udp_replies": False}}}
    assert [f.key for f in detect("new_listener", config=cfg, conn=quic)] == ["udp/40000"]
    real = [served(T0, 22), served(late, 5353, proto="udp", orig_p=40000)]
    assert [f.key for f in detect("new_listener", conn=real)] == ["udp/5353"]


def test_new_listener_ipv6():
    rows = [served(T0, 22, server="fd00::9", client="2001:db8::4"),
            served(T0 + 30 * H, 4444, server="fd00::9", client="2001:db8::4")]
    assert [(f.host, f.key) for f in detect("new_listener", conn=rows)] == [("fd00::9", "tcp/4444")]


def test_learn_query_columns():
    rows = [served(T0, 22), served(T0 + 5, 22, client="198.51.100.5"), served(T0 + 30 * H, 4444),
            served(T0, 40000, proto="udp", orig_p=443), served(T0, 50000)]
    eng = engine_with(None, conn=rows)
    try:
        eng.detect(only=["new_listener"])
        learned = sorted(eng.learned_services(only=["new_listener"]), key=lambda r: r["port"])
    finally:
        eng.close()
    assert learned == [
        {"host": "10.0.0.9", "port": 22, "proto": "tcp", "first_seen": iso(T0),
         "last_seen": iso(T0 + 5), "origin": "learned"},
        {"host": "10.0.0.9", "port": 4444, "proto": "tcp", "first_seen": iso(T0 + 30 * H),
         "last_seen": iso(T0 + 30 * H), "origin": "learned"}]


# -- learn, then detect: real pipeline runs into one database ----------------------------------

CONN_HEADER = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tconn
#open\t2024-04-15-00-00-00
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]
"""


def write_conn_log(path, rows):
    lines = [CONN_HEADER]
    for ts, uid, orig, oport, resp, rport, service in rows:
        lines.append(f"{ts:.6f}\t{uid}\t{orig}\t{oport}\t{resp}\t{rport}\ttcp\t{service}\t1.5\t"
                     f"100\t200\tSF\tF\tT\t0\tShADadFf\t5\t400\t5\t500\t(empty)\n")
    lines.append("#close\t2024-04-16-00-00-00\n")
    path.write_text("".join(lines))
    return str(path)


def listener_rows(t0, extra=()):
    rows = [(t0 + i * 60, f"CW{i}", "198.51.100.4", 50000 + i, "10.0.0.9", 443, "ssl")
            for i in range(3)]
    rows += [(t0 + 300, "CS1", "10.0.0.20", 50100, "10.0.0.9", 22, "ssh")]
    return rows + list(extra)


def test_learn_then_detect_across_pipeline_runs(tmp_path):
    pytest.importorskip("zeekwatch.readers.zeek.tsv")
    from zeekwatch.app.analyze import analyze
    from zeekwatch.store.db import Store

    cfg = from_dict({})
    db = str(tmp_path / "findings.db")
    day1 = write_conn_log(tmp_path / "day1.log", listener_rows(T0))
    # day 2: the same services, plus a backdoor on 4444 answering two clients
    day2 = write_conn_log(tmp_path / "day2.log", listener_rows(T0 + 24 * H, extra=[
        (T0 + 24 * H + 600, "CB1", "203.0.113.66", 51000, "10.0.0.9", 4444, "-"),
        (T0 + 24 * H + 700, "CB2", "203.0.113.67", 51001, "10.0.0.9", 4444, "-")]))

    r1 = analyze([day1], cfg, db, only=["new_listener"])
    assert r1.new == 0 and r1.findings == []
    store = Store(db)
    try:
        learned = {(k["host"], k["port"], k["proto"], k["origin"]) for k in store.known_services()}
    finally:
        store.close()
    assert learned == {("10.0.0.9", 443, "tcp", "learned"), ("10.0.0.9", 22, "tcp", "learned")}

    r2 = analyze([day2], cfg, db, only=["new_listener"])
    assert r2.new == 1
    (f,) = r2.findings
    assert (f.host, f.key, f.observed, f.values) == (
        "10.0.0.9", "tcp/4444", 2.0, ["203.0.113.66", "203.0.113.67"])

    r3 = analyze([day2], cfg, db, only=["new_listener"])
    assert (r3.new, r3.updated) == (0, 0)
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT detector, host, key, observed FROM findings").fetchall()
        ks = con.execute("SELECT host, port, proto, first_seen, last_seen FROM known_services "
                         "ORDER BY port").fetchall()
    assert rows == [("new_listener", "10.0.0.9", "tcp/4444", 2.0)]
    assert ks == [("10.0.0.9", 22, "tcp", iso(T0 + 300), iso(T0 + 24 * H + 300)),
                  ("10.0.0.9", 443, "tcp", iso(T0), iso(T0 + 24 * H + 120)),
                  ("10.0.0.9", 4444, "tcp", iso(T0 + 24 * H + 600), iso(T0 + 24 * H + 700))]


# -- real data ----------------------------------------------------------------------------------

def _real(config):
    return detect_files([shared_file("rita/json_with_all_fields/conn.log")], "long_connection", config)


def test_real_rita_tls_connection_of_39_minutes():
    assert _real({}) == []  # 2,340 s is below the default hour
    (f,) = _real({"detectors": {"long_connection": {"min_hours": 0.5}}})
    assert (f.host, f.peer, f.key, f.uids) == (
        "10.55.100.106", "65.52.108.188", "tcp/443", ["C4I3Ud25s8z0V6Ywc7"])
    assert f.observed == pytest.approx(2340.397545 / H)
    details = f.details
    assert details["tier"] == 0.5 and details["service"] == "ssl"
    assert "tier 0.5 h" in f.summary


def test_masked_timestamps_long_connection_and_outbound_ping(tmp_path):
    """BTest-style logs with every ts masked: duration alone decides long_connection, and
    one echo decides outbound_ping; both fire, marked time unknown (as c2_port does)."""
    from helpers import zeek_tsv

    rows = [conn(0.0, "10.0.0.7", "198.51.100.9", 443, duration=7300.0, uid="CLONG"),
            conn(0.0, "10.0.0.7", "8.8.8.8", 0, proto="icmp", orig_p=8, conn_state="OTH", uid="CPING")]
    path = zeek_tsv(tmp_path / "conn.log", "conn", rows)
    text = open(path).read().replace("0.000000\t", "XXXXXXXXXX.XXXXXX\t")
    open(path, "w").write(text)
    found = {f.detector: f for f in detect_files([path], only=["long_connection", "outbound_ping"])}
    assert set(found) == {"long_connection", "outbound_ping"}
    for f in found.values():
        assert f.summary.startswith("(time unknown") and f.details["time_unknown"]
    assert found["long_connection"].observed == pytest.approx(7300 / 3600)


def test_capture_shorter_than_the_learning_period_has_no_new_listener():
    # a 6 h capture: the server answers 22 first, 4444 five hours later: not long enough
    rows = [served(T0, 22), served(T0 + 5 * H, 4444), served(T0 + 6 * H, 8080, server="10.0.0.10")]
    assert detect("new_listener", conn=rows) == []
    # per sensor: a server seen for 30 h by one sensor only is new to the other one
    rows = [served(T0, 22, sensor="a"), served(T0 + 30 * H, 4444, sensor="a"),
            served(T0 + 30 * H, 5555, sensor="b")]
    assert [f.key for f in detect("new_listener", conn=rows)] == ["tcp/4444"]
