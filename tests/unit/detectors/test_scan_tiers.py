"""Slow scans (the long-window tier), one finding per scanner and day (the roll-up), and
ping sweeps that skip known peers: Zeek logs written here, read by the real readers."""

from __future__ import annotations

import json
import random

import pytest
from helpers import conn, detect_files, zeek_tsv

from zeekwatch.app.analyze import analyze
from zeekwatch.config import from_dict
from zeekwatch.store.db import Store

T0 = 1_710_000_000.0  # 2024-03-09 16:00 UTC
DAY = 86400
SCANS = ["horizontal_scan", "vertical_scan", "ping_sweep"]


def slow_times(n: int, span: float, per_minute: int, seed: int) -> list[float]:
    """``n`` times over ``span`` seconds, irregular, never more than ``per_minute`` in any
    minute (a scanner that paces itself under every short window)."""
    rng = random.Random(seed)
    step = span / n
    times = sorted(T0 + i * step + rng.uniform(0, step * 0.9) for i in range(n))
    for i in range(per_minute, n):
        assert times[i] - times[i - per_minute] > 60
    return times


def write(tmp_path, name, rows):
    return zeek_tsv(tmp_path / name, "conn", rows)


def test_slow_vertical_scan_fires_in_the_long_tier(tmp_path):
    """500 refused ports of one server over 24 h at most 4 a minute: no 60 s window holds 20."""
    times = slow_times(500, DAY - 600, 4, seed=1)
    ports = random.Random(2).sample(range(1, 65536), 500)
    rows = [conn(t, "10.0.0.66", "10.0.9.9", p, conn_state="REJ") for t, p in zip(times, ports)]
    path = write(tmp_path, "conn.log", rows)
    (f,) = detect_files([path], only=SCANS)
    assert (f.detector, f.host, f.peer, f.observed, f.threshold) == (
        "vertical_scan", "10.0.0.66", "10.0.9.9", 500.0, 100.0)
    details = f.details
    assert details["window"] == DAY and details["episode_count"] == 1
    assert f.distinct_total == 500 and f.evidence_total == 500
    assert "tried 500 distinct ports of 10.0.9.9 within 24 h" in f.summary
    # the exact tier alone misses it: that is what the long tier is for
    assert detect_files([path], only=SCANS, config={"detectors": {"vertical_scan": {"long_window": 0}}}) == []


def test_slow_horizontal_scan_fires_in_the_long_tier(tmp_path):
    """A worm tries tcp/445 on 3 new hosts every 10 minutes for 12 h (216 hosts)."""
    rows = [conn(T0 + k * 600 + j * 7, "10.0.0.5", f"10.1.{(3 * k + j) // 250}.{(3 * k + j) % 250 + 1}",
                 445, conn_state="S0") for k in range(72) for j in range(3)]
    (f,) = detect_files([write(tmp_path, "conn.log", rows)], only=SCANS)
    assert (f.detector, f.host, f.key, f.observed) == ("horizontal_scan", "10.0.0.5",
                                                                     "tcp/445", 216.0)
    assert f.details["window"] == DAY
    assert "within 24 h" in f.summary


def test_slow_netbios_needs_the_scaled_threshold(tmp_path):
    # udp/137 to 150 hosts in a day: under the NetBIOS long threshold (100 * 64 / 20 = 320)
    rows = [conn(T0 + i * 300, "10.0.0.5", f"10.1.0.{i + 1}", 137, proto="udp", conn_state="S0")
            for i in range(150)]
    assert detect_files([write(tmp_path, "conn.log", rows)], only=SCANS) == []


def test_internet_scanners_are_not_in_the_long_tier_by_default(tmp_path):
    times = slow_times(300, DAY - 600, 4, seed=3)
    rows = [conn(t, "198.51.100.7", "10.0.2.10", 1 + i, conn_state="REJ") for i, t in enumerate(times)]
    path = write(tmp_path, "conn.log", rows)
    assert detect_files([path], only=SCANS) == []
    cfg = {"detectors": {"vertical_scan": {"long_internal_only": False}}}
    (f,) = detect_files([path], only=SCANS, config=cfg)
    assert f.host == "198.51.100.7" and f.observed == 300


def bursts(starts, n_ports=25, scanner="203.0.113.50", target="10.0.2.10"):
    """A burst of ``n_ports`` refused ports (the same ports each time) at each start."""
    return [conn(s + i, scanner, target, 1000 + i, conn_state="REJ") for s in starts for i in range(n_ports)]


def test_one_scanner_over_a_day_is_one_finding(tmp_path):
    """12 bursts two hours apart: 12 findings before the roll-up, one now, listing them."""
    starts = [T0 + k * 7200 for k in range(12)]
    path = write(tmp_path, "conn.log", bursts(starts))
    (f,) = detect_files([path], only=SCANS)
    details = f.details
    assert details["episode_count"] == 12 and len(details["episodes"]) == 12
    assert details["window"] == 60 and f.observed == 25
    first = details["episodes"][0]
    assert first["first"] == "2024-03-09T16:00:00Z" and first["last"] == "2024-03-09T16:00:24Z"
    assert first["observed"] == 25 and first["window"] == 60
    assert f.first_seen.startswith("2024-03-09T16:00:00") and f.last_seen.startswith("2024-03-10T14:00:24")
    assert "(12 episodes)" in f.summary
    # stored: one finding, and analysing again adds nothing
    db = str(tmp_path / "f.db")
    assert analyze([path], from_dict({}), db, only=SCANS).new == 1
    again = analyze([path], from_dict({}), db, only=SCANS)
    assert (again.new, again.updated) == (0, 0)
    assert [r["detector"] for r in Store(db).findings()] == ["vertical_scan"]
    # without the roll-up (gap 0) the bursts stay apart, as before
    cfg = {"detectors": {"vertical_scan": {"rollup_gap": 0}}}
    assert len(detect_files([path], only=SCANS, config=cfg)) == 12


def test_bursts_more_than_a_day_apart_are_separate(tmp_path):
    path = write(tmp_path, "conn.log", bursts([T0, T0 + 3600, T0 + 3600 + DAY + 600]))
    found = detect_files([path], only=SCANS)
    assert [f.details["episode_count"] for f in found] == [2, 1]


def pings(host, targets, t=T0 + 1800):
    return [conn(t + i, host, a, 0, proto="icmp", orig_p=8, conn_state="OTH", history=None)
            for i, a in enumerate(targets)]


def tls(host, targets, t=T0):
    return [conn(t + i, host, a, 443, service="ssl", duration=5.0, orig_bytes=900, resp_bytes=5000)
            for i, a in enumerate(targets)]


SERVERS = [f"10.7.{i // 200}.{i % 200 + 1}" for i in range(40)]


def test_pinging_servers_it_uses_over_tls_is_not_a_sweep(tmp_path):
    """An application measures latency to the 40 servers it talks TLS to (the issue)."""
    path = write(tmp_path, "conn.log", tls("10.0.0.8", SERVERS) + pings("10.0.0.8", SERVERS))
    assert detect_files([path], only=["ping_sweep"]) == []
    off = {"detectors": {"ping_sweep": {"exclude_known_peers": False}}}
    assert len(detect_files([path], only=["ping_sweep"], config=off)) == 1


def test_sweep_counts_only_unknown_targets_and_says_how_many_were_skipped(tmp_path):
    strangers = [f"10.9.0.{i}" for i in range(1, 16)]
    rows = tls("10.0.0.8", SERVERS) + pings("10.0.0.8", SERVERS + strangers)
    (f,) = detect_files([write(tmp_path, "conn.log", rows)], only=["ping_sweep"])
    assert f.observed == 15 and sorted(f.values) == sorted(strangers)
    assert f.details["excluded_known_peers"] == 40
    assert "40 pinged peer(s) it also talked to or resolved not counted" in f.summary


def test_known_peer_window_and_dns_answers(tmp_path):
    # sessions 3 h before the pings are outside known_window (1 h): the pings count
    rows = tls("10.0.0.8", SERVERS, t=T0 - 3 * 3600) + pings("10.0.0.8", SERVERS)
    assert len(detect_files([write(tmp_path, "conn.log", rows)], only=["ping_sweep"])) == 1
    # addresses the host resolved just before pinging them are known peers too
    dns = [dict(ts=T0 + 1700, uid=f"D{i}", orig_h="10.0.0.8", orig_p=5353, resp_h="10.0.0.53",
                resp_p=53, proto="udp", query=f"s{i}.example", qtype_name="A", rcode_name="NOERROR",
                answers=[a]) for i, a in enumerate(SERVERS)]
    paths = [write(tmp_path, "c2.log", pings("10.0.0.8", SERVERS)), zeek_tsv(tmp_path / "dns.log", "dns", dns)]
    assert detect_files(paths, only=["ping_sweep"]) == []


def test_slow_ping_sweep_fires_in_the_long_tier(tmp_path):
    targets = [f"10.3.{i // 250}.{i % 250 + 1}" for i in range(150)]
    rows = [conn(T0 + i * 480, "10.0.0.9", a, 0, proto="icmp", orig_p=8, conn_state="OTH", history=None)
            for i, a in enumerate(targets)]
    (f,) = detect_files([write(tmp_path, "conn.log", rows)], only=SCANS)
    assert (f.detector, f.observed, f.details["window"]) == ("ping_sweep", 150.0, DAY)


@pytest.mark.parametrize("bad", [{"long_window": -1}, {"long_min_ports": 0}, {"rollup_gap": "1d"}])
def test_long_tier_parameters_are_checked(bad):
    from zeekwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="detectors.vertical_scan"):
        from_dict({"detectors": {"vertical_scan": bad}}).params(
            "vertical_scan", __import__("zeekwatch.detectors", fromlist=["REGISTRY"]).REGISTRY["vertical_scan"].params)


def test_long_tier_counts_failed_attempts_to_unresolved_addresses_only(tmp_path):
    """A mail server's bounced deliveries over a day (150 resolved MX addresses, S0): no
    sweep; the same failures to never-resolved addresses are one."""
    mx = [f"198.51.{i // 200}.{i % 200 + 1}" for i in range(150)]
    rows = [conn(T0 + i * 500, "10.0.0.25", a, 25, conn_state="S0") for i, a in enumerate(mx)]
    dns = [dict(ts=T0 + i * 500 - 1, uid=f"D{i}", orig_h="10.0.0.25", orig_p=5353, resp_h="10.0.0.53",
                resp_p=53, proto="udp", query=f"mx{i}.example", qtype_name="A", rcode_name="NOERROR",
                answers=[a]) for i, a in enumerate(mx)]
    conn_log = write(tmp_path, "conn.log", rows)
    assert detect_files([conn_log, zeek_tsv(tmp_path / "dns.log", "dns", dns)], only=SCANS) == []
    (f,) = detect_files([conn_log], only=SCANS)
    assert (f.detector, f.key, f.observed) == ("horizontal_scan", "tcp/25", 150.0)
    # a day of established TLS to 150 never-resolved servers (DoH, hard-coded addresses): use
    rows = [conn(T0 + i * 500, "10.0.0.30", a, 443, service="ssl") for i, a in enumerate(mx)]
    assert detect_files([write(tmp_path, "tls.log", rows)], only=SCANS) == []
