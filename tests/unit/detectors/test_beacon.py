"""beacon: timing, size and coverage regularity per (internal host, destination)."""

from __future__ import annotations

import datetime as dt
import glob
import json

import numpy as np
import pyarrow as pa
import pytest
from conftest import shared_file
from helpers import conn, detect, detect_files, engine_with
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeekwatch import schema
from zeekwatch.config import from_dict
from zeekwatch.errors import ConfigError
from zeekwatch.triage import suppress

HOST, C2 = "10.0.0.5", "198.51.100.7"
T0 = 1_710_000_000.0
DAY = 86400.0


def details(f):
    return f.details


def jittered(rng, lo=200.0, hi=350.0, missed=0.05, span=DAY, t0=T0):
    """Check-in times: uniform lo..hi s sleeps over ``span``, ``missed`` of them lost."""
    ts = t0 + np.cumsum(rng.uniform(lo, hi, int(span / lo) + 2))
    ts = ts[ts <= t0 + span]
    return ts[rng.random(len(ts)) >= missed]


def conns(host, peer, ts, port=443, proto="tcp", ob=512, rb=1024, rng=None, service="ssl", **kw):
    rng = rng or np.random.default_rng(0)
    return [conn(float(t), host, peer, port, proto=proto, service=service,
                 orig_bytes=int(ob * rng.uniform(0.95, 1.05)), resp_bytes=int(rb * rng.uniform(0.95, 1.05)),
                 uid=f"{host}-{i}", **kw) for i, t in enumerate(ts)]


def beacon_findings(found):
    return {(f.host, f.peer, f.key): f for f in found if f.detector == "beacon"}


# -- the real data ------------------------------------------------------------------

def test_rita_missing_host_beacon_fires():
    """RITA's sample: an HTTP client calls every 200-350 s for 3 days (its README)."""
    shared_file("rita/missing_host/README")
    paths = sorted(glob.glob(shared_file("rita/missing_host") + "/*/conn.*.log.gz"))
    found = detect_files(paths, only="beacon", config={"networks": {"internal": ["73.54.23.243/32"]}})
    assert [(f.host, f.peer) for f in found] == [("73.54.23.243", "64.225.56.201")]
    f, d = found[0], details(found[0])
    assert f.observed >= 0.8 and d["timing"] >= 0.8 and d["coverage"] >= 0.95
    assert 200 <= d["interval_median"] <= 350 and d["checkins"] >= 900 and d["ports"] == ["tcp/80"]
    assert f.summary.startswith("73.54.23.243 called 64.225.56.201 950 times over 72 h, every ~270 s")
    assert len(f.uids) == 20


# -- generated behaviours -------------------------------------------------------------------

def test_jittered_beacon_fires_with_its_parts_and_summary():
    rng = np.random.default_rng(1)
    ts = jittered(rng)
    found = detect("beacon", conn=conns(HOST, C2, ts, rng=rng))
    assert list(beacon_findings(found)) == [(HOST, C2, None)]
    f, d = found[0], details(found[0])
    assert f.observed >= 0.8 and d["timing"] >= 0.8 and d["size"] >= 0.9 and d["coverage"] >= 0.95
    assert f.threshold == 0.7 and f.evidence_total == len(ts) and d["checkins"] == len(ts)
    assert 250 <= d["interval_median"] <= 300 and d["lookalike"] is None and d["score_rank"] == 1
    assert f.threat == "c2" and f.values == [C2]
    assert f.summary == (
        f"{HOST} called {C2} {len(ts)} times over 24 h, every ~{d['interval_median']:.0f} s ± "
        f"{d['interval_mad']:.0f} s, ~{d['bytes_out_median']:.0f} B out, ~1.0 kB in; score "
        f"{f.observed:.2f} (timing {d['timing']:.2f}, size {d['size']:.2f}, coverage {d['coverage']:.2f})")


def test_rotating_cdn_addresses_behind_one_name_are_one_pair():
    rng = np.random.default_rng(2)
    ts = jittered(rng)
    ips = ["198.51.100.7", "198.51.100.8", "203.0.113.44"]
    rows = [dict(r, resp_h=ips[i % 3]) for i, r in enumerate(conns(HOST, C2, ts, rng=rng))]
    dns = [{"ts": T0 - 5, "uid": "D1", "orig_h": HOST, "resp_h": "10.0.0.53", "query": "Update.Velmora.NET.",
            "answers": ips}]
    found = detect("beacon", conn=rows, dns=dns)
    assert list(beacon_findings(found)) == [(HOST, None, "update.velmora.net")]
    f = found[0]
    assert f.values == sorted(ips) and f.distinct_total == 3 and f.evidence_total == len(ts)
    assert f.summary.startswith(f"{HOST} called 198.51.100.7 (+2 more) (update.velmora.net) {len(ts)} times")


def test_named_destination_whose_addresses_are_each_below_the_minimum_fires():
    """The named destinations are pruned by a coarser grouping first (host, hash of the name):
    a name whose addresses each hold fewer than min_connections still adds them up, and an
    unnamed address exactly at min_connections over min_span still counts."""
    rng = np.random.default_rng(9)
    ts = jittered(rng)
    ips = [f"203.0.113.{i}" for i in range(1, 21)]  # ~17 check-ins per address
    rows = [dict(r, resp_h=ips[i % 20]) for i, r in enumerate(conns(HOST, C2, ts, rng=rng))]
    dns = [{"ts": T0 - 5, "uid": "D1", "orig_h": HOST, "resp_h": "10.0.0.53", "query": "cdn.velmora.net",
            "answers": ips}]
    edge = conns("10.0.0.6", C2, T0 + 2880.0 * np.arange(31), rng=rng)  # 31 connections over 24 h
    cfg = {"detectors": {"beacon": {"min_connections": 31, "min_span": 7200}}}
    found = beacon_findings(detect("beacon", config=cfg, conn=rows + edge, dns=dns))
    assert set(found) == {(HOST, None, "cdn.velmora.net"), ("10.0.0.6", C2, None)}
    assert found[(HOST, None, "cdn.velmora.net")].evidence_total == len(ts)
    assert found[("10.0.0.6", C2, None)].evidence_total == 31
    fewer = conns("10.0.0.6", C2, T0 + 2880.0 * np.arange(30), rng=rng)
    found = beacon_findings(detect("beacon", config=cfg, conn=rows + fewer, dns=dns))
    assert set(found) == {(HOST, None, "cdn.velmora.net")}


def test_browser_hitting_the_same_site_irregularly_does_not_fire():
    rng = np.random.default_rng(3)
    visits = np.sort(T0 + rng.uniform(8 * 3600, 18 * 3600, 120))
    ts = np.sort(np.concatenate([v + np.cumsum(rng.exponential(3, rng.integers(2, 9))) for v in visits]))
    rows = conns(HOST, C2, ts, ob=900, rb=40000, rng=rng)
    for r in rows:
        r["resp_bytes"] = int(rng.lognormal(10, 1.2))
    assert detect("beacon", conn=rows) == []
    scored = detect("beacon", config={"detectors": {"beacon": {"min_score": 0.0}}}, conn=rows)
    assert len(scored) == 1 and scored[0].observed < 0.5  # scored, far below the threshold


def test_ntp_client_is_suppressed_with_its_reason_not_dropped():
    rng = np.random.default_rng(4)
    gaps = np.minimum(64 * 2.0 ** np.arange(120), 1024.0) * rng.uniform(0.97, 1.03, 120)
    ts = T0 + np.cumsum(gaps)
    ts = ts[ts <= T0 + DAY]
    rows = conns(HOST, "203.0.113.123", ts, port=123, proto="udp", ob=48, rb=48, service="ntp",
                 conn_state="SF", history="Dd")
    found = detect("beacon", conn=rows)
    assert len(found) == 1 and details(found[0])["lookalike"] == suppress_reason("ntp")
    assert suppress.apply(found, [], [], suppress.Settings(), "2030-01-01T00:00:00.000000Z") == 1
    assert found[0].status == "suppressed"
    assert found[0].suppressed_reason == "periodic by design: NTP time synchronisation (udp/123)"
    assert found[0].suppression_hit == ("lookalike", None)


def suppress_reason(kind):
    from zeekwatch.detectors import beacon

    return {"ntp": beacon.NTP, "dns": beacon.RESOLVER}[kind]


def test_dns_to_the_sites_resolver_and_listed_update_names_are_suppressed():
    rng = np.random.default_rng(5)
    resolver, ms = "203.0.113.53", ["192.0.2.10", "192.0.2.11"]
    rows = conns(HOST, resolver, jittered(rng, 290, 310), port=53, proto="udp", ob=40, rb=90, service="dns",
                 conn_state="SF", history="Dd")
    ts = jittered(rng, 880, 920, span=2 * DAY)
    rows += [dict(r, resp_h=ms[i % 2], uid=f"m{i}") for i, r in enumerate(conns("10.0.0.6", ms[0], ts, rng=rng))]
    tls = [{"ts": T0 + 1, "uid": "T1", "orig_h": "10.0.0.6", "resp_h": a, "resp_p": 443,
            "server_name": "settings-win.data.microsoft.com"} for a in ms]
    cfg = {"networks": {"dns_servers": [resolver]}}
    found = beacon_findings(detect("beacon", config=cfg, conn=rows, tls=tls))
    assert set(found) == {(HOST, resolver, None), ("10.0.0.6", None, "settings-win.data.microsoft.com")}
    assert details(found[(HOST, resolver, None)])["lookalike"] == suppress_reason("dns")
    why = details(found[("10.0.0.6", None, "settings-win.data.microsoft.com")])["lookalike"]
    assert why.startswith("periodic by design: update/telemetry/push service (periodic_domains "
                          "'settings-win.data.microsoft.com')")
    # the list is the config's: emptied, the update service is a plain finding
    cfg["detectors"] = {"beacon": {"periodic_domains": []}}
    found = beacon_findings(detect("beacon", config=cfg, conn=rows, tls=tls))
    assert details(found[("10.0.0.6", None, "settings-win.data.microsoft.com")])["lookalike"] is None


def test_allowlist_rule_suppresses_a_beacon():
    rng = np.random.default_rng(6)
    found = detect("beacon", conn=conns(HOST, C2, jittered(rng), rng=rng))
    rule = {"id": 7, "cidr": None, "peer": f"{C2}/32", "domain": None, "port": None, "detector": "beacon",
            "sid": None, "start": None, "end": None, "owner": "ops", "reason": "backup agent",
            "expires": None}
    suppress.apply(found, [], [rule], suppress.Settings(), "2030-01-01T00:00:00.000000Z")
    assert found[0].status == "suppressed" and "backup agent" in found[0].suppressed_reason


def test_minimum_connections_and_span():
    rng = np.random.default_rng(7)
    ts = jittered(rng)[:29]  # 29 check-ins over ~2.2 h
    assert detect("beacon", conn=conns(HOST, C2, ts, rng=rng)) == []
    cfg = {"detectors": {"beacon": {"min_connections": 20, "min_span": 3600}}}
    assert len(detect("beacon", config=cfg, conn=conns(HOST, C2, ts, rng=rng))) == 1


def test_bad_domain_pattern_is_a_config_error():
    rows = conns(HOST, C2, jittered(np.random.default_rng(8)))
    with pytest.raises(ConfigError, match="periodic_domains: 'a.\\*.b' is not a domain pattern"):
        detect("beacon", config={"detectors": {"beacon": {"periodic_domains": ["a.*.b"]}}}, conn=rows)


# -- a beacon among many pairs --------------------------------------------------------------

def crowd_table(n_pairs: int, rng) -> pa.Table:
    """``n_pairs`` (host, destination) pairs of irregular traffic over one day — Poisson
    arrivals, browsing sessions (bursts with long pauses), business-hours Poisson — plus one
    planted 200-350 s beacon (10.9.9.9)."""
    parts = []
    hosts = rng.integers(0, 4000, n_pairs)
    kind = rng.integers(0, 3, n_pairs)
    n = rng.integers(25, 120, n_pairs)
    for i in range(n_pairs):
        mean = DAY / n[i]
        if kind[i] == 0:
            ts = T0 + np.cumsum(rng.exponential(mean, n[i]))
        elif kind[i] == 1:
            ts = T0 + np.cumsum(np.where(rng.random(n[i]) < 0.7, rng.exponential(5, n[i]),
                                         rng.exponential(3 * mean, n[i])))
        else:
            ts = T0 + 8 * 3600 + np.cumsum(rng.exponential(mean * 10 / 24, n[i]))
        ts = ts[ts <= T0 + DAY]
        parts.append((np.full(len(ts), hosts[i]), np.full(len(ts), i), ts))
    beacon = jittered(rng)
    parts.append((np.full(len(beacon), -1), np.full(len(beacon), n_pairs), beacon))
    h, p, t = (np.concatenate(x) for x in zip(*parts))
    k = len(t)
    hosts = np.array([f"10.1.{i // 250}.{i % 250 + 1}" for i in range(4000)] + ["10.9.9.9"])
    peers = np.array([f"45.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(n_pairs + 1)])
    host, peer = hosts[h], peers[p]
    return pa.table({
        "ts": pa.array((t * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
        "uid": pa.array([f"C{i}" for i in range(k)]), "orig_h": pa.array(host.tolist()),
        "orig_p": pa.array(rng.integers(1024, 65535, k).astype(np.int32)), "resp_h": pa.array(peer.tolist()),
        "resp_p": pa.array(np.full(k, 443, np.int32)), "proto": pa.array(["tcp"] * k),
        "service": pa.array(["ssl"] * k), "conn_state": pa.array(["SF"] * k),
        "history": pa.array(["ShADadFf"] * k),
        "orig_bytes": pa.array((600 * rng.uniform(0.9, 1.1, k)).astype(np.int64)),
        "resp_bytes": pa.array((1500 * rng.uniform(0.9, 1.1, k)).astype(np.int64)),
    })


@pytest.mark.slow
def test_beacon_hidden_among_20000_pairs_is_ranked_first():
    rng = np.random.default_rng(9)
    eng = engine_with(from_dict({"detectors": {"beacon": {"min_score": 0.4}}}))
    try:
        eng.load("conn", schema.conform("conn", crowd_table(20_000, rng)))
        found = eng.detect(only=["beacon"])
    finally:
        eng.close()
    assert len(found) > 100  # the pairs scoring 0.4 or more, ranked with the beacon
    best = sorted(found, key=lambda f: -f.observed)
    assert best[0].host == "10.9.9.9" and details(best[0])["score_rank"] == 1
    assert best[0].observed >= 0.8 and best[1].observed < 0.7  # only the beacon over the threshold


# -- property: jittered timers score above the threshold, Poisson arrivals below -----------------

@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(60, 1800), st.floats(0, 0.25), st.floats(0, 0.05), st.integers(0, 2**31)),
                min_size=4, max_size=4))
def test_property_jitter_below_bound_fires_poisson_does_not(series):
    """Uniform jitter up to ±25 % of the period with up to 5 % missed check-ins scores >= 0.7;
    Poisson arrivals at the same rate over the same day (same sizes) score < 0.7."""
    rows, want = [], {}
    for i, (period, jitter, missed, seed) in enumerate(series):
        rng = np.random.default_rng(seed)
        periodic = jittered(rng, period * (1 - jitter), period * (1 + jitter), missed)
        poisson = T0 + np.cumsum(rng.exponential(period, int(DAY / period) * 2))
        poisson = poisson[poisson <= T0 + DAY]
        for kind, ts in (("timer", periodic), ("poisson", poisson)):
            host = f"10.0.{i}.{1 if kind == 'timer' else 2}"
            rows += conns(host, f"198.51.100.{i + 1}", ts, rng=rng)
            want[host] = kind
    found = detect("beacon", config={"detectors": {"beacon": {"min_score": 0.0}}}, conn=rows)
    score = {f.host: f.observed for f in found}
    for host, kind in want.items():
        if kind == "timer":
            assert score[host] >= 0.7, (host, score[host], series)
        else:
            assert score.get(host, 0.0) < 0.7, (host, score[host], series)


# -- other inputs: Suricata EVE flows with TLS SNI, a pcap with HTTP Host --------------------

def eve_events(rng):
    out, ips = [], ["192.0.2.80", "192.0.2.81"]
    for i, t in enumerate(jittered(rng, span=6 * 3600)):
        start = dt.datetime.fromtimestamp(t, dt.timezone.utc)
        stamp = start.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")
        end = (start + dt.timedelta(seconds=0.4)).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")
        base = {"timestamp": stamp, "flow_id": 5000 + i, "src_ip": HOST, "src_port": 50000 + i,
                "dest_ip": ips[i % 2], "dest_port": 443, "proto": "TCP"}
        out.append({**base, "event_type": "tls", "tls": {"sni": "sync.example-cdn.net"}})
        out.append({**base, "event_type": "flow", "app_proto": "tls", "flow": {
            "pkts_toserver": 6, "pkts_toclient": 5, "bytes_toserver": 700, "bytes_toclient": 1900,
            "start": stamp, "end": end, "state": "closed", "reason": "timeout"},
            "tcp": {"tcp_flags_ts": "1b", "tcp_flags_tc": "1b"}})
    return out


def test_eve_flows_named_by_sni(tmp_path):
    path = tmp_path / "eve.json"
    path.write_text("\n".join(json.dumps(e) for e in eve_events(np.random.default_rng(10))) + "\n")
    found = detect_files([path], only="beacon", config={"detectors": {"beacon": {"min_span": 3600}}})
    assert [(f.host, f.key, f.distinct_total) for f in found] == [(HOST, "sync.example-cdn.net", 2)]


def test_pcap_http_beacon_named_by_host_header(tmp_path):
    from pcap_helpers import CLIENT, SERVER, c2s, s2c, write

    rng = np.random.default_rng(11)
    packets = []
    for i, t in enumerate(jittered(rng, span=3 * 3600)):
        sport = 41000 + i
        req = b"GET /c?id=7 HTTP/1.1\r\nHost: cmd.example.org:8080\r\nUser-Agent: x\r\n\r\n"
        for k, p in enumerate([c2s("S", sport=sport), s2c("SA", sport=sport), c2s("A", sport=sport),
                               c2s("PA", req, sport=sport), s2c("PA", b"HTTP/1.1 200 OK\r\n\r\nok", sport=sport),
                               c2s("FA", sport=sport), s2c("FA", sport=sport), c2s("A", sport=sport)]):
            packets.append((t + k * 0.01, p))
    path = write(tmp_path / "beacon.pcap", packets)
    found = detect_files([path], only="beacon", config={"detectors": {"beacon": {"min_span": 3600}}})
    assert [(f.host, f.key, f.values) for f in found] == [(CLIENT, "cmd.example.org", [SERVER])]


def test_analyze_stores_the_beacon_and_the_suppressed_ntp_look_alike(tmp_path):
    """Zeek TSV through `zeekwatch analyze`: the beacon is a new c2 finding, NTP is stored
    suppressed with its reason (not dropped); a second run adds nothing."""
    import sqlite3

    from click.testing import CliRunner
    from helpers import zeek_tsv

    from zeekwatch.cli.main import cli

    rng = np.random.default_rng(12)
    rows = conns(HOST, C2, jittered(rng), rng=rng)
    gaps = np.minimum(64 * 2.0 ** np.arange(120), 1024.0) * rng.uniform(0.97, 1.03, 120)
    ntp = T0 + np.cumsum(gaps)
    rows += conns("10.0.0.6", "203.0.113.123", ntp[ntp <= T0 + DAY], port=123, proto="udp", ob=48, rb=48,
                  service="ntp", conn_state="SF", history="Dd")
    log, db = zeek_tsv(tmp_path / "conn.log", "conn", sorted(rows, key=lambda r: r["ts"])), str(tmp_path / "f.db")
    for _ in range(2):
        res = CliRunner().invoke(cli, ["analyze", "-q", "--detector", "beacon", "--db", db, log])
        assert res.exit_code == 0, res.output
    got = sqlite3.connect(db).execute("SELECT host, status, threat, suppressed_reason FROM findings "
                                      "WHERE detector = 'beacon' ORDER BY host").fetchall()
    assert got == [(HOST, "new", "c2", None),
                   ("10.0.0.6", "suppressed", "c2", "periodic by design: NTP time synchronisation (udp/123)")]
